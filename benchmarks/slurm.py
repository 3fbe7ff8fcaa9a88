"""What the Slurm executor costs a sweep (issue 27, "Measured"), side by side with the local executor.

    python benchmarks/slurm.py [--rounds 3] [--raw FILE] [--out docs/benchmarks.md]
    python benchmarks/slurm.py --from-raw FILE [--out docs/benchmarks.md]

Needs root and Debian's ``slurm-wlm`` and ``munge`` (as the Slurm tests do): a real single-node
cluster is started in a temp dir with ``tests/slurm_cluster.py``'s ``start_cluster()`` and stopped
at the end, whatever happens. The investigation is ``benchmarks/run.py``'s 16-trial sine sweep (a
git repository in a temp dir), run in these cases, each run in a fresh ``git clone`` (an empty
trials folder and store, so every run does the same work):

- **local (fork)**: ``--mitosis-executor=local``, the default forked kernels;
- **local (spawn)**: ``--mitosis-kernel=spawn``, a new interpreter per kernel: what a Slurm task
  does (one kernel per job, no warm parent), so the difference to it is Slurm's own share;
- **slurm**: ``--mitosis-executor=slurm``, the array unthrottled (the node declares 16 CPUs on the
  host's cores, so all 16 tasks may run at once);
- **slurm, throttle=2**: ``--mitosis-slurm throttle=2`` (``--array=0-15%2``).

Cases are interleaved round-robin (the order rotated each round) after one warm-up of each, so a
busy moment of the shared machine hurts every case alike; the load average is sampled after
every round. Reported: wall time of each session (median, range), the per-trial overhead of each
Slurm case against local ((case - local) / 16, the median of each round's paired difference), and
how many tasks of the array ran at once, max and mean (the tasks' summed run time over the span
from the first start to the last end), two ways: Slurm's own ``StartTime``/``EndTime``
(``scontrol show job -o``, whole seconds) and, finer, each task's start as its job script saw it
(a ``setup`` line of ``[tool.mitosis.slurm]`` appends ``date +%s.%N`` to a file: the only thing
this benchmark adds to the job) to the moment its job wrote its outcome file (mtime).

The Slurm overhead is split from those clocks: pytest's start to ``sbatch`` (the array's
``job.sh`` is written just before), ``sbatch`` to the first task's start (the scheduler), a task
from its start to its outcome (of which ``run_trial``, its kernel's spawn, from the trials'
``MITOSIS_PHASES`` lines: sbatch exports the session's environment, so the jobs write them too),
each task's outcome to its record in the store (the session's 1 s poll and its settling rule: a
task is recorded once two polls in a row saw it finished), and the last outcome to the session's
end. Writes the section "The Slurm executor (issue 27)" of ``--out`` (other sections are kept);
``--raw`` keeps every run's numbers, from which ``--from-raw`` writes the section again.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
HEADING = "## The Slurm executor (issue 27)"
TRIALS = 16

#: case name -> the pytest options that make it
CASES: dict[str, tuple[str, ...]] = {
    "local (fork)": ("--mitosis-executor=local",),
    "local (spawn)": ("--mitosis-executor=local", "--mitosis-kernel=spawn"),
    "slurm": ("--mitosis-executor=slurm",),
    "slurm, throttle=2": ("--mitosis-executor=slurm", "--mitosis-slurm", "throttle=2"),
}
LOCAL = "local (fork)"


@dataclass
class Run:
    case: str
    round: int
    #: wall time of the pytest session, from the benchmark's clock
    seconds: float
    #: time.time() at the session's start and end
    t0: float
    t1: float
    #: the store's rows: (started, ended) of each trial, by task index for Slurm (by start for local)
    rows: list[tuple[float, float]] = field(default_factory=list)
    #: when pytest's collection ended (time.time(), from the session's MITOSIS_PROFILE line)
    collected: float | None = None
    #: the trials' MITOSIS_PHASES lines (``total``, ``phases``, ``kernel``)
    phases: list[dict[str, Any]] = field(default_factory=list)
    # -- Slurm only --------------------------------------------------------------------------------
    job: str | None = None
    #: when the array's job.sh was written (just before sbatch)
    submitted: float | None = None
    #: each task's start (its script's setup line) and end (its outcome file's mtime), by index
    starts: list[float] = field(default_factory=list)
    ends: list[float] = field(default_factory=list)
    #: Slurm's StartTime / EndTime of each task (whole seconds), by index
    slurm_starts: list[float] = field(default_factory=list)
    slurm_ends: list[float] = field(default_factory=list)


@dataclass
class Measured:
    command: str
    date: str
    python: str
    slurm: str
    cores: int
    uptime: list[str]
    load: list[float]
    runs: list[Run]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds of every case (default 3)")
    parser.add_argument("--raw", type=Path, help="keep every run's numbers in this JSON file")
    parser.add_argument("--from-raw", type=Path, help="write the section from a --raw file, measuring nothing")
    parser.add_argument("--out", type=Path, help="the markdown file whose section this writes (docs/benchmarks.md)")
    args = parser.parse_args()
    if args.from_raw:
        data = json.loads(args.from_raw.read_text())
        measured = Measured(**{**data, "runs": [Run(**run) for run in data["runs"]]})
    else:
        measured = measure_all(args.rounds)
        if args.raw:
            args.raw.write_text(json.dumps(asdict(measured), indent=1))
    section = report(measured)
    print("\n".join(section))
    if args.out:
        write_section(args.out, section)


def measure_all(rounds: int) -> Measured:
    """Start a cluster, run every case ``rounds`` times (after a warm-up of each), stop the cluster."""
    sys.path.insert(0, str(REPO))
    from tests import slurm_cluster

    # a SIGTERM (a CI timeout, kill) stops the cluster too: the finally below runs
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        cluster = slurm_cluster.start_cluster()
    except BaseException as err:  # pytest.skip's exception when Slurm or root is missing: say why
        if type(err).__name__ in ("Skipped", "Failed"):
            raise SystemExit(f"no Slurm cluster for this benchmark: {err}") from None
        raise
    base = Path(tempfile.mkdtemp(prefix="mitosis-slurm-bench-"))
    try:
        return _measure(cluster, base, rounds)
    finally:
        cluster.stop()
        shutil.rmtree(cluster.base, ignore_errors=True)
        shutil.rmtree(base, ignore_errors=True)


def _measure(cluster: Any, base: Path, rounds: int) -> Measured:
    from long_sweep import _load_run  # run.py loaded as the other benchmarks load it (this folder is on sys.path)

    run_py = _load_run()
    sweep = run_py.prepare(base)["sweep"]
    starts = base / "starts.txt"
    # each task's start as its job script sees it, the line before the job's command
    setup = f'echo "$SLURM_ARRAY_JOB_ID $SLURM_ARRAY_TASK_ID $(date +%s.%N)" >> {starts}'
    pyproject = sweep / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + f"\n[tool.mitosis.slurm]\nsetup = ['{setup}']\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "SLURM_", "SQUEUE_"))}
    env.update(run_py.GIT, SLURM_CONF=cluster.env["SLURM_CONF"])
    subprocess.run(["git", "commit", "-qam", "slurm setup line"], cwd=sweep, env=env, check=True)
    version = subprocess.run(["sbatch", "--version"], capture_output=True, text=True, env=env).stdout.strip()
    counter = iter(range(1_000_000))

    def run(case: str, round_: int) -> Run:
        clone = base / f"run-{next(counter)}"
        subprocess.run(["git", "clone", "-q", str(sweep), str(clone)], check=True, env=env)
        phases = clone.parent / f"{clone.name}-phases.jsonl"
        profile = clone.parent / f"{clone.name}-profile.jsonl"
        argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--mitosis", "-q", *CASES[case]]
        t0 = time.time()
        started = time.perf_counter()
        done = subprocess.run(
            argv,
            cwd=clone,
            env={**env, "MITOSIS_PHASES": str(phases), "MITOSIS_PROFILE": str(profile)},
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - started
        t1 = time.time()
        out = done.stdout + done.stderr
        if done.returncode != 0 or f"{TRIALS} passed" not in out:
            raise SystemExit(f"{case}: pytest exited {done.returncode}:\n{out[-3000:]}")
        measured = Run(case, round_, seconds, t0, t1)
        measured.phases = [json.loads(line) for line in phases.read_text().splitlines()] if phases.exists() else []
        for line in profile.read_text().splitlines() if profile.exists() else []:
            record = json.loads(line)
            if record["scope"] == "session" and record["name"] == "collection":
                measured.collected = record["time"]
        with sqlite3.connect(clone / "trials" / "mitosis.sqlite") as db:
            rows = list(db.execute("SELECT started, ended, job FROM trials"))
        if case.startswith("slurm"):
            jobs = {json.loads(job)["task"]: (s, e, json.loads(job)) for s, e, job in rows}
            measured.rows = [(jobs[i][0], jobs[i][1]) for i in range(TRIALS)]
            job = measured.job = jobs[0][2]["array_job"]
            (array,) = (clone / "trials" / ".slurm").iterdir()
            measured.submitted = (array / "job.sh").stat().st_mtime
            seen = {
                int(t): float(s) for j, t, s in (line.split() for line in starts.read_text().splitlines()) if j == job
            }
            measured.starts = [seen[i] for i in range(TRIALS)]
            measured.ends = [(array / "outcomes" / f"{i}.json").stat().st_mtime for i in range(TRIALS)]
            measured.slurm_starts, measured.slurm_ends = slurm_times(cluster, job)
        else:
            measured.rows = sorted((s, e) for s, e, _ in rows)
        shutil.rmtree(clone, ignore_errors=True)
        return measured

    uptime = [_uptime()]
    for case in CASES:  # warm-up: bytecode, page cache, the cluster's first job
        run(case, 0)
    runs: list[Run] = []
    load: list[float] = []
    names = list(CASES)
    for round_ in range(1, rounds + 1):
        turn = (round_ - 1) % len(names)
        for case in names[turn:] + names[:turn]:
            done = run(case, round_)
            runs.append(done)
            print(f"round {round_}: {case}: {done.seconds:.2f} s", file=sys.stderr, flush=True)
        load.append(os.getloadavg()[0])
    uptime.append(_uptime())
    return Measured(
        command=f"python benchmarks/slurm.py --rounds {rounds}",
        date=time.strftime("%Y-%m-%d"),
        python=sys.version.split()[0],
        slurm=version,
        cores=os.cpu_count() or 1,
        uptime=uptime,
        load=load,
        runs=runs,
    )


def slurm_times(cluster: Any, job: str) -> tuple[list[float], list[float]]:
    """Slurm's StartTime and EndTime of each task of ``job`` (``scontrol show job -o``; local time, whole seconds)."""
    from pytest_mitosis.execution.slurm.cli import parse_scontrol

    found = parse_scontrol(job, cluster.run("scontrol", "show", "job", "-o", job).stdout)
    starts, ends = [], []
    for index in range(TRIALS):
        state = found[index]
        assert state.started and state.ended, state
        starts.append(datetime.fromisoformat(state.started).timestamp())
        ends.append(datetime.fromisoformat(state.ended).timestamp())
    return starts, ends


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


