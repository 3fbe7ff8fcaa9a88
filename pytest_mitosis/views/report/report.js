// pytest-mitosis report: sorting, filtering, chart wiring and the compare page.
// Every page loads this file from assets/; nothing is fetched from the network. Charts are
// drawn by plotly.js (assets/plotly.min.js); this file only hands them their data.
"use strict";

// A plotly chart; a point whose customdata is a link opens that trial when clicked.
function mitosisPlot(id, fig) {
  const el = document.getElementById(id);
  const config = {responsive: true, displaylogo: false, scrollZoom: false};
  Plotly.newPlot(el, fig.data, Object.assign({margin: {t: 40, r: 20}, hovermode: "closest"}, fig.layout), config);
  el.on("plotly_click", ev => {
    const p = ev.points && ev.points[0];
    const link = p && (Array.isArray(p.customdata) ? p.customdata[0] : p.customdata);
    if (typeof link === "string" && /^(\.\.\/)?trials\/[0-9a-f]{8}\.html$/.test(link)) window.location.href = link;
  });
}

// Click a header to sort its table (numbers by data-v when present); a second click reverses.
function sortTable(th) {
  const table = th.closest("table"), body = table.tBodies[0], i = th.cellIndex;
  const dir = th.dataset.dir === "1" ? -1 : 1;
  table.querySelectorAll("th").forEach(h => delete h.dataset.dir);
  th.dataset.dir = dir === 1 ? "1" : "-1";
  const value = r => { const c = r.cells[i]; return c ? (c.dataset.v ?? c.textContent) : ""; };
  const rows = [...body.rows];
  rows.sort((a, b) => {
    const x = value(a), y = value(b), nx = parseFloat(x), ny = parseFloat(y);
    if (x === "" && y !== "") return 1;
    if (y === "" && x !== "") return -1;
    return (!isNaN(nx) && !isNaN(ny) ? nx - ny : x.localeCompare(y)) * dir;
  });
  rows.forEach(r => body.appendChild(r));
}
document.addEventListener("click", ev => {
  const th = ev.target.closest && ev.target.closest("table.sortable th");
  if (th) sortTable(th);
});

// The index: every filter at once; the count says how many rows the filters leave.
function filterRows() {
  const f = {};
  document.querySelectorAll("[data-filter]").forEach(el => { if (el.value) f[el.dataset.filter] = el.value; });
  const text = (document.getElementById("search") || {}).value || "";
  let shown = 0;
  document.querySelectorAll("#trials tbody tr").forEach(r => {
    let show = true;
    for (const k in f) {
      const v = f[k];
      if (k === "variants" ? !JSON.parse(r.dataset.variants).includes(v) : r.dataset[k] !== v) { show = false; break; }
    }
    if (show && text && !r.textContent.toLowerCase().includes(text.toLowerCase())) show = false;
    r.style.display = show ? "" : "none";
    if (show) shown++;
  });
  const count = document.getElementById("count");
  if (count) count.textContent = shown;
}

// index.html#experiment=NAME (the experiment page's link) starts with that filter set.
document.addEventListener("DOMContentLoaded", () => {
  if (!document.getElementById("trials")) return;
  const preset = new URLSearchParams(location.hash.slice(1));
  let any = false;
  preset.forEach((value, name) => {
    const select = document.querySelector(`[data-filter="${CSS.escape(name)}"]`);
    if (select && [...select.options].some(o => o.value === value)) { select.value = value; any = true; }
  });
  if (any) filterRows();
});

// The experiment page's commit filter: that commit's table instead of every commit's, its column in the chart.
function showCommit(select) {
  document.querySelectorAll(".by-commit").forEach(d => { d.hidden = d.dataset.column !== select.value; });
  const chart = document.getElementById("over-commits");
  if (!chart || !window.Plotly) return;
  if (!chart.mitosisRange) chart.mitosisRange = chart.layout.xaxis.range.slice();  // every commit's, as built
  const c = Number(select.value);
  Plotly.relayout(chart, {"xaxis.range": select.value === "" ? chart.mitosisRange : [c - 0.6, c + 0.6]});
}

// The index's checkboxes: two or more trials open the compare page.
function selectionChanged() {
  const keys = [...document.querySelectorAll("#trials tbody input[type=checkbox]:checked")].map(c => c.value);
  const button = document.getElementById("compare");
  button.disabled = keys.length < 2;
  button.textContent = keys.length < 2 ? "compare: tick two or more trials" : `compare ${keys.length} trials`;
  button.dataset.keys = keys.join(",");
}
function openCompare() {
  const keys = document.getElementById("compare").dataset.keys;
  if (keys) window.location.href = "compare.html#" + keys;
}

