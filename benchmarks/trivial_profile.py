"""Where a trivial trial's time goes (issue 28): 200 trials of ``return {"main": float(i)}``, phase by phase.

    python benchmarks/trivial_profile.py [--trials 200] [--repeat 1] [--json out.json] [-n 2]

One session runs 200 trials (a 400-entry lookup dict, ``-k x`` selecting 200) with
``MITOSIS_PROFILE`` set: each process of ours appends its phase timings as JSON lines (see
``pytest_mitosis/core/profile.py``: pytest's process per trial, the HTML helper per page, the
session's collection and report refresh). Side by side, in the same run and interleaved when
repeated, the bare-process baseline of the issue: a plain pytest parametrize that starts one
``python -c pass`` per test. Prints a markdown table (median and mean per trial, in ms) for
docs/benchmarks.md, with the load average before and after. ``-n N`` runs both sessions under
pytest-xdist with N workers (the phases are then the workers' trials, interleaved: the gaps between
trials mean nothing there, the whole session's time per trial does).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GIT = {
    "GIT_AUTHOR_NAME": "b",
    "GIT_AUTHOR_EMAIL": "b@example.org",
    "GIT_COMMITTER_NAME": "b",
    "GIT_COMMITTER_EMAIL": "b@example.org",
}

STEP = """
lookup = {{"i": {{**{{f"x{{n:03d}}": n for n in range({n})}}, **{{f"y{{n:03d}}": n for n in range({n})}}}}}}


def run(i):
    return {{"main": float(i)}}
"""

PYPROJECT = """
[tool.mitosis.steps]
trivial = ["study:run", "study:lookup"]
"""

BARE = """
import subprocess
import sys

import pytest


@pytest.mark.parametrize("i", range({n}))
def test_bare(i):
    subprocess.run([sys.executable, "-c", "pass"], check=True)
"""

#: the phases in the order a trial meets them (what is not listed is appended in the order found)
ORDER = [
    "setup and guards",
    "store begin",
    "kernel taken, the next one launched",
    "notebook built",
    "kernel: kernel start",
    "kernel: header",
    "kernel: set-up",
    "kernel: step",
    "kernel: saving",
    "kernel: kernel stop",
    "notebook handed to the HTML helper",
    "trial.yaml and outcome.json",
    "waiting for the notebook and HTML page",
    "waiting for the notebook",
    "folder moved into place",
    "page asked for",
    "judge",
    "store finish",
]


def env(**extra: str) -> dict[str, str]:
    found = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "MITOSIS_"))}
    return {**found, **GIT, **extra}


def investigation(base: Path, trials: int) -> Path:
    root = base / "trivial"
    root.mkdir()
    (root / "pyproject.toml").write_text(PYPROJECT.lstrip(), encoding="utf-8")
    (root / "study.py").write_text(STEP.format(n=trials).lstrip(), encoding="utf-8")
    (root / ".gitignore").write_text("__pycache__/\n.pytest_cache/\n", encoding="utf-8")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "trivial"]):
        subprocess.run(["git", *args], cwd=root, env=env(), check=True)
    return root


def timed(argv: list[str], cwd: Path, environment: dict[str, str]) -> float:
    started, busy = time.perf_counter(), busy_cpu()
    done = subprocess.run(argv, cwd=cwd, env=environment, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    CPU[tuple(argv)] = CPU.get(tuple(argv), []) + [busy_cpu() - busy]
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return seconds


#: the machine's busy CPU seconds during each run of a command (by its argv)
CPU: dict[tuple[str, ...], list[float]] = {}


def busy_cpu() -> float:
    """CPU seconds the whole machine has spent busy since boot, all cores (``/proc/stat``: not idle, not I/O wait).

    A sweep's processes come and go (a kernel a trial): what the machine spent during the run is what
    they all cost, whichever process it was.
    """
    with open("/proc/stat", encoding="ascii") as stream:
        fields = [int(x) for x in stream.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def cpu_by_process(lines: list[dict], trials: int) -> dict[str, float]:
    """CPU seconds per trial by process, from the profile's records (each says what its process used since its last)."""
    share: dict[str, float] = {}
    names = {
        "trial": "pytest's process (each trial)",
        "kernel": "the trial's kernel (from its fork)",
        "html": "HTML helper",
    }
    for record in lines:
        name = names.get(record["scope"])
        if name is not None and "cpu" in record:
            share[name] = share.get(name, 0.0) + record["cpu"] / trials
    return share


