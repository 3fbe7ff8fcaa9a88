"""Benchmarks of pytest-mitosis, measured side by side in one run; writes docs/benchmarks.md.

    python benchmarks/run.py [--repeat 5] [--sweeps 3] [--no-mitosis] [--out docs/benchmarks.md]

Cases are interleaved round-robin (so a noisy neighbour hurts all of them alike), each
repeated; the report gives the median and the spread, peak memory (RSS of the main process
and of its whole process tree, sampled every 20 ms), and ratios computed within the run.
The reference runner mitosis (PyPI) is installed into its own venv unless --no-mitosis.
Every pytest-mitosis case runs with forked kernels and with spawned ones (--mitosis-kernel),
and each trial's time split per phase is logged by the plugin (MITOSIS_PHASES). The
scipy + scikit-learn case needs ``pip install -e ".[bench]"``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
GIT = {
    "GIT_AUTHOR_NAME": "b",
    "GIT_AUTHOR_EMAIL": "b@example.org",
    "GIT_COMMITTER_NAME": "b",
    "GIT_COMMITTER_EMAIL": "b@example.org",
}
PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as stream:
            return [int(p) for p in stream.read().split()]
    except OSError:
        return []


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as stream:
            return int(stream.read().split()[1]) * PAGE
    except OSError:
        return 0


def _cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far; 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stream:
            fields = stream.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def _pss(pid: int) -> int:
    """Proportional set size: shared pages (a forked kernel's copy-on-write libraries) counted once."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as stream:
            for line in stream:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@dataclass
class Sample:
    seconds: float
    rss: int  # peak RSS of the started process (bytes)
    tree: int  # peak RSS summed over its process tree (bytes)
    extra: dict[str, float] = field(default_factory=dict)
    pss: int = 0  # peak PSS summed over the process tree (bytes)
    #: CPU seconds of every process of the tree (each one's last sample: a kernel's last 20 ms may be missed)
    cpu: float = 0.0


def measure(argv: list[str], cwd: Path, env: dict[str, str], sampled: bool = True) -> Sample:
    """Run ``argv``; wall time and (``sampled``) peak memory and CPU of the process and its tree.

    The sampler reads every process's PSS every 20 ms: on a tree of ten processes (two xdist
    workers, their kernels, the helpers) that costs a good part of a core, which a 2-core machine
    takes from the case itself, the more the more processes it has. Wall times are therefore taken
    from runs without it (``sampled=False``), memory and CPU from separate sampled runs.
    """
    peak = [0, 0, 0]
    cpu: dict[int, float] = {}
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            own = _rss(proc.pid)
            todo, total, pss = [proc.pid], 0, 0
            while todo:
                pid = todo.pop()
                total += _rss(pid)
                pss += _pss(pid)
                cpu[pid] = max(cpu.get(pid, 0.0), _cpu(pid))
                todo += _children(pid)
            peak[0], peak[1], peak[2] = max(peak[0], own), max(peak[1], total), max(peak[2], pss)
            stop.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    if sampled:
        sampler.start()
    out, _ = proc.communicate()
    seconds = time.perf_counter() - started
    stop.set()
    if sampled:
        sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"benchmark command failed ({proc.returncode}): {' '.join(argv)}\n{out[-3000:]}")
    extra = {}
    last = out.strip().splitlines()[-1] if out.strip() else ""
    if last.startswith("{"):
        extra = {k: v for k, v in json.loads(last).items() if isinstance(v, float)}
    return Sample(seconds, peak[0], peak[1], extra, peak[2], sum(cpu.values()))


def git_repo(path: Path) -> None:
    env = {**os.environ, **GIT}
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "bench"]):
        subprocess.run(["git", *args], cwd=path, env=env, check=True, capture_output=True)