// ---- the compare page: trial data come from data/<key>.js (a script: file:// allows no fetch) ----
const MITOSIS = {trials: {}, environments: {}};
function mitosisTrials(list) { list.forEach(t => { MITOSIS.trials[t.key] = t; }); }
function mitosisEnvironment(digest, facts) { MITOSIS.environments[digest] = facts; }
function load(src) {
  return new Promise(done => {
    const s = document.createElement("script");
    s.src = src; s.onload = done; s.onerror = done;
    document.head.appendChild(s);
  });
}
function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text === undefined || text === null ? "–" : String(text);
  if (cls) td.className = cls;
  return td;
}
function row(cells, cls) {
  const tr = document.createElement("tr");
  if (cls) tr.className = cls;
  cells.forEach(c => tr.appendChild(c));
  return tr;
}
async function comparePage(root, preset) {
  const keys = (preset && preset.keys) || decodeURIComponent(location.hash.slice(1)).split(",").filter(k => /^[0-9a-f]{8}$/.test(k));
  const out = document.getElementById("comparison");
  if (keys.length < 2) { out.textContent = "Tick two or more trials in the index, then press compare."; return; }
  for (const prefix of new Set(keys.map(k => k.slice(-2)))) await load(`${root}data/${prefix}.js`);
  const missing = keys.filter(k => !MITOSIS.trials[k]);
  const trials = keys.map(k => MITOSIS.trials[k]).filter(Boolean);
  if (!preset) trials.sort((a, b) => a.started.localeCompare(b.started));  // ticked in the index: oldest first, as diff reads
  for (const t of trials) if (t.environment && !MITOSIS.environments[t.environment]) await load(`${root}data/env-${t.environment}.js`);
  document.title = "compare " + trials.map(t => t.key).join(" ");
  if (missing.length) out.insertAdjacentHTML("beforebegin", `<p class="worse">No data for ${missing.join(", ")} (not in this report).</p>`);
  const table = document.createElement("table");
  table.className = "facts";
  const head = row([cell(""), ...trials.map(t => {
    const th = document.createElement("th");
    const a = document.createElement("a");
    a.href = root + t.page; a.textContent = `${t.name} (${t.key})`;
    th.appendChild(a);
    return th;
  })]);
  table.createTHead().appendChild(head);
  const body = table.createTBody();
  const groups = ["code", "parameters", "environment", "seed"];
  for (const g of groups) {
    const facts = trials.map(t => g === "environment" ? Object.assign({}, MITOSIS.environments[t.environment] || {}, t.groups.environment || {}) : (t.groups[g] || {}));
    const extra = preset && preset.groups && preset.groups[g] || {};
    const labels = [...new Set(facts.flatMap(f => Object.keys(f)))].sort();
    const differing = labels.filter(l => new Set(facts.map(f => JSON.stringify(f[l] ?? null))).size > 1);
    const title = cell(differing.length || Object.keys(extra).length ? g : `${g}: identical`);
    title.colSpan = trials.length + 1;
    body.appendChild(row([title], "group"));
    for (const l of differing) body.appendChild(row([cell(l), ...facts.map(f => cell(f[l], "differs"))]));
    for (const l in extra) {
      const c = cell(extra[l]); c.colSpan = trials.length; c.style.whiteSpace = "pre-wrap";
      body.appendChild(row([cell(l), c]));
    }
  }
  const title = cell("main and metrics"); title.colSpan = trials.length + 1;
  body.appendChild(row([title], "group"));
  const results = [...new Set(trials.flatMap(t => Object.keys(t.results)))];
  for (const m of results) {
    const values = trials.map(t => t.results[m]);
    const same = new Set(values.map(v => JSON.stringify(v ?? null))).size === 1;
    body.appendChild(row([cell(m), ...values.map(v => cell(v, same ? "same num" : "differs num"))]));
  }
  const status = trials.map(t => t.status);
  if (new Set(status).size > 1) body.appendChild(row([cell("status"), ...status.map(s => cell(s, "differs"))]));
  out.appendChild(table);
  compareSeries(out, trials);
  compareFigures(out, trials, root);
}
// plotly.js reads chart texts as a little HTML: recorded texts are escaped to show as written
function plain(text) {
  return String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}
function compareSeries(out, trials) {
  const names = [...new Set(trials.flatMap(t => Object.keys(t.series || {})))];
  names.forEach((name, i) => {
    const div = document.createElement("div");
    div.id = "series-" + i; div.className = "chart";
    out.appendChild(div);
    const data = trials.filter(t => t.series[name]).map(t => ({
      type: "scattergl", mode: "lines", name: plain(`${t.key} ${t.variants || ""}`), x: t.series[name][0], y: t.series[name][1]}));
    mitosisPlot(div.id, {data, layout: {title: {text: plain(name)}, xaxis: {title: {text: "step"}}}});
  });
}
function compareFigures(out, trials, root) {
  if (!trials.some(t => t.figures.length)) return;
  const h = document.createElement("h2");
  h.textContent = "figures";
  out.appendChild(h);
  const grid = document.createElement("div");
  grid.className = "side";
  grid.style.gridTemplateColumns = `repeat(${trials.length}, 1fr)`;
  for (const t of trials) {
    const col = document.createElement("div");
    const caption = document.createElement("figcaption");
    caption.textContent = `${t.name} (${t.key})`;
    col.appendChild(caption);
    for (const f of t.figures) {
      const img = document.createElement("img");
      img.src = root + f.src; img.alt = f.caption; img.title = f.caption;
      col.appendChild(img);
    }
    grid.appendChild(col);
  }
  out.appendChild(grid);
}
