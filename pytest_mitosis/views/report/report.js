// pytest-mitosis report: sorting, filtering, chart wiring and the compare page.
// Every page loads this file from assets/; nothing is fetched from the network. Charts are
// drawn by plotly.js (assets/plotly.min.js); this file only hands them their data.
"use strict";

// A plotly chart; a point whose customdata is a link opens that trial when clicked.
function mitosisPlot(id, fig) {
  const el = document.getElementById(id);
  const config = {responsive: true, displaylogo: false, scrollZoom: false};
  // react: a chart drawn again (the grouped views, on every pick) is updated in place
  Plotly.react(el, fig.data, Object.assign({margin: {t: 40, r: 20}, hovermode: "closest"}, fig.layout), config);
  if (el.mitosisClick) return;
  el.mitosisClick = true;
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
  mitosisGroupedDraw();
  const chart = document.getElementById("over-commits");
  if (!chart || !window.Plotly) return;
  if (!chart.mitosisRange) chart.mitosisRange = chart.layout.xaxis.range.slice();  // every commit's, as built
  const c = Number(select.value);
  Plotly.relayout(chart, {"xaxis.range": select.value === "" ? chart.mitosisRange : [c - 0.6, c + 0.6]});
}

// ---- the experiment page's grouped views: grouped.py embeds one row per trial
// ([key, commit column, main, outcome, [value index per parameter]]); the aggregation runs here,
// so every pick (aggregate, parameters, commit filter) redraws at once. A row with a main is
// aggregated: grouped.py gives one to every trial that measured main (passed, or failed by the
// drift gate or a refuted hypothesis: the judgement was of the change, not the measurement);
// every other trial is counted by its outcome on hover, never dropped.
let GROUPED = null;
function mitosisGrouped(data) { GROUPED = data; mitosisGroupedDraw(); }
const AGGREGATE = {
  mean: g => g.mains.reduce((a, b) => a + b, 0) / g.mains.length,
  median: g => {
    const s = [...g.mains].sort((a, b) => a - b), n = s.length;
    return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
  },
  best: g => g.best.main,
  count: g => g.mains.length,
};
function fmt(v) { return v === null || v === undefined ? "–" : String(Number(v.toPrecision(6))); }
function groupScope() {
  const select = document.getElementById("commit-filter");
  return select && select.value !== "" ? Number(select.value) : null;
}
// The trials of the commit scope (null: every commit), grouped by keyOf(their value indexes).
function groupTrials(data, scope, keyOf) {
  const groups = new Map();
  for (const [key, commit, main, outcome, values] of data.trials) {
    if (scope !== null && commit !== scope) continue;
    const k = keyOf(values);
    let g = groups.get(k);
    if (!g) groups.set(k, g = {mains: [], best: null, commits: new Set(), judged: {}, other: {}});
    if (main !== null) {
      g.mains.push(main);
      g.commits.add(commit);
      if (outcome !== "passed") g.judged[outcome] = (g.judged[outcome] || 0) + 1;
      if (!g.best || (data.higher ? main > g.best.main : main < g.best.main)) g.best = {main, key, commit, outcome};
    } else g.other[outcome] = (g.other[outcome] || 0) + 1;
  }
  return groups;
}
function aggregated(g, agg) { return g && g.mains.length ? AGGREGATE[agg](g) : null; }
// The best of these values by the experiment's direction; none for count (a count is not a score).
function bestOf(values, agg, higher) {
  const found = values.filter(v => v !== null);
  if (agg === "count" || !found.length) return null;
  return higher ? Math.max(...found) : Math.min(...found);
}
function commitsText(data, commits) {
  const names = [...commits].sort((a, b) => a - b).map(c => plain(data.commits[c].slice(0, 8)));
  if (names.length < 2) return names.length ? `commit ${names[0]}` : "no commit";
  return `${names.length} commits (${names.slice(0, 4).join(", ")}${names.length > 4 ? ", …" : ""})`;
}
// How an aggregated trial that failed a judgement of its main is told ("3 failed the drift gate").
const JUDGED = {
  "failed (drift gate)": "failed the drift gate",
  "failed (drift gate, accepted)": "failed the drift gate and was accepted",
  "failed (hypothesis refuted)": "refuted the hypothesis",
};
function judgedText(judged) {
  const parts = Object.entries(judged).sort().map(([why, n]) => `${n} ${plain(JUDGED[why] || why)}`);
  return parts.length ? ` (${parts.join(", ")})` : "";
}
// "12 trials at commit abc (3 failed the drift gate)": how many were aggregated, where, which failed a judgement.
function aggregatedText(data, g) {
  const n = g.mains.length;
  return `${n} trial${n === 1 ? "" : "s"} at ${commitsText(data, g.commits)}${judgedText(g.judged)}`;
}
function notAggregated(other) {
  const parts = Object.entries(other).sort().map(([why, n]) => `${n} ${plain(why)}`);
  return parts.length ? `not aggregated: ${parts.join(", ")}` : "";
}
// What hovering a group says: every aggregate (the picked one bold), where its best comes from, what did not count.
function groupHover(data, label, g, agg) {
  const lines = [label];
  const n = g.mains.length;
  if (n) {
    lines.push(Object.keys(AGGREGATE).map(a => {
      const text = `${a} ${fmt(AGGREGATE[a](g))}`;
      return a === agg ? `<b>${text}</b>` : text;
    }).join(" · ") + " (main)");
    lines.push(aggregatedText(data, g));
    const judged = g.best.outcome === "passed" ? "" : `, which ${plain(JUDGED[g.best.outcome] || g.best.outcome)}: its main was measured`;
    lines.push(`best: trial ${plain(g.best.key)} at commit ${plain(data.commits[g.best.commit].slice(0, 8))}${judged}`);
  } else lines.push("no measured trial");
  const other = notAggregated(g.other);
  if (other) lines.push(other);
  return lines.join("<br>");
}
// The subtitle every grouped chart carries: how many trials went in, at which commits, what did not count.
function scopeText(data, scope, agg) {
  const all = groupTrials(data, scope, () => 0).get(0) || {mains: [], commits: new Set(), judged: {}, other: {}};
  const other = notAggregated(all.other);
  const direction = data.higher ? "higher is better" : "lower is better";
  const best = agg === "count" ? "no best: a count is not a score" : `★ best, ${direction}`;
  return `<br><sup>${aggregatedText(data, all)}${other ? "; " + other : ""}; ${best}</sup>`;
}
function trialLink(g) { return g && g.best ? `../trials/${g.best.key}.html` : null; }
function groupedParam(data, i, agg, scope) {
  const p = data.params[i];
  const groups = groupTrials(data, scope, v => v[i]);
  const shown = p.values.map((v, j) => [v, j]).filter(([, j]) => groups.has(j));
  const y = shown.map(([, j]) => aggregated(groups.get(j), agg));
  const best = bestOf(y, agg, data.higher);
  const others = data.params.filter((_, k) => k !== i).map(q => plain(q.name)).join(", ") || "its trials";
  const x = shown.map(([v]) => plain(v));
  return {
    data: [{
      type: "bar", x, y,
      text: y.map(v => v === null ? "" : (v === best ? "★ " : "") + fmt(v)),
      textposition: "auto",
      marker: {color: y.map(v => v !== null && v === best ? "#2a7d2a" : "#1f77b4")},
      hovertext: shown.map(([v, j]) => groupHover(data, `${plain(p.name)} = ${plain(v)}`, groups.get(j), agg)),
      hoverinfo: "text",
      customdata: shown.map(([, j]) => trialLink(groups.get(j))),
    }],
    layout: {
      title: {text: `main by ${plain(p.name)}: ${agg} over ${others}${scopeText(data, scope, agg)}`, x: 0.02, xanchor: "left"},
      xaxis: {type: "category", title: {text: plain(p.name)}},
      yaxis: {title: {text: `${agg} of main`}},
      annotations: shown.filter(([, j]) => !groups.get(j).mains.length).map(([v, j]) => ({
        x: plain(v), y: 0, yanchor: "bottom", showarrow: false,
        text: `no measured trial<br>${notAggregated(groups.get(j).other)}`, font: {color: "#b00"}})),
      height: 340, margin: {t: 70},
    },
  };
}
function pickedIndex(id) {
  const el = document.getElementById(id);
  return el && el.value !== "" ? Number(el.value) : null;
}
function heatmap(data, agg, scope) {
  const yi = pickedIndex("heat-y"), xi = pickedIndex("heat-x");
  if (yi === xi) return {data: [], layout: {title: {text: "pick two different parameters"}}};
  const px = data.params[xi], py = data.params[yi];
  const groups = groupTrials(data, scope, v => `${v[yi]},${v[xi]}`);
  const present = (i, k) => data.params[i].values.map((v, j) => [v, j])
    .filter(([, j]) => [...groups.keys()].some(key => Number(key.split(",")[k]) === j));
  const rows = present(yi, 0), columns = present(xi, 1);
  const z = rows.map(([, r]) => columns.map(([, c]) => aggregated(groups.get(`${r},${c}`), agg)));
  const best = bestOf(z.flat(), agg, data.higher);
  const cell = (r, c, f) => { const g = groups.get(`${r},${c}`); return g ? f(g) : null; };
  return {
    data: [{
      type: "heatmap",
      x: columns.map(([v]) => plain(v)), y: rows.map(([v]) => plain(v)), z,
      text: z.map(row => row.map(v => v === null ? "" : (v === best ? "★ " : "") + fmt(v))),
      texttemplate: "%{text}",
      hovertext: rows.map(([yv, r]) => columns.map(([xv, c]) => cell(r, c, g => groupHover(
        data, `${plain(py.name)} = ${plain(yv)}, ${plain(px.name)} = ${plain(xv)}`, g, agg)) || "no trial")),
      hoverinfo: "text",
      customdata: rows.map(([, r]) => columns.map(([, c]) => cell(r, c, trialLink))),
      colorscale: "Viridis", reversescale: agg !== "count" && !data.higher,  // the best end is yellow
      colorbar: {title: {text: `${agg} of main`}},
    }],
    layout: {
      title: {text: `${agg} of main by ${plain(py.name)} and ${plain(px.name)}${scopeText(data, scope, agg)}`, x: 0.02, xanchor: "left"},
      xaxis: {type: "category", title: {text: plain(px.name)}},
      yaxis: {type: "category", autorange: "reversed", title: {text: plain(py.name)}},
      height: Math.max(320, 120 + 36 * rows.length), margin: {t: 70},
    },
  };
}
function lines(data, agg, scope) {
  const xi = pickedIndex("line-x");
  let bi = pickedIndex("line-by");
  if (bi === xi) bi = null;
  const px = data.params[xi], pb = bi === null ? null : data.params[bi];
  const groups = groupTrials(data, scope, v => bi === null ? `${v[xi]}` : `${v[bi]},${v[xi]}`);
  const traces = [], points = [];
  for (const [lv, l] of pb ? pb.values.map((v, j) => [v, j]) : [[null, null]]) {
    const key = j => l === null ? `${j}` : `${l},${j}`;
    const shown = px.values.map((v, j) => [v, j]).filter(([, j]) => groups.has(key(j)));
    if (!shown.length) continue;
    const y = shown.map(([, j]) => aggregated(groups.get(key(j)), agg));
    const label = pb ? `${plain(pb.name)} = ${plain(lv)}` : "main";
    shown.forEach(([v, j], n) => points.push([Number(v), y[n], label]));
    traces.push({
      type: "scatter", mode: "lines+markers", name: label,
      x: shown.map(([v]) => Number(v)), y,
      hovertext: shown.map(([v, j]) => groupHover(data, `${label}, ${plain(px.name)} = ${plain(v)}`, groups.get(key(j)), agg)),
      hoverinfo: "text",
      customdata: shown.map(([, j]) => trialLink(groups.get(key(j)))),
    });
  }
  const best = bestOf(points.map(p => p[1]), agg, data.higher);
  const starred = points.filter(p => p[1] !== null && p[1] === best);
  if (starred.length) traces.push({
    type: "scatter", mode: "markers", name: "★ best", x: starred.map(p => p[0]), y: starred.map(p => p[1]),
    hovertext: starred.map(p => `★ best: ${p[2]}, ${plain(px.name)} = ${fmt(p[0])}: ${agg} ${fmt(p[1])}`), hoverinfo: "text",
    marker: {symbol: "star", size: 16, color: "#2a7d2a"},
  });
  const per = pb ? `, a line per ${plain(pb.name)}` : "";
  return {
    data: traces,
    layout: {
      title: {text: `${agg} of main against ${plain(px.name)}${per}${scopeText(data, scope, agg)}`, x: 0.02, xanchor: "left"},
      xaxis: {type: "linear", title: {text: plain(px.name)}},
      yaxis: {title: {text: `${agg} of main`}},
      height: 420, margin: {t: 70},
    },
  };
}
function mitosisGroupedDraw() {
  if (!GROUPED || !window.Plotly) return;
  const agg = (document.getElementById("aggregate") || {}).value || "mean";
  const scope = groupScope();
  GROUPED.params.forEach((_, i) => mitosisPlot(`grouped-${i}`, groupedParam(GROUPED, i, agg, scope)));
  if (document.getElementById("heatmap")) mitosisPlot("heatmap", heatmap(GROUPED, agg, scope));
  if (document.getElementById("lines")) mitosisPlot("lines", lines(GROUPED, agg, scope));
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