def prepare(base: Path) -> dict[str, Path]:
    sine = base / "sine"
    shutil.copytree(REPO / "examples" / "sine", sine, ignore=shutil.ignore_patterns("trials", "__pycache__"))
    (sine / ".gitignore").write_text("trials/\n__pycache__/\nfloor.html\n")
    git_repo(sine)
    sweep = base / "sweep"
    shutil.copytree(REPO / "examples" / "sine", sweep, ignore=shutil.ignore_patterns("trials", "__pycache__"))
    module = (
        (sweep / "sine_experiment.py")
        .read_text()
        .replace(
            'lookup_dict = {"frequency": {"fast": 10, "slow": 1}}',
            'lookup_dict = {"frequency": {f"f{i:02}": 1 + i for i in range(16)}}',
        )
    )
    (sweep / "sine_experiment.py").write_text(module)
    (sweep / ".gitignore").write_text("trials/\n__pycache__/\n")
    git_repo(sweep)
    heavy = base / "heavy"
    heavy.mkdir()
    (heavy / "heavy_experiment.py").write_text(HEAVY)
    (heavy / "pyproject.toml").write_text(
        '[tool.mitosis.steps]\nfit = ["heavy_experiment:run", "heavy_experiment:lookup_dict"]\n'
    )
    (heavy / ".gitignore").write_text("trials/\n__pycache__/\nfloor.html\n")
    git_repo(heavy)
    empty = base / "empty"
    empty.mkdir()
    (empty / "pyproject.toml").write_text("[tool.pytest.ini_options]\n")
    (empty / "test_nothing.py").write_text("def test_it():\n    pass\n")
    return {"sine": sine, "sweep": sweep, "heavy": heavy, "empty": empty}


#: a step whose module imports scipy and scikit-learn as well (16 variants)
HEAVY = """
import numpy as np
from scipy import integrate, optimize
from sklearn.linear_model import Ridge
from sklearn.model_selection import cross_val_score

lookup_dict = {"alpha": {f"a{i:02}": 0.1 * (i + 1) for i in range(16)}}


def run(alpha):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5))
    y = x @ np.arange(5) + rng.normal(size=200)
    score = cross_val_score(Ridge(alpha=alpha), x, y, cv=3).mean()
    area, _ = integrate.quad(np.sin, 0, np.pi)
    root = optimize.brentq(lambda v: v * v - alpha, 0, 10)
    return {"main": float(score), "metrics": {"area": area, "root": root}}
"""
HEAVY_CELL = "import heavy_experiment\nresult = heavy_experiment.run(alpha=0.1)"


def mitosis_venv(base: Path, sine: Path) -> Path | None:
    venv = base / "mitosis-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "mitosis==0.6.1", "numpy", "matplotlib"],
        capture_output=True,
        text=True,
    )
    if pip.returncode != 0:
        print(f"mitosis could not be installed, skipped: {pip.stderr[-500:]}", file=sys.stderr)
        return None
    ref = base / "mitosis-sine"
    shutil.copytree(sine, ref, ignore=shutil.ignore_patterns("trials", "__pycache__", ".git"))
    text = (ref / "pyproject.toml").read_text()
    (ref / "pyproject.toml").write_text(text.split("[tool.mitosis.experiments]")[0])
    (ref / ".gitignore").write_text("trials/\n__pycache__/\n")
    git_repo(ref)
    return ref


