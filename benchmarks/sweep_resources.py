"""Descriptors, threads, memory and time per trial of every process of ours over a long sweep in one session.

    python benchmarks/sweep_resources.py [--trials 1000] [--out docs/benchmarks.md] [--raw FILE] [--keep DIR]
    python benchmarks/sweep_resources.py --from-raw FILE [--out docs/benchmarks.md]
    python benchmarks/sweep_resources.py --trials 600 --tracemalloc 200

Runs one session of ``--trials`` cheap trials (one lookup param with that many variants) and
records, after each trial (a conftest.py in the investigation, ``pytest_runtest_logreport``), the
time, and the open file descriptors, threads and RSS of every process of ours: pytest's, the HTML
helper's (``execution/htmlworker.py``), the kernels' warm parent's (``execution/forkparent.py``),
and how many processes the parent has forked that are alive (the next trial's kernel, the
collection's fork if it is still there). The processes are found under pytest's in ``/proc``.

The section "Ten thousand trials in one session" of ``--out`` is replaced (or added) with: the
table after 1, 10, 100, 1k, 10k trials; each process's RSS growth per trial (the least-squares slope over the second half of the
sweep, so that what is allocated once as the sweep warms up does not count); the time per trial
over the first and the last thousand trials (a tenth of the sweep when it has fewer than 2,000).
Flat numbers mean no leak: issue 28 asks for growth under 5 kB a trial and the last thousand
within 10% of the first. Before jupyter_client's channels were closed, each trial left about 12
descriptors and one thread behind, so a sweep under the common ``ulimit -n 1024`` died at about trial 83.

``--tracemalloc N`` looks for what grows instead (not written to ``--out``: the trials are several
times slower under it): the pytest process traces its allocations (``tracemalloc``, 10 frames),
takes a snapshot after trial N and another after the last, and prints the largest differences by
line, by file and by traceback, and the objects whose count grew (``gc``, by type). ``--keep DIR``
makes the investigation in ``DIR`` and keeps it: its store, to time ``history``, ``status`` and
the report on it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from run import GIT, REPO  # the benchmark suite's own constants (this folder is on sys.path)

SECTION = "## Ten thousand trials in one session: every process's memory, descriptors, threads and time (issue 28)"

#: the processes reported, in order, with the names the tables give them
ROLES = {"pytest": "pytest", "html": "HTML helper", "parent": "warm parent"}

CONFTEST = '''
import json
import os
import threading
import time

PAGE = os.sysconf("SC_PAGE_SIZE")
LOG = os.environ["MITOSIS_BENCH_LOG"]
TRACE = int(os.environ.get("MITOSIS_BENCH_TRACEMALLOC") or 0)
TOTAL = int(os.environ["MITOSIS_BENCH_TRIALS"])
_count = 0
_first = None


def _read(path):
    try:
        with open(path) as stream:
            return stream.read()
    except OSError:
        return None


def _process(pid):
    """RSS, descriptors, threads of ``pid`` (``None`` when it is gone)."""
    status = _read(f"/proc/{pid}/status")
    if status is None:
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    try:
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    return {"rss": int(fields["VmRSS"].split()[0]) * 1024, "fds": fds, "threads": int(fields["Threads"])}


def _ours():
    """pytest's descendants by role: the HTML helper, the warm parent, the parent's live children."""
    parents = {}
    commands = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        stat = _read(f"/proc/{name}/stat")
        if stat is None:
            continue
        parents[int(name)] = int(stat.rsplit(")", 1)[1].split()[1])
        commands[int(name)] = (_read(f"/proc/{name}/cmdline") or "").replace("\\0", " ")
    me = os.getpid()
    found = {"forked": 0, "other": 0}
    for pid, parent in parents.items():
        if parent != me:
            continue
        command = commands[pid]
        role = "html" if "execution.htmlworker" in command else "parent" if "execution.forkparent" in command else None
        if role is None:
            found["other"] += 1  # a spawned kernel, git
            continue
        found[role] = _process(pid)
        if role == "parent":
            found["forked"] = sum(1 for child, up in parents.items() if up == pid)
    return found


def _snapshot():
    import gc
    import tracemalloc
    from collections import Counter

    gc.collect()
    counts = Counter(type(o).__qualname__ for o in gc.get_objects())
    return tracemalloc.take_snapshot(), counts


def pytest_configure(config):
    if TRACE:
        import tracemalloc

        tracemalloc.start(10)


def pytest_runtest_logreport(report):
    global _count, _first
    if report.when != "call":
        return
    _count += 1
    record = {"outcome": report.outcome, "time": time.monotonic(), "pytest": _process(os.getpid()), **_ours()}
    record["pytest"]["threads_py"] = threading.active_count()
    with open(LOG, "a") as stream:
        stream.write(json.dumps(record) + "\\n")
    if TRACE and _count == TRACE:
        _first = _snapshot()
    if TRACE and _count == TOTAL and _first is not None:
        _compare(*_first, *_snapshot())


def _compare(before, counts_before, after, counts_after):
    import tracemalloc

    growth = TOTAL - TRACE
    lines = [f"tracemalloc: trial {TRACE} to trial {TOTAL} ({growth} trials), bytes a trial", "", "by line:"]
    for stat in after.compare_to(before, "lineno")[:40]:
        lines.append(f"  {stat.size_diff / growth:9.0f} B  {stat.count_diff:+7d} blocks  {stat.traceback[0]}")
    lines += ["", "by file:"]
    for stat in after.compare_to(before, "filename")[:25]:
        lines.append(f"  {stat.size_diff / growth:9.0f} B  {stat.traceback[0].filename}")
    lines += ["", "tracebacks of the largest:"]
    for stat in after.compare_to(before, "traceback")[:8]:
        lines.append(f"  {stat.size_diff / growth:9.0f} B:")
        lines += ["      " + line for line in stat.traceback.format()]
    lines += ["", "objects whose count grew (gc), a trial:"]
    grew = sorted(((counts_after[k] - counts_before.get(k, 0), k) for k in counts_after), reverse=True)[:25]
    lines += [f"  {n / growth:8.2f}  {name}" for n, name in grew if n > 0]
    total = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    lines += ["", f"total traced growth: {total / growth:.0f} B a trial"]
    with open(LOG + ".trace", "w") as stream:
        stream.write("\\n".join(lines) + "\\n")
'''


def run(trials: int, trace: int = 0, keep: Path | None = None) -> tuple[list[dict], float, str, str]:
    """One session of ``trials`` cheap trials: the records, its wall time, pytest's last line, and the
    tracemalloc comparison (``trace``: after that trial, and after the last). ``keep``: the investigation
    is made there and kept (its store and trials, for timing ``history``, ``status`` and the report)."""
    with tempfile.TemporaryDirectory(prefix="mitosis-bench-") as tmp:
        root = keep if keep is not None else Path(tmp) / "study"
        root.mkdir(parents=True)
        (root / "pyproject.toml").write_text("[tool.mitosis.steps]\ncheap = ['steps:cheap', 'steps:lookup']\n")
        (root / "steps.py").write_text(
            textwrap.dedent(f"""
            lookup = {{"i": {{f"v{{i:05d}}": i for i in range({trials})}}}}


            def cheap(i):
                return {{"main": i}}
        """)
        )
        (root / "conftest.py").write_text(CONFTEST)
        (root / ".gitignore").write_text("__pycache__/\n")
        log = Path(tmp) / "log.jsonl"
        env = {
            **os.environ,
            **GIT,
            "MITOSIS_BENCH_LOG": str(log),
            "MITOSIS_BENCH_TRIALS": str(trials),
            "MITOSIS_BENCH_TRACEMALLOC": str(trace),
        }
        for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "bench"]):
            subprocess.run(["git", *args], cwd=root, env=env, check=True)
        started = time.perf_counter()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-p",
                "no:cacheprovider",
                "--mitosis",
                "--mitosis-max-trials",
                "0",
                "-o",
                "mitosis_report=false",
                "-q",
            ],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - started
        tail = (done.stdout + done.stderr).strip().splitlines()[-1]
        records = [json.loads(line) for line in log.read_text().splitlines()]
        traced = Path(str(log) + ".trace")
        comparison = traced.read_text() if traced.exists() else ""
    return records, seconds, tail, comparison


def slope(values: list[float]) -> float:
    """The least-squares slope of ``values`` against their index (per trial)."""
    n = len(values)
    if n < 2:
        return 0.0
    mean_x = (n - 1) / 2
    mean_y = sum(values) / n
    num = sum((x - mean_x) * (y - mean_y) for x, y in enumerate(values))
    den = sum((x - mean_x) ** 2 for x in range(n))
    return num / den


def series(records: list[dict], role: str, key: str) -> list[float]:
    """``key`` of the process ``role`` after each trial (the last value seen when it was not found)."""
    out: list[float] = []
    for r in records:
        process = r.get(role)
        out.append(process[key] if process else (out[-1] if out else 0.0))
    return out


def table(records: list[dict], seconds: float, tail: str, load: str = "") -> str:
    n = len(records)
    marks = [m for m in (1, 10, 100, 1000, 10000) if m <= n]
    if n not in marks:
        marks.append(n)
    roles = [role for role in ROLES if any(r.get(role) for r in records)]
    lines = [
        SECTION,
        "",
        f"One session of {n} cheap trials (`python benchmarks/sweep_resources.py --trials {n}`, "
        f"{seconds:.0f} s, pytest said: `{tail}`){load}. After the Nth trial "
        "(descriptors / threads / RSS in MB):",
        "",
        "| after trial | " + " | ".join(ROLES[role] for role in roles) + " | forked children alive |",
        "|---|" + "---|" * len(roles) + "---|",
    ]
    for m in marks:
        r = records[m - 1]
        cells = []
        for role in roles:
            p = r.get(role)
            cells.append(f"{p['fds']} / {p['threads']} / {p['rss'] / 2**20:.0f}" if p else "–")
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {r.get('forked', 0)} |")
    half = records[n // 2 :]
    lines += [
        "",
        "RSS growth a trial, least-squares slope over the second half of the sweep "
        f"(trials {n // 2 + 1}–{n}); first and last RSS (target: under 5 kB a trial):",
        "",
        "| process | growth (kB a trial) | RSS after trial 1 (MB) | RSS after the last (MB) | "
        "descriptors: min–max | threads: min–max |",
        "|---|---|---|---|---|---|",
    ]
    for role in roles:
        rss = series(half, role, "rss")
        fds = series(records, role, "fds")
        threads = series(records, role, "threads")
        first = series(records, role, "rss")
        lines.append(
            f"| {ROLES[role]} | {slope(rss) / 1024:.2f} | {first[0] / 2**20:.1f} | {first[-1] / 2**20:.1f} | "
            f"{min(fds):.0f}–{max(fds):.0f} | {min(threads):.0f}–{max(threads):.0f} |"
        )
    chunk = 1000 if n >= 2000 else max(1, n // 10)
    times = [b["time"] - a["time"] for a, b in zip(records, records[1:])]
    first_times, last_times = times[:chunk], times[-chunk:]
    ratio = statistics.mean(last_times) / statistics.mean(first_times)
    lines += [
        "",
        f"Time per trial (between one trial's report and the next), the first {chunk} trials against the "
        f"last {chunk} (target: within 10%):",
        "",
        "| trials | mean (ms) | median (ms) |",
        "|---|---|---|",
        f"| first {chunk} | {statistics.mean(first_times) * 1e3:.1f} | {statistics.median(first_times) * 1e3:.1f} |",
        f"| last {chunk} | {statistics.mean(last_times) * 1e3:.1f} | {statistics.median(last_times) * 1e3:.1f} |",
        f"| last / first | {ratio:.3f} | {statistics.median(last_times) / statistics.median(first_times):.3f} |",
    ]
    failed = sum(1 for r in records if r["outcome"] != "passed")
    lines += [
        "",
        f"Trials that did not pass: {failed}. Before the fix of jupyter_client's channels (never closed) "
        "each trial left about 12 descriptors and one thread open: under `ulimit -n 1024` a sweep failed from "
        "about trial 83 with `Too many open files`. `tests/test_sweep_survives.py` runs 60 trials under "
        "`ulimit -n 256` and asserts the count stays flat.",
        "",
    ]
    return "\n".join(lines)


def write_section(out: Path, text: str) -> None:
    """Replace the section of ``out`` (or add it at the end); the rest of the file is kept."""
    doc = out.read_text(encoding="utf-8") if out.exists() else "# Benchmarks\n"
    if SECTION in doc:
        head, rest = doc.split(SECTION, 1)
        following = rest.find("\n## ")
        doc = head + text + ("\n" + rest[following + 1 :] if following >= 0 else "")
    else:
        doc = doc.rstrip("\n") + "\n\n" + text
    out.write_text(doc, encoding="utf-8")


#: what is timed on the store the sweep left (``--views``): label, ``python -m pytest_mitosis`` arguments
VIEWS = (
    ("`history` (every trial, newest first)", ["history"]),
    ("`history --session` (the sweep's session)", ["history", "--session"]),
    ("`status` (nothing running)", ["status"]),
    ("`report`: first build", ["report", "-o", "{report}"]),
    ("`report`: refresh, no new trial", ["report", "-o", "{report}"]),
)


def views(root: Path, repeat: int = 3) -> list[tuple[str, list[float]]]:
    """Each of :data:`VIEWS` run ``repeat`` times on the investigation at ``root`` (each a new process, its
    output to /dev/null): the seconds of each run. The report's first build starts from no report folder."""
    import shutil

    timed: list[tuple[str, list[float]]] = []
    report = root / "trials" / "report-bench"
    for label, arguments in VIEWS:
        seconds = []
        for _ in range(repeat):
            if label.endswith("first build"):
                shutil.rmtree(report, ignore_errors=True)
            command = [sys.executable, "-m", "pytest_mitosis", *(a.format(report=report) for a in arguments)]
            started = time.perf_counter()
            subprocess.run(command, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
            seconds.append(time.perf_counter() - started)
        timed.append((label, seconds))
    return timed


def views_table(timed: list[tuple[str, list[float]]], trials: int, load: str) -> str:
    lines = [
        "",
        f"On the store this sweep left ({trials} trials), each command a new process, "
        f"{len(timed[0][1])} runs each{load}:",
        "",
        "| command | median (s) | range (s) |",
        "|---|---|---|",
    ]
    for label, seconds in timed:
        lines.append(f"| {label} | {statistics.median(seconds):.2f} | {min(seconds):.2f}–{max(seconds):.2f} |")
    return "\n".join(lines) + "\n"


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument("--raw", type=Path, help="keep every trial's record here (JSON)")
    parser.add_argument("--from-raw", type=Path, help="write the section from a --raw file, without measuring")
    parser.add_argument("--keep", type=Path, help="make the investigation in this new folder, and keep it")
    parser.add_argument("--views", type=Path, help="time history, status and the report on this kept investigation")
    parser.add_argument(
        "--tracemalloc", type=int, default=0, metavar="N", help="compare snapshots after trial N and the last"
    )
    args = parser.parse_args()
    if args.from_raw:
        raw = json.loads(args.from_raw.read_text())
        records, seconds, tail, load = raw["records"], raw["seconds"], raw["tail"], raw["load"]
    else:
        before = uptime()
        records, seconds, tail, comparison = run(args.trials, args.tracemalloc, args.keep)
        load = f"; `uptime` before: `{before}`, after: `{uptime()}`"
        if args.tracemalloc:
            print(comparison)
            print(table(records, seconds, tail, load))
            return
        if args.raw:
            args.raw.write_text(json.dumps({"records": records, "seconds": seconds, "tail": tail, "load": load}))
    text = table(records, seconds, tail, load)
    if args.views:
        before = uptime()
        timed = views(args.views)
        text = (
            text.rstrip("\n")
            + "\n"
            + views_table(timed, len(records), f" (`uptime` before: `{before}`, after: `{uptime()}`)")
        )
    print(text)
    write_section(args.out, text)


if __name__ == "__main__":
    main()