# -- the numbers --------------------------------------------------------------------------------------


def at_once(starts: list[float], ends: list[float]) -> tuple[int, float]:
    """(the most tasks running at one moment, the mean: summed run time over the first start to the last end).

    An end and a start at the same instant do not overlap (Slurm's whole seconds: a task that ended
    in second t and one that started in it are counted one after the other).
    """
    events = sorted([(e, -1) for e in ends] + [(s, 1) for s in starts])
    running = most = 0
    for _, step in events:
        running += step
        most = max(most, running)
    span = max(ends) - min(starts)
    return most, (sum(e - s for s, e in zip(starts, ends)) / span if span > 0 else float(len(starts)))


def med(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float], digits: int = 2) -> str:
    return f"{min(values):.{digits}f}–{max(values):.{digits}f}"


def _phase(run: Run, name: str) -> list[float]:
    return [float(line["phases"].get(name, 0.0)) for line in run.phases]


def report(measured: Measured) -> list[str]:
    by_case: dict[str, list[Run]] = {case: [r for r in measured.runs if r.case == case] for case in CASES}
    rounds = sorted({r.round for r in measured.runs})
    paired = {r.round: {x.case: x for x in measured.runs if x.round == r.round} for r in measured.runs}
    load = ", ".join(f"{x:.1f}" for x in measured.load)
    lines = [
        HEADING,
        "",
        f"Measured by `{measured.command}` on {measured.cores} cores, Python {measured.python}, "
        f"{measured.slurm}, {measured.date}: a single-node cluster on this machine (`tests/slurm_cluster.py`, "
        f"the node declaring 16 CPUs), `benchmarks/run.py`'s 16-trial sine sweep, each run in a fresh clone "
        f"(an empty trials folder and store), the cases interleaved round by round (the order rotated) after "
        f"one warm-up of each. The machine is shared: `uptime` before, `{measured.uptime[0]}`; after, "
        f"`{measured.uptime[-1]}`; load average (1 min) after each round {load}.",
        "",
        "| case | wall median (s) | range (s) | per trial (s) | overhead per trial vs local (fork), "
        "paired median (s) | range (s) | runs |",
        "|---|---|---|---|---|---|---|",
    ]
    for case, runs in by_case.items():
        walls = [r.seconds for r in runs]
        if case == LOCAL:
            extra = "| | "
        else:
            diffs = [(paired[n][case].seconds - paired[n][LOCAL].seconds) / TRIALS for n in rounds]
            extra = f"| {med(diffs):+.2f} | {min(diffs):+.2f} to {max(diffs):+.2f} "
        lines.append(
            f"| {case} | {med(walls):.2f} | {spread(walls)} | {med(walls) / TRIALS:.2f} {extra}| {len(runs)} |"
        )
    spawn = [(paired[n]["slurm"].seconds - paired[n]["local (spawn)"].seconds) / TRIALS for n in rounds]
    spawn2 = [(paired[n]["slurm, throttle=2"].seconds - paired[n]["local (spawn)"].seconds) / TRIALS for n in rounds]
    lines += [
        "",
        f"Against local (spawn), the same one-kernel-per-trial start without Slurm: slurm "
        f"{med(spawn):+.2f} s a trial ({min(spawn):+.2f} to {max(spawn):+.2f}), slurm with throttle=2 "
        f"{med(spawn2):+.2f} s ({min(spawn2):+.2f} to {max(spawn2):+.2f}) (paired medians, range of the rounds).",
        "",
        "How many tasks of the array ran at once (median over the runs, range): by Slurm's own StartTime/EndTime "
        "(whole seconds), and by each task's start in its job script to its outcome file written.",
        "",
        "| case | max, Slurm | mean, Slurm | max, task's own clock | mean, task's own clock |",
        "|---|---|---|---|---|",
    ]
    for case in ("slurm", "slurm, throttle=2"):
        runs = by_case[case]
        slurm = [at_once(r.slurm_starts, r.slurm_ends) for r in runs]
        own = [at_once(r.starts, r.ends) for r in runs]
        lines.append(
            f"| {case} | {med([m for m, _ in slurm]):.0f} ({spread([m for m, _ in slurm], 0)}) "
            f"| {med([a for _, a in slurm]):.1f} ({spread([a for _, a in slurm], 1)}) "
            f"| {med([m for m, _ in own]):.0f} ({spread([m for m, _ in own], 0)}) "
            f"| {med([a for _, a in own]):.1f} ({spread([a for _, a in own], 1)}) |"
        )
    lines += ["", *split(by_case)]
    return lines