def per_trial(lines: list[dict], trials: int) -> dict[str, list[float]]:
    """Seconds per phase per trial: pytest's process and the HTML helper's, and pytest's own between trials."""
    found: dict[str, list[float]] = {}
    records = sorted((r for r in lines if r["scope"] == "trial"), key=lambda r: r["time"])
    pages: dict[str, dict[str, float]] = {}  # the helper writes a notebook and, later, its page: one line each
    for r in lines:
        if r["scope"] == "html":
            page = pages.setdefault(r["name"], {})
            for phase, seconds in r["phases"].items():
                page[phase] = page.get(phase, 0.0) + seconds
    for record in records:
        for phase, seconds in record["phases"].items():
            found.setdefault(phase, []).append(seconds)
    for phases in pages.values():
        for phase, seconds in phases.items():
            found.setdefault(f"HTML helper: {phase}", []).append(seconds)
    # from one trial's end to the next one's end, what no phase above accounts for: pytest's item
    # protocol, its reports, our hooks (progress line, summary rows), the terminal
    gaps = [
        (later["time"] - earlier["time"]) - sum(later["phases"].values())
        for earlier, later in zip(records, records[1:])
    ]
    found["pytest and our hooks between trials"] = gaps
    assert len(records) == trials, f"{len(records)} trial records, expected {trials}"
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("-n", dest="workers", type=int, default=0, help="pytest-xdist workers for both sessions")
    options = parser.parse_args()
    xdist = ["-n", str(options.workers)] if options.workers else []
    n = options.trials
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="mitosis-trivial-") as tmp:
        base = Path(tmp)
        root = investigation(base, n)
        bare = base / "bare"
        bare.mkdir()
        (bare / "test_bare.py").write_text(BARE.format(n=n), encoding="utf-8")
        walls: dict[str, list[float]] = {"mitosis": [], "bare": []}
        profiles: list[list[dict]] = []
        for round_ in range(options.repeat):
            walls["bare"].append(
                timed([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *xdist], bare, env())
            )
            log = base / f"profile-{round_}.jsonl"
            argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--mitosis", "-k", "x", *xdist]
            walls["mitosis"].append(timed(argv, root, env(MITOSIS_PROFILE=str(log))))
            profiles.append([json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()])
            load.append(os.getloadavg()[0])
    phases: dict[str, list[float]] = {}
    sessions: dict[str, list[float]] = {}
    for lines in profiles:
        for phase, values in per_trial(lines, n).items():
            phases.setdefault(phase, []).extend(values)
        for record in lines:
            if record["scope"] == "session":
                for phase, seconds in record["phases"].items():
                    sessions.setdefault(phase, []).append(seconds)
    mitosis, baseline = statistics.median(walls["mitosis"]), statistics.median(walls["bare"])
    machine = {which: statistics.median(v) / n for which, v in CPU.items()}
    by_process: dict[str, list[float]] = {}
    for lines in profiles:
        for name, seconds in cpu_by_process(lines, n).items():
            by_process.setdefault(name, []).append(seconds)
    ordered = [p for p in ORDER if p in phases] + [p for p in phases if p not in ORDER]
    rows = [
        f"| {phase} | {1000 * statistics.median(phases[phase]):.1f} | {1000 * statistics.fmean(phases[phase]):.1f} |"
        for phase in ordered
    ]
    accounted = sum(statistics.fmean(phases[p]) for p in ordered if not p.startswith("HTML helper"))
    where = f"one session with -n {options.workers}" if options.workers else "one session"
    print(f"{n} trials in {where}: {mitosis:.1f} s ({1000 * mitosis / n:.0f} ms a trial, whole session)")
    print(f"bare baseline, {n} tests each starting python -c: {baseline:.1f} s ({1000 * baseline / n:.0f} ms a test)")
    print(f"load average (1 min) before and after each round: {', '.join(f'{x:.1f}' for x in load)}")
    cores = os.cpu_count() or 1
    print(f"\n| CPU a trial ({cores} cores) | ms |\n|---|---|")
    for argv, seconds in machine.items():
        which = "pytest-mitosis" if "--mitosis" in argv else "bare baseline"
        print(
            f"| {which}: the whole machine, busy (floor on {cores} cores: {1000 * seconds / cores:.0f} ms a trial) | "
            f"{1000 * seconds:.1f} |"
        )
    for name, values in by_process.items():
        print(f"| — of which {name} | {1000 * statistics.median(values):.1f} |")
    print("\n| phase (per trial) | median (ms) | mean (ms) |\n|---|---|---|")
    print("\n".join(rows))
    print(f"| sum of the means in pytest's process | | {1000 * accounted:.1f} |")
    for phase, values in sessions.items():
        share = statistics.fmean(values) / n
        print(f"| once per session: {phase} ({statistics.fmean(values):.2f} s), per trial | | {1000 * share:.1f} |")
    if options.json is not None:
        options.json.write_text(
            json.dumps({"walls": walls, "load": load, "phases": phases, "sessions": sessions, "cpu": by_process}),
            encoding="utf-8",
        )


if __name__ == "__main__":
    main()