def store_benchmark(base: Path, count: int) -> dict[str, float]:
    """Record ``count`` trials through the store alone, then time ``history`` over them."""
    sys.path.insert(0, str(REPO))
    from pytest_mitosis.store import NewTrial, SQLiteStore

    folder = base / "store"
    store = SQLiteStore(folder)
    env = {"python": {"version": "3.11"}, "packages": {f"pkg{i}": "1.0" for i in range(150)}}
    started = time.perf_counter()
    for i in range(count):
        key = f"{i:08x}"
        store.begin(
            NewTrial(
                key,
                "exp",
                f'[["s","p","lookup","v{i % 50}"]]',
                f"v{i % 50}",
                f"trial_exp-v{i % 50}",
                "pyproject.toml::exp",
                False,
                {"commit": "abc"},
                7,
                env,
                [{"name": "s", "function": "m:f", "lookup": None}],
                [
                    {
                        "step": "s",
                        "name": "p",
                        "kind": "lookup",
                        "text": f"v{i % 50}",
                        "tracked": True,
                        "fingerprint": "x",
                        "value": i % 50,
                        "repr": str(i % 50),
                    }
                ],
            ),
            (),
        )
        store.finish(key, status="passed", main=i * 0.5, metrics={"m": i}, folder=None, message=None)
    recording = (time.perf_counter() - started) / count
    store.close()
    history = measure(
        [sys.executable, "-m", "pytest_mitosis", "--trials-folder", str(folder), "history"],
        base,
        {**os.environ, "PYTHONPATH": str(REPO)},
    )
    report = [sys.executable, "-m", "pytest_mitosis", "--trials-folder", str(folder), "report"]
    first = measure(report, base, {**os.environ, "PYTHONPATH": str(REPO)})
    again = measure(report, base, {**os.environ, "PYTHONPATH": str(REPO)})
    return {
        "record (ms per trial)": recording * 1000,
        "history over all (s)": history.seconds,
        "history peak RSS (MB)": history.rss / 1e6,
        "report, first build (s)": first.seconds,
        "report, refresh (s)": again.seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--sweeps", type=int, default=3, help="repetitions of the 16-trial sweeps")
    parser.add_argument("--no-mitosis", action="store_true", help="skip the reference runner")
    parser.add_argument("--store-trials", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks.md")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="mitosis-bench-"))
    paths = prepare(base)
    env = {**os.environ, **GIT, "PYTHONPATH": str(paths["sine"])}
    env.pop("PYTEST_ADDOPTS", None)
    py = sys.executable
    pytest = [py, "-m", "pytest", "-p", "no:cacheprovider", "--mitosis", "-q"]
    phases = base / "phases"
    phases.mkdir()

    def logged(name: str) -> dict[str, str]:
        return {**env, "MITOSIS_PHASES": str(phases / f"{name}.jsonl")}

    cases: dict[str, tuple[list[str], Path, dict[str, str], int]] = {}
    for kernel in ("fork", "spawn"):
        option = f"--mitosis-kernel={kernel}"
        cases[f"trial ({kernel}): pytest --mitosis -k slow"] = (
            [*pytest, option, "-k", "slow"],
            paths["sine"],
            logged(f"trial-{kernel}"),
            args.repeat,
        )
        cases[f"sweep ({kernel}): 16 trials, one session"] = (
            [*pytest, option],
            paths["sweep"],
            logged(f"sweep-{kernel}"),
            args.sweeps,
        )
        cases[f"sweep ({kernel}): 16 trials, -n 2"] = ([*pytest, option, "-n", "2"], paths["sweep"], env, args.sweeps)
        cases[f"scipy+sklearn trial ({kernel}): -k a00"] = (
            [*pytest, option, "-k", "a00"],
            paths["heavy"],
            env,
            args.repeat,
        )
        cases[f"scipy+sklearn sweep ({kernel}): 16 trials, one session"] = (
            [*pytest, option],
            paths["heavy"],
            logged(f"heavy-{kernel}"),
            args.sweeps,
        )
    cases["floor: fresh kernel + one cell + HTML"] = ([py, str(HERE / "floor.py")], paths["sine"], env, args.repeat)
    cases["scipy+sklearn floor"] = (
        [py, str(HERE / "floor.py"), HEAVY_CELL],
        paths["heavy"],
        {**env, "PYTHONPATH": str(paths["heavy"])},
        args.repeat,
    )
    cases["plain python -c"] = (
        [py, "-c", "import sine_experiment; sine_experiment.run(4, 1)"],
        paths["sine"],
        env,
        args.repeat,
    )
    cases["collect-only, plugin installed"] = (
        [py, "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", "-q"],
        paths["empty"],
        env,
        args.repeat * 3,
    )
    cases["collect-only, -p no:mitosis"] = (
        [py, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:mitosis", "--collect-only", "-q"],
        paths["empty"],
        env,
        args.repeat * 3,
    )
    if not args.no_mitosis:
        ref = mitosis_venv(base, paths["sine"])
        if ref is not None:
            # A fresh trials folder per run: mitosis 0.6.1 refuses its own second run of this
            # command ("Parameter 'amplitude' variant '4' is stored with different values").
            mitosis = base / "mitosis-venv" / "bin" / "mitosis"
            cases["reference: mitosis 0.6.1"] = (
                ["sh", "-c", f"rm -rf trials && {mitosis} sine -p sine.frequency=slow -e sine.amplitude=4"],
                ref,
                {**env, "PYTHONPATH": str(ref)},
                args.repeat,
            )
    # one warm-up of each (bytecode, page cache), then interleaved rounds; every trial's phases are
    # logged by the plugin (MITOSIS_PHASES), the warm-ups' removed
    load = [os.getloadavg()[0]]
    for argv, cwd, case_env, _ in cases.values():
        measure(argv, cwd, case_env)
    for log in phases.iterdir():
        log.unlink()
    samples: dict[str, list[Sample]] = {name: [] for name in cases}
    rounds = max(n for *_, n in cases.values())
    for round_ in range(rounds):
        for name, (argv, cwd, case_env, n) in cases.items():
            if round_ < n:
                timed = measure(argv, cwd, case_env, sampled=False)
                seen = measure(argv, cwd, case_env)
                samples[name].append(replace(seen, seconds=timed.seconds, extra=timed.extra))
        load.append(os.getloadavg()[0])
    store = store_benchmark(base, args.store_trials)
    split = {log.stem: [json.loads(line) for line in log.read_text().splitlines()] for log in phases.iterdir()}
    write_report(args.out, samples, store, args, split, load)
    shutil.rmtree(base, ignore_errors=True)
    print(args.out.read_text())


NOTES = """
## How a trial gets close to the floor

The floor is what any notebook-based runner must pay: a fresh kernel, the experiment's cell,
an HTML export. On top of it, `pytest --mitosis` pays pytest's own start, importing the
steps for collection (to read their signatures and lookup dicts: numpy and matplotlib for
the sine example), the git status and environment record (about 0.1 s), fingerprints and
the store (milliseconds). What hides most of that:

- **Forked kernels (issue 14, the default on Linux)**: one warm parent per session, started
  from pytest's interpreter at the session's start, before pytest collects (the libraries
  the steps import are found by reading their import statements), imports ipykernel and the libraries the
  steps import (numpy, matplotlib; scipy and scikit-learn in the heavier case) once; every
  trial's kernel is a fork of it, so a kernel is ready in a fraction of a second and the
  step's imports cost nothing. Every kernel is still a fresh process that runs one trial and
  is stopped when it ends (`tests/test_fork_kernels.py` proves a trial sees none of the
  previous trial's changes). Copy-on-write keeps the preloaded libraries' pages shared.
- **The next trial's kernel starts while the current trial runs**, so a sweep pays a
  kernel's start-up once (with forks, the next kernel costs a fork and ipykernel's set-up).
- **A kernel is ready as soon as it answers**: jupyter_client's `wait_for_ready` also waits
  until IOPub has been silent for 0.2 s, which was most of a sweep trial's "kernel start";
  the trial starts once `kernel_info` is answered and IOPub carries its status. A stopped
  kernel is looked for every 5 ms (jupyter_client: 0.1 s).
- **Notebooks and HTML pages are written by a helper process**, started with the warm parent:
  it imports nbconvert and compiles the templates while pytest collects, on the other core,
  and writes each trial's notebook and page while the trial writes `trial.yaml` and its
  outcome. A trial's folder moves into place, and its outcome is reported, only once both
  are complete. (The export cannot overlap the *next* trial's cells inside pytest's protocol:
  the next trial's run needs its record and lock check, which pytest's protocol gives only
  after this trial's reports; starting it earlier would run a trial after a failure that
  `-x` should stop at, and a Ctrl-C would interrupt two trials.)
- **What collection imported is frozen for the garbage collector** (`gc.freeze`): pytest's
  collection at the end of the session and the interpreter's teardown no longer walk numpy,
  matplotlib and pytest itself (about 0.5 s of every session); the warm parent freezes its
  preloaded libraries, so no kernel's collector writes to (and copies) their pages.
- **Collection imports the steps in a fork of the warm parent**, which has their libraries
  already: pytest's process no longer imports numpy and matplotlib (about 0.9 s of CPU, paid
  again by every xdist worker, while the parent imported the same beside it). The fork imports
  the investigation's own modules, collects, and hands back each value's fingerprint, record
  text and header cell (the values themselves stay there); the warnings the import raised are
  raised again in pytest, so its summary lists them. Without a usable parent (spawned kernels,
  `--collect-only`, `--mitosis-check`) pytest's process collects as before.
- **git and the environment record are read in a thread while pytest collects.**
- **pytest does not walk the trials folder** looking for tests: a study's trial folders
  (notebooks, pages, pickles) made every session's collection slower as the study grew
  (1.4 s instead of 0.6 s of `--collect-only` at 435 trials).
- **Under pytest-xdist, one warm parent and one HTML helper serve all local workers**: the
  controller starts them (each listening on a Unix socket) when it configures the first
  worker, and each worker connects instead of starting its own (a worker that cannot connect
  starts its own). The controller no longer imports the steps either: the sweep size guard
  counts the node ids the first worker collected, before any trial is scheduled.
- **Each trial's `trial.yaml` is written by libyaml** (a fifth of PyYAML's own emitter's time,
  the same text) and its notebook is built without nbformat's per-cell schema validation (it
  is validated once, when written).

`--mitosis-kernel=spawn` is the previous behaviour (a new interpreter per kernel), measured
here side by side. `-n 2` runs two trials at a time, the two workers sharing the controller's
warm parent and HTML helper.

The store is SQLite in WAL mode with one short `BEGIN IMMEDIATE` transaction to start and
one to finish a trial; environments are stored once per distinct environment (by digest),
not once per trial.
"""


def med(values: list[float]) -> float:
    return statistics.median(values)


def write_report(
    out: Path,
    samples: dict[str, list[Sample]],
    store: dict[str, float],
    args: argparse.Namespace,
    split: dict[str, list[dict[str, object]]],
    load: list[float],
) -> None:
    t = {name: med([s.seconds for s in found]) for name, found in samples.items()}
    cpu = {name: med([s.cpu for s in found]) for name, found in samples.items()}
    cores = os.cpu_count() or 1
    lines = [
        "# Benchmarks",
        "",
        f"Measured by `python benchmarks/run.py --repeat {args.repeat} --sweeps {args.sweeps}` on "
        f"{os.cpu_count()} cores, Python {sys.version.split()[0]}, {time.strftime('%Y-%m-%d')}. Cases were "
        "interleaved round-robin after one warm-up each; times are wall-clock medians with the range, "
        "each from a run without the memory sampler (which reads every process's PSS every 20 ms, a cost "
        "that grows with the number of processes and would be charged to the case); a second run of each "
        "case in each round, sampled, gives memory and CPU. Memory is the peak RSS of the started process and of its whole process tree (kernels included), "
        "and the tree's peak PSS (pages shared between processes, such as a forked kernel's copy-on-write "
        "libraries, counted once). CPU is the median CPU time (user + system) of the whole process tree: "
        f"on {cores} cores no case can take less wall time than its CPU time / {cores}. Load average (1 min) "
        f"while measuring: {min(load):.1f}–{max(load):.1f} (sampled after each round; other jobs shared the cores "
        "when it is above 0).",
        "",
        "| case | median (s) | range (s) | CPU, tree (s) | peak RSS, process (MB) | peak RSS, tree (MB) "
        "| peak PSS, tree (MB) | runs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, found in samples.items():
        seconds = [s.seconds for s in found]
        lines.append(
            f"| {name} | {med(seconds):.2f} | {min(seconds):.2f}–{max(seconds):.2f} | {cpu[name]:.2f} | "
            f"{max(s.rss for s in found) / 1e6:.0f} | {max(s.tree for s in found) / 1e6:.0f} | "
            f"{max(s.pss for s in found) / 1e6:.0f} | {len(found)} |"
        )
    floor = t["floor: fresh kernel + one cell + HTML"]
    heavy_floor = t["scipy+sklearn floor"]
    # paired: the two cases ran one after the other in each round, so a busy moment slows both
    added = 1000 * med(
        [
            a.seconds - b.seconds
            for a, b in zip(samples["collect-only, plugin installed"], samples["collect-only, -p no:mitosis"])
        ]
    )
    ratios: list[tuple[str, str, str]] = []
    for kernel in ("fork", "spawn"):
        trial = t[f"trial ({kernel}): pytest --mitosis -k slow"]
        sweep, sweep2 = t[f"sweep ({kernel}): 16 trials, one session"], t[f"sweep ({kernel}): 16 trials, -n 2"]
        heavy_trial = t[f"scipy+sklearn trial ({kernel}): -k a00"]
        heavy_sweep = t[f"scipy+sklearn sweep ({kernel}): 16 trials, one session"]
        fork = kernel == "fork"
        ratios += [
            (f"{kernel}: single trial / floor", f"{trial / floor:.2f}", "≤ 1.1" if fork else "(today: 1.2–1.4)"),
            (
                f"{kernel}: 16-trial sweep / (16 × floor)",
                f"{sweep / (16 * floor):.2f}",
                "≤ 0.25" if fork else "(today: 0.3–0.6)",
            ),
            (
                f"{kernel}: 16-trial sweep with -n 2 / (16 × floor)",
                f"{sweep2 / (16 * floor):.2f}",
                "≤ 0.15" if fork else "",
            ),
            (
                f"{kernel}: 16-trial sweep, CPU of the tree / {cores} cores / (16 × floor): one session, -n 2",
                f"{cpu[f'sweep ({kernel}): 16 trials, one session'] / cores / (16 * floor):.2f}, "
                f"{cpu[f'sweep ({kernel}): 16 trials, -n 2'] / cores / (16 * floor):.2f}",
                "(the least wall time the cores allow)",
            ),
            (
                f"{kernel}: scipy+sklearn, per trial after the first / its floor",
                f"{(heavy_sweep - heavy_trial) / 15 / heavy_floor:.2f}",
                "≤ 0.2" if fork else "",
            ),
        ]
    peak = {k: max(s.tree for s in samples[f"sweep ({k}): 16 trials, one session"]) for k in ("fork", "spawn")}
    pss = {k: max(s.pss for s in samples[f"sweep ({k}): 16 trials, one session"]) for k in ("fork", "spawn")}
    ratios += [
        (
            "16-trial sweep: fork / spawn (time)",
            f"{t['sweep (fork): 16 trials, one session'] / t['sweep (spawn): 16 trials, one session']:.2f}",
            "",
        ),
        ("16-trial sweep: peak RSS of the process tree, fork / spawn", f"{peak['fork'] / peak['spawn']:.2f}", "≤ 1.5"),
        ("16-trial sweep: peak PSS of the process tree, fork / spawn", f"{pss['fork'] / pss['spawn']:.2f}", ""),
        (
            "plugin installed, not enabled: added to --collect-only (median of paired runs)",
            f"{added:.0f} ms",
            "< 20 ms",
        ),
        (
            f"store: recording, per trial ({args.store_trials:,} trials)",
            f"{store['record (ms per trial)']:.2f} ms",
            "< 20 ms",
        ),
        (f"store: history over {args.store_trials:,} trials", f"{store['history over all (s)']:.2f} s", "< 1 s"),
        (
            f"report over {args.store_trials:,} trials: first build / refresh",
            f"{store['report, first build (s)']:.2f} s / {store['report, refresh (s)']:.2f} s",
            "(measured)",
        ),
    ]
    if "reference: mitosis 0.6.1" in t:
        ratios.insert(0, ("reference mitosis 0.6.1 / floor", f"{t['reference: mitosis 0.6.1'] / floor:.2f}", ""))
    lines += ["", "## Ratios and targets (issues 6 and 14)", "", "| measure | this run | target |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in ratios]
    phases = samples["floor: fresh kernel + one cell + HTML"]
    keys = [k for k in phases[0].extra]
    lines += ["", "## Where the floor's time goes", "", "| phase | median (s) |", "|---|---|"]
    lines += [f"| {k} | {med([s.extra.get(k, 0.0) for s in phases]):.2f} |" for k in keys]
    lines += [
        "| interpreter start and the rest (total − phases) | "
        f"{floor - sum(med([s.extra.get(k, 0.0) for s in phases]) for k in keys):.2f} |"
    ]
    lines += phase_table(split)
    lines += ["", NOTES.strip()]
    owned = {line for line in "\n".join(lines).splitlines() if line.startswith("## ")}
    # sections this script does not write (measured by other scripts, such as benchmarks/sweep_resources.py,
    # or written by hand about a run) are kept as they were, in their order
    for heading, body in sections(out.read_text(encoding="utf-8") if out.exists() else ""):
        if heading not in owned:
            lines += ["", heading + body.rstrip()]
    out.write_text("\n".join(lines) + "\n")


def sections(text: str) -> list[tuple[str, str]]:
    """The ``## `` sections of a Markdown text: (heading line, what follows it up to the next one)."""
    found: list[tuple[str, str]] = []
    for part in ("\n" + text).split("\n## ")[1:]:
        heading, _, body = part.partition("\n")
        found.append(("## " + heading, "\n" + body))
    return found


def phase_table(split: dict[str, list[dict[str, object]]]) -> list[str]:
    """Median seconds per phase of a trial, as the plugin logged them (``MITOSIS_PHASES``).

    For sweeps, the first trial of each session is left out: it is the single-trial case.
    """
    columns = {
        "trial-fork": "single trial, fork",
        "trial-spawn": "single trial, spawn",
        "sweep-fork": "sweep trial, fork",
        "sweep-spawn": "sweep trial, spawn",
        "heavy-fork": "scipy+sklearn sweep trial, fork",
        "heavy-spawn": "scipy+sklearn sweep trial, spawn",
    }
    rows: dict[str, dict[str, float]] = {}
    names: list[str] = []
    for key, title in columns.items():
        records = split.get(key, [])
        if key.startswith(("sweep", "heavy")):
            records = [r for i, r in enumerate(records) if i % 16]
        for record in records:
            for phase in record["phases"]:  # type: ignore[union-attr]
                if phase not in names:
                    names.append(phase)
        rows[title] = {
            phase: med([float(r["phases"].get(phase, 0.0)) for r in records])  # type: ignore[union-attr]
            for phase in names
            if records
        }
        rows[title]["total"] = med([float(r["total"]) for r in records]) if records else 0.0  # type: ignore[arg-type]
    lines = [
        "",
        "## Where a trial's time goes (pytest-mitosis, per phase, median seconds)",
        "",
        "The plugin's own split of each trial (from the trial's start in the pytest process to its files "
        "in place); pytest's start-up and collection come before the first trial.",
        "",
        "| phase | " + " | ".join(rows) + " |",
        "|---|" + "---|" * len(rows),
    ]
    for phase in [*names, "total"]:
        lines.append(f"| {phase} | " + " | ".join(f"{row.get(phase, 0.0):.2f}" for row in rows.values()) + " |")
    return lines


if __name__ == "__main__":
    main()