def split(by_case: dict[str, list[Run]]) -> list[str]:
    """Where a Slurm session's time goes, next to the local sessions' (medians over the runs)."""
    header = "| where | " + " | ".join(CASES)
    lines = [
        "Where the time goes (seconds; median over the runs, per-task rows the median over every task of every run; "
        "locally the next trial's kernel starts while the previous trial runs, so its start is hidden):",
        "",
        header + " |",
        "|---|" + "---|" * len(CASES),
    ]

    def row(label: str, of: dict[str, str]) -> None:
        lines.append(f"| {label} | " + " | ".join(of.get(case, "") for case in CASES) + " |")

    def each(case: str, values: Any) -> str:
        found = [v for r in by_case[case] for v in values(r)]
        return f"{med(found):.2f}" if found else ""

    def per_run(case: str, value: Any) -> str:
        return f"{med([value(r) for r in by_case[case]]):.2f}"

    slurm = ("slurm", "slurm, throttle=2")
    local = ("local (fork)", "local (spawn)")
    row("whole session", {c: per_run(c, lambda r: r.seconds) for c in CASES})
    row(
        "pytest's start to the first trial's record taken (local) / to sbatch (slurm: records, notebooks, job.sh)",
        {
            **{c: per_run(c, lambda r: min(s for s, _ in r.rows) - r.t0) for c in local},
            **{c: per_run(c, lambda r: r.submitted - r.t0) for c in slurm},
        },
    )
    row(
        "— of which pytest's start and collection (as in every case)",
        {c: per_run(c, lambda r: r.collected - r.t0) for c in CASES},
    )
    row(
        "sbatch to the first task's start (the scheduler)",
        {c: per_run(c, lambda r: min(r.starts) - r.submitted) for c in slurm},
    )
    row(
        "a throttled slot refilled: a task's outcome to the next task's start in it",
        {c: each(c, refills) for c in slurm},
    )
    row(
        "first task's start to the last one's outcome (slurm) / first record to last (local)",
        {
            **{c: per_run(c, lambda r: max(e for _, e in r.rows) - min(s for s, _ in r.rows)) for c in local},
            **{c: per_run(c, lambda r: max(r.ends) - min(r.starts)) for c in slurm},
        },
    )
    row(
        "a task: its start to its outcome (slurm) / a trial: its record's start to end (local)",
        {
            **{c: each(c, lambda r: [e - s for s, e in r.rows]) for c in local},
            **{c: each(c, lambda r: [e - s for s, e in zip(r.starts, r.ends)]) for c in slurm},
        },
    )
    row(
        "— of which the trial (`run_trial`, MITOSIS_PHASES total)",
        {c: each(c, lambda r: [p["total"] for p in r.phases]) for c in CASES},
    )
    row("— of which the kernel's start", {c: each(c, lambda r: _phase(r, "kernel start")) for c in CASES})
    row("— of which the step", {c: each(c, lambda r: _phase(r, "step")) for c in CASES})
    row(
        "— the job before and after the trial (interpreter, imports, task files: the two medians' difference)",
        {
            c: f"{float(each(c, lambda r: [e - s for s, e in zip(r.starts, r.ends)])) - float(each(c, lambda r: [p['total'] for p in r.phases])):.2f}"
            for c in slurm
        },
    )
    row(
        "a task's outcome to its record (the 1 s poll, two polls in a row)",
        {c: each(c, lambda r: [row_[1] - end for row_, end in zip(r.rows, r.ends)]) for c in slurm},
    )
    row(
        "— Slurm's EndTime to the record (EndTime is cut to whole seconds: the true gap is ~0.5 s less)",
        {c: each(c, lambda r: [row_[1] - end for row_, end in zip(r.rows, r.slurm_ends)]) for c in slurm},
    )
    row(
        "the last outcome (slurm) / last record (local) to the session's end",
        {
            **{c: per_run(c, lambda r: r.t1 - max(e for _, e in r.rows)) for c in local},
            **{c: per_run(c, lambda r: r.t1 - max(r.ends)) for c in slurm},
        },
    )
    return lines


def refills(run: Run) -> list[float]:
    """Each task that started after another ended: seconds from the latest outcome before it to its start.

    Unthrottled, every task starts at once (none); with ``%N`` the next task waits for a slot:
    this is the time a slot stays empty (the job's exit, Slurm's end of the job, its next scheduling).
    """
    ends = sorted(run.ends)
    gaps = []
    for start in sorted(run.starts):
        before = [end for end in ends if end <= start]
        if before:
            gaps.append(start - before[-1])
    return gaps


#: the line after which the section's hand-written reading of the numbers starts (kept by ``--out``)
KEPT = "<!-- benchmarks/slurm.py writes the section above this line; what follows is kept -->"


def write_section(out: Path, section: list[str]) -> None:
    """Put ``section`` in ``out`` in place of its previous version (at the end if it has none).

    What the previous version had from the ``KEPT`` line on (the reading of the numbers, written
    by hand) stays, after the new tables.
    """
    text = out.read_text(encoding="utf-8") if out.exists() else "# Benchmarks\n"
    new = "\n".join(section).rstrip() + "\n"
    start = text.find("\n" + HEADING + "\n")
    if start < 0:
        out.write_text(text.rstrip() + "\n\n" + new + "\n" + KEPT + "\n")
        return
    end = text.find("\n## ", start + 1)
    old = text[start + 1 : end if end >= 0 else len(text)]
    kept = old[old.find(KEPT) :] if KEPT in old else KEPT + "\n"
    out.write_text(text[: start + 1] + new + "\n" + kept.rstrip("\n") + "\n" + (text[end:] if end >= 0 else ""))


if __name__ == "__main__":
    main()
