"""What the status line and the heartbeats cost a sweep (issue 23), measured side by side with them off.

    python benchmarks/long_sweep.py [--repeat 5] [--long-repeat 3] [--trial-seconds 12] [--commit REV]
        [--raw FILE] [--out docs/benchmarks.md]
    python benchmarks/long_sweep.py --from-raw FILE [--out docs/benchmarks.md]

Issue 23 added, to every running trial, a tick about every second (the status line on a terminal,
the log lines off it) and a heartbeat in the store every ``mitosis_heartbeat_every`` seconds (5);
its target: they cost the 16-trial sweep of ``benchmarks/run.py`` less than 2%, and the heartbeat
costs a running trial less than 1% of its time. Two investigations, each run in these settings:

- **all off**: output a pipe, ``-q`` (no log lines), ``-o mitosis_heartbeat_every=0``;
- **heartbeats only**: output a pipe, ``-q``, heartbeats every 5 s;
- **status line + heartbeats**: output a pseudo-terminal (``pty``, 160 columns), ``-q``, heartbeats;
- **log lines + heartbeats**: output a pipe, default verbosity (a line per trial start and end);
- **terminal, all off** (the 16-trial sweep only): the pseudo-terminal with ``NO_COLOR=1`` (pytest's
  writer has no markup, so no status line is drawn) and no heartbeats: what the terminal itself costs.

The sine trials of the 16-trial sweep last a fraction of a second: the first tick comes after a
second, so that sweep mostly shows the per-trial work (start and end lines, the session's beat).
The second investigation has 4 trials of ``--trial-seconds`` (12) whose step sleeps in small steps
and prints a line every 0.5 s: ticks, draws and heartbeats really happen there. Its wall time is
mostly sleep, which hides any cost, so the CPU time of the pytest process (``os.times()`` at its
exit, every thread: the ticks, the status line and the heartbeats all run there) is reported as
well. A probe plugin (``-p``, written into the temporary folder) counts the ticks
and heartbeats each run made; the pseudo-terminal's output counts the status line's draws.
Finally one heartbeat write is timed alone, in this process, on the long investigation's store.

Cases are interleaved round-robin (a busy moment of the shared machine hurts every setting alike),
the order rotated each round, after one warm-up of the 16-trial sweep; every run starts from an
empty trials folder, so that every run does the same work (a store and a folder that grow run by
run could make later runs slower, which a fixed order would charge to the settings measured last).
Medians with the range, ratios computed within this run (of the medians, and the median of each
round's paired ratio). The machine's load is sampled around every round. ``--commit`` measures
pytest_mitosis as of a commit rather than the working tree, which others may be editing meanwhile.
Writes the section "Long sweeps: the status line and heartbeats (issue 23)" of ``--out`` (other
sections are kept as they are; ``benchmarks/run.py`` keeps this one); ``--raw`` keeps every run's
numbers, from which ``--from-raw`` writes the section again without measuring.
"""

from __future__ import annotations

import argparse
import fcntl
import importlib.util
import json
import os
import pty
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
HEADING = "## Long sweeps: the status line and heartbeats (issue 23)"
COLUMNS = 160
PROBE = "mitosis_bench_probe"


def _load_run() -> ModuleType:
    """benchmarks/run.py as a module: its ``prepare()`` builds the 16-trial sweep this script measures."""
    spec = importlib.util.spec_from_file_location("mitosis_bench_run", HERE / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


#: loaded into the measured pytest with ``-p``: what the process used and did, written at its exit
PROBE_PLUGIN = '''
"""benchmarks/long_sweep.py's probe: CPU time, ticks and heartbeats of this pytest process, at its exit."""
import atexit
import json
import os

import pytest_mitosis
from pytest_mitosis.pytest_layer.heartbeat import Heartbeat
from pytest_mitosis.store.sqlite import SQLiteStore

_PID = os.getpid()
_COUNTS = {"ticks": 0, "beats": 0}


def _counted(function, name):
    def counted(*args, **kwargs):
        _COUNTS[name] += 1
        return function(*args, **kwargs)

    return counted


Heartbeat.on_progress = _counted(Heartbeat.on_progress, "ticks")
SQLiteStore.beat = _counted(SQLiteStore.beat, "beats")


def _write():
    if os.getpid() != _PID:  # a process forked from pytest's exits: not ours to report
        return
    used = os.times()
    with open(os.environ["MITOSIS_BENCH_PROBE"], "w") as stream:
        json.dump({"cpu": used.user + used.system, "code": pytest_mitosis.__file__, **_COUNTS}, stream)


atexit.register(_write)
'''

#: a step that runs ``seconds`` and prints a line every half second (4 variants)
LONG_STEP = '''
"""A long trial: sleeps in small steps for ``seconds`` and prints a line every half second."""
import time

lookup_dict = {"seed": {f"s{i}": i for i in range(4)}}


def run(seed, seconds):
    started = printed = time.monotonic()
    lines = 0
    while (now := time.monotonic()) - started < seconds:
        if now - printed >= 0.5:
            lines += 1
            printed = now
            print(f"trial {seed}: line {lines} after {now - started:.1f} s", flush=True)
        time.sleep(0.05)
    return {"main": float(lines)}
'''


@dataclass(frozen=True)
class Setting:
    name: str
    args: tuple[str, ...]
    terminal: bool = False
    env: tuple[tuple[str, str], ...] = ()


OFF = ("-o", "mitosis_heartbeat_every=0")
SETTINGS = {
    "a": Setting("all off", ("-q", *OFF)),
    "b": Setting("heartbeats only", ("-q",)),
    "c": Setting("status line + heartbeats", ("-q",), terminal=True),
    "d": Setting("log lines + heartbeats", ()),
    "e": Setting("terminal, all off", ("-q", *OFF), terminal=True, env=(("NO_COLOR", "1"),)),
}


@dataclass
class Run:
    wall: float  # seconds
    cpu: float  # CPU seconds (user + system) of the pytest process, every thread
    ticks: int  # a running trial's state handed to the session (about every second)
    beats: int  # heartbeats written to the store (trials' and the session's)
    draws: int  # status lines drawn (the terminal's save-cursor sequences)
    busy: float  # share of the machine's cores busy during the run (ours and everybody else's)
    code: str  # where the pytest process imported pytest_mitosis from


def _busy_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot, from /proc/stat."""
    with open("/proc/stat") as stream:
        values = [int(v) for v in stream.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def others(seconds: float = 3.0) -> float:
    """Share of the machine's cores busy while nothing of this benchmark runs: the other work on it."""
    busy0, total0 = _busy_jiffies()
    time.sleep(seconds)
    busy1, total1 = _busy_jiffies()
    return (busy1 - busy0) / max(1, total1 - total0)


def _read_all(fd: int, into: bytearray) -> None:
    """Everything written to ``fd`` until its writers are gone (a pipe's EOF, a pty's EIO)."""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            return
        if not chunk:
            return
        into += chunk


def measure(argv: list[str], cwd: Path, env: dict[str, str], terminal: bool, probe: Path) -> Run:
    """Run ``argv`` with its output on a pipe or a pseudo-terminal (read all along, as a terminal would)."""
    out = bytearray()
    if terminal:
        reading, writing = pty.openpty()
        fcntl.ioctl(writing, termios.TIOCSWINSZ, struct.pack("HHHH", 50, COLUMNS, 0, 0))
    else:
        reading, writing = os.pipe()
    probe.unlink(missing_ok=True)
    busy0, total0 = _busy_jiffies()
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=writing, stderr=writing, start_new_session=True
    )
    os.close(writing)
    reader = threading.Thread(target=_read_all, args=(reading, out), daemon=True)
    reader.start()
    try:
        proc.wait()
    except BaseException:  # Ctrl-C: the session started its own process group, stop it like Ctrl-C would
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait()
        raise
    wall = time.perf_counter() - started
    busy1, total1 = _busy_jiffies()
    reader.join(timeout=30)
    os.close(reading)
    text = out.decode(errors="replace")
    if proc.returncode != 0 or not probe.exists():
        raise SystemExit(f"benchmark command failed ({proc.returncode}): {' '.join(argv)}\n{text[-3000:]}")
    seen = json.loads(probe.read_text())
    return Run(
        wall=wall,
        cpu=float(seen["cpu"]),
        ticks=int(seen["ticks"]),
        beats=int(seen["beats"]),
        draws=text.count("\x1b7"),
        busy=(busy1 - busy0) / max(1, total1 - total0),
        code=str(seen["code"]),
    )


def measured_code(base: Path, commit: str | None) -> tuple[Path | None, str]:
    """Where the measured pytest_mitosis comes from (``None``: the installed one) and how the report names it."""
    git = ["git", "-C", str(REPO)]
    if commit is None:
        head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--", "pytest_mitosis"], capture_output=True, text=True
        ).stdout.strip()
        return None, f"the working tree at {head}" + (" with uncommitted changes to pytest_mitosis" if dirty else "")
    full = subprocess.run([*git, "rev-parse", "--short", commit], capture_output=True, text=True, check=True)
    code = base / "code"
    code.mkdir()
    archive = subprocess.run([*git, "archive", commit, "pytest_mitosis"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(code)], input=archive, check=True)
    return code, f"pytest_mitosis as of commit {full.stdout.strip()}"


def long_investigation(base: Path, seconds: float, git_repo: Callable[[Path], None]) -> Path:
    """4 trials of ``seconds`` each, a line printed every half second, in a git repository of its own."""
    folder = base / "long"
    folder.mkdir()
    (folder / "long_experiment.py").write_text(LONG_STEP.lstrip())
    (folder / "pyproject.toml").write_text(
        '[tool.mitosis]\ntrials-folder = "trials"\n\n'
        '[tool.mitosis.steps]\nwait = ["long_experiment:run", "long_experiment:lookup_dict"]\n\n'
        f'[tool.mitosis.experiments]\nlong = {{ steps = ["wait"], eval = {{ "wait.seconds" = "{seconds:g}" }} }}\n\n'
        "[tool.pytest.ini_options]\n"
    )
    (folder / ".gitignore").write_text("trials/\n__pycache__/\n")
    git_repo(folder)
    return folder


def beat_cost(trials: Path, code: Path | None, count: int = 1000) -> float:
    """Seconds one trial heartbeat takes to write on ``trials``' store (the median of 10 batches' means), with the
    measured pytest_mitosis (``code``: the archive of ``--commit``; ``None``: the installed one)."""
    if code is not None:
        sys.path.insert(0, str(code))
    from pytest_mitosis.store import SQLiteStore

    store = SQLiteStore(trials)
    state = {
        "phase": "step",
        "step": "wait",
        "line": "trial 3: line 17 after 8.5 s",
        "elapsed": 8.5,
        "name": "long[s3]",
        "nodeid": "pyproject.toml::long[s3]",
    }
    batch = max(1, count // 10)
    times = []
    for _ in range(10):
        started = time.perf_counter()
        for _ in range(batch):
            store.beat("trial", "benchbeat", "benchsession", state)
        times.append((time.perf_counter() - started) / batch)
    store.close()
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs of each setting of the 16-trial sweep")
    parser.add_argument("--long-repeat", type=int, default=3, help="runs of each setting of the long investigation")
    parser.add_argument("--trial-seconds", type=float, default=12.0, help="how long each long trial runs")
    parser.add_argument(
        "--commit",
        help="measure pytest_mitosis as of this commit (git archive into the temporary folder, first on "
        "PYTHONPATH) rather than the working tree's, which may change while the benchmark runs",
    )
    parser.add_argument("--raw", type=Path, help="also write every run's numbers to this JSON file")
    parser.add_argument("--from-raw", type=Path, help="measure nothing: write the section from a --raw file")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks.md")
    args = parser.parse_args()
    if args.from_raw is not None:
        measured = Measured.load(args.from_raw)
    else:
        measured = measure_all(args)
        if args.raw is not None:
            measured.save(args.raw)
    section = report(measured)
    write_section(args.out, section)
    print("\n".join(section))


SINE = "16-trial sine sweep"
LONG = "4 long trials"


@dataclass
class Machine:
    """How busy the shared machine was: ``uptime``, the 1-minute load after each round, others' share."""

    uptime: list[str]
    load: list[float]
    others: list[float]  # share of the cores busy before and after the runs, nothing of ours running


@dataclass
class Measured:
    """Everything one run of this benchmark found, as the report needs it (and ``--raw`` keeps it)."""

    command: str  # how it was run
    code: str  # which pytest_mitosis was measured
    date: str
    python: str
    cores: int
    trial_seconds: float  # of one long trial
    machine: Machine
    beat: float  # seconds one heartbeat write takes, timed alone
    runs: dict[tuple[str, str], list[Run]]  # (investigation, setting letter): its runs, round by round

    def save(self, path: Path) -> None:
        data = {k: v for k, v in asdict(self).items() if k != "runs"}
        data["runs"] = [
            {"investigation": t, "setting": s, "runs": [asdict(r) for r in found]}
            for (t, s), found in self.runs.items()
        ]
        path.write_text(json.dumps(data, indent=1) + "\n")

    @classmethod
    def load(cls, path: Path) -> Measured:
        data = json.loads(path.read_text())
        runs = {(e["investigation"], e["setting"]): [Run(**r) for r in e["runs"]] for e in data.pop("runs")}
        return cls(**{**data, "machine": Machine(**data["machine"]), "runs": runs})


def measure_all(args: argparse.Namespace) -> Measured:
    """Both investigations in every setting, interleaved round by round (see the module's docstring)."""
    run_py = _load_run()
    base = Path(tempfile.mkdtemp(prefix="mitosis-long-sweep-"))
    probe_dir = base / "probe"
    probe_dir.mkdir()
    (probe_dir / f"{PROBE}.py").write_text(PROBE_PLUGIN.lstrip())
    probe = base / "probe.json"
    sweep = run_py.prepare(base)["sweep"]
    long = long_investigation(base, args.trial_seconds, run_py.git_repo)
    code, named = measured_code(base, args.commit)
    path = os.pathsep.join(str(p) for p in (probe_dir, code) if p is not None)
    env = {**os.environ, **run_py.GIT, "PYTHONPATH": path, "MITOSIS_BENCH_PROBE": str(probe)}
    for name in ("PYTEST_ADDOPTS", "PY_COLORS", "NO_COLOR", "FORCE_COLOR"):
        env.pop(name, None)
    env.update(TERM="xterm-256color", COLUMNS=str(COLUMNS))
    pytest = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", PROBE, "--mitosis"]
    #: investigation: (its folder, runs of each setting, the settings' letters)
    investigations = {SINE: (sweep, args.repeat, "abcde"), LONG: (long, args.long_repeat, "abcd")}

    def run(folder: Path, setting: Setting) -> Run:
        # every run starts from an empty trials folder, so every run does the same work
        shutil.rmtree(folder / "trials", ignore_errors=True)
        return measure([*pytest, *setting.args], folder, {**env, **dict(setting.env)}, setting.terminal, probe)

    machine = Machine(uptime=[_uptime()], load=[], others=[others()])
    warm = run(sweep, SETTINGS["a"])  # warm-up: bytecode, page cache
    if code is not None and not Path(warm.code).is_relative_to(code):
        raise SystemExit(f"pytest imported pytest_mitosis from {warm.code}, not from the archive of {args.commit}")
    runs: dict[tuple[str, str], list[Run]] = {
        (t, s): [] for t, (_, _, letters) in investigations.items() for s in letters
    }
    for round_ in range(max(n for _, n, _ in investigations.values())):
        for title, (folder, n, letters) in investigations.items():
            if round_ >= n:
                continue
            turn = round_ % len(letters)  # each setting in each place of the order in turn
            for letter in letters[turn:] + letters[:turn]:
                done = run(folder, SETTINGS[letter])
                runs[(title, letter)].append(done)
                print(
                    f"round {round_ + 1}: {title}, {letter} ({SETTINGS[letter].name}): {done.wall:.2f} s, "
                    f"CPU {done.cpu:.2f} s, {done.ticks} ticks, {done.beats} beats, {done.draws} draws, "
                    f"machine {100 * done.busy:.0f}% busy",
                    file=sys.stderr,
                    flush=True,
                )
        machine.load.append(os.getloadavg()[0])
    machine.others.append(others())
    machine.uptime.append(_uptime())
    beat = beat_cost(long / "trials", code)
    shutil.rmtree(base, ignore_errors=True)
    command = f"python benchmarks/long_sweep.py --repeat {args.repeat} --long-repeat {args.long_repeat} "
    command += f"--trial-seconds {args.trial_seconds:g}" + (f" --commit {args.commit}" if args.commit else "")
    return Measured(
        command=command,
        code=named,
        date=time.strftime("%Y-%m-%d"),
        python=sys.version.split()[0],
        cores=os.cpu_count() or 1,
        trial_seconds=args.trial_seconds,
        machine=machine,
        beat=beat,
        runs=runs,
    )


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def med(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float], digits: int = 2) -> str:
    return f"{min(values):.{digits}f}–{max(values):.{digits}f}"


def possessive(title: str) -> str:
    return title + ("'" if title.endswith("s") else "'s")


def report(measured: Measured) -> list[str]:
    """The section's Markdown lines."""
    runs, machine = measured.runs, measured.machine
    titles = list(dict.fromkeys(t for t, _ in runs))
    letters = {t: "".join(s for u, s in runs if u == t) for t in titles}
    long_seconds = 4 * measured.trial_seconds
    lines = [
        HEADING,
        "",
        f"Measured by `{measured.command}` ({measured.code}) on {measured.cores} cores, Python {measured.python}, "
        f"{measured.date}: each setting of each investigation run in turn, round after round (the order rotated "
        "each round), each run from an empty trials folder, after one warm-up; medians with the range. The "
        f"machine is shared: `uptime` before, `{machine.uptime[0]}`; after, `{machine.uptime[-1]}`; load average "
        f"(1 min) after each round {', '.join(f'{one:.1f}' for one in machine.load)}. With nothing of this "
        f"benchmark running, {100 * machine.others[0]:.0f}% of the cores were busy just before the runs and "
        f"{100 * machine.others[-1]:.0f}% just after. During each run /proc/stat counted the cores' busy share, "
        "ours and other work's: "
        + "; ".join(
            f"the {possessive(title)} runs {100 * min(b):.0f}–{100 * max(b):.0f}% (median {100 * med(b):.0f}%)"
            for title in titles
            for b in [[r.busy for s in letters[title] for r in runs[(title, s)]]]
        )
        + ": the least of each is about the benchmark's own share, anything above it other work on the cores.",
        "",
        "Settings: **a** all off (output a pipe, `-q`, `-o mitosis_heartbeat_every=0`); **b** heartbeats "
        "only (a pipe, `-q`, a heartbeat every 5 s); **c** status line + heartbeats (a pseudo-terminal, "
        f"{COLUMNS} columns, `-q`); **d** log lines + heartbeats (a pipe, default verbosity: a line per "
        "trial start and end); **e** (16-trial sweep only) terminal, all off (the pseudo-terminal with "
        "`NO_COLOR=1`: no status line, and no colours either; no heartbeats). The 16-trial sweep is "
        f"benchmarks/run.py's (sine trials of a fraction of a second); the {LONG} run {measured.trial_seconds:g} s "
        "each, their step sleeping in steps of 50 ms and printing a line every 0.5 s. CPU: user + system time of "
        "the pytest process (all its threads, at its exit), where the ticks, the status line and the "
        "heartbeats run. Ticks: a running trial's state handed to the session (about every second, in "
        "every setting); beats: heartbeats written to the store (a trial's at its first tick and every "
        "5 s, the session's at most every 2 s when progress is shown); draws: status lines drawn.",
        "",
        "| investigation | setting | wall median (s) | wall range (s) | CPU, pytest (s) | CPU range (s) "
        "| ticks | beats | draws | runs |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (title, letter), found in runs.items():
        walls, cpus = [r.wall for r in found], [r.cpu for r in found]
        lines.append(
            f"| {title} | {letter}: {SETTINGS[letter].name} | {med(walls):.2f} | {spread(walls)} | {med(cpus):.2f} | "
            f"{spread(cpus)} | {med([r.ticks for r in found]):.0f} | {med([r.beats for r in found]):.0f} | "
            f"{med([r.draws for r in found]):.0f} | {len(found)} |"
        )
    lines += [
        "",
        "Ratios within this run: of the medians, and the median (range) of each round's paired ratio (the "
        "two runs of a round ran within minutes of each other).",
        "",
        "| investigation | ratio | wall: of medians | wall: paired | CPU, pytest: of medians | CPU, pytest: paired "
        "| target |",
        "|---|---|---|---|---|---|---|",
    ]
    for title in titles:
        pairs = [(x, "a") for x in letters[title][1:]] + [("c", "e")] * ("e" in letters[title])
        for top, bottom in pairs:
            wall, cpu = ratios(runs[(title, top)], runs[(title, bottom)])
            target = "< 1.02" if title == SINE and top in "bcd" else ""
            lines.append(f"| {title} | {top}/{bottom} | {wall} | {cpu} | {target} |")
    added = {
        letter: [(o.cpu - b.cpu) / long_seconds for o, b in zip(runs[(LONG, letter)], runs[(LONG, "a")])]
        for letter in "bcd"
    }
    beats = med([r.beats for r in runs[(LONG, "b")]])
    lines += [
        "",
        f"Per second of a running trial: the {possessive(LONG)} added CPU time of the pytest process (paired "
        f"differences to **a**, round by round) over the trials' {long_seconds:g} s a run; the heartbeat's target "
        "is less than 1% of a running trial's time.",
        "",
        "| what | CPU per trial-second: median | range of the rounds | target |",
        "|---|---|---|---|",
        *(
            f"| {what} ({letter} − a) | {100 * med(added[letter]):+.2f}% | "
            f"{100 * min(added[letter]):+.2f}% to {100 * max(added[letter]):+.2f}% | {target} |"
            for letter, what, target in (
                ("b", "heartbeats", "< 1%"),
                ("c", "status line + heartbeats", ""),
                ("d", "log lines + heartbeats", ""),
            )
        ),
        f"| one heartbeat write alone, every 5 s ({measured.beat * 1000:.3f} ms: 1,000 writes timed in-process "
        f"on the long investigation's SQLite store) | {100 * measured.beat / 5:.4f}% |  | < 1% |",
        "",
        f"In **b** the pytest process wrote {beats:.0f} heartbeats a run ({beats / long_seconds:.2f} a trial-second).",
        "",
        *verdict(measured, added),
    ]
    return lines


def verdict(measured: Measured, added: dict[str, list[float]]) -> list[str]:
    """What this run says against the targets, in words (the numbers are the tables')."""
    runs, beat = measured.runs, measured.beat
    a = runs[(SINE, "a")]
    cpu = {x: med([o.cpu / b.cpu for o, b in zip(runs[(SINE, x)], a)]) for x in "bcd"}
    worst = max(cpu, key=lambda x: cpu[x])
    walls, cpus = [r.wall for r in a], [r.cpu for r in a]
    noise, cpu_noise = max(walls) / min(walls) - 1, max(cpus) / min(cpus) - 1
    busy = [r.busy for (t, _), found in runs.items() if t == SINE for r in found]
    ticks = med([r.ticks for (t, _), found in runs.items() if t == SINE for r in found])
    session_beats = med([r.beats for r in runs[(SINE, "d")]])
    text = [
        "**Against the targets.** The 16-trial sweep: the pytest process's CPU time with heartbeats, the "
        f"status line or the log lines is {', '.join(f'{cpu[x]:.3f}' for x in 'bcd')} × its time with them off "
        "(b, c, d: paired medians), "
    ]
    if cpu[worst] < 1.02:
        text.append("all under the target of 1.02. ")
    else:
        text.append(
            f"{worst}/a {100 * (cpu[worst] - 1):+.1f}%: over the target of 2%, "
            + (
                f"but within the spread of the CPU time of a's own runs ({100 * cpu_noise:.0f}%). "
                if cpu[worst] - 1 <= cpu_noise
                else "beyond the spread of a's own runs. "
            )
        )
    if ticks == 0:
        text.append(
            "Its trials end before their first tick (a second), so no status line is drawn and no trial "
            f"heartbeat written: what c and d add is {session_beats:.0f} session heartbeats a run (at trial starts "
            f"and ends, {1000 * session_beats * beat:.2f} ms at the write's timed cost) and, in d, two log lines "
            "a trial; c's terminal itself (pytest's colours, a pty) is e's. "
        )
    if noise > 0.02:
        text.append(
            f"Wall time does not resolve a 2% difference in this run: a's own runs took {spread(walls)} s, "
            f"{100 * noise:.0f}% apart"
            + (", as other work on the machine came and went" if max(busy) - min(busy) > 0.1 else "")
            + "; the CPU ratios are the measure. "
        )
    else:
        text.append(f"Wall time agrees: a's runs were within {100 * noise:.1f}% of each other. ")
    beats = med([r.beats for r in runs[(LONG, "c")]])
    largest = max(max(v) for v in added.values())
    long_cpu, trials = [r.cpu for r in runs[(LONG, "a")]], 4 * measured.trial_seconds
    text.append(
        "The long trials, where ticks, draws and heartbeats happen: the heartbeats change the pytest process's "
        f"CPU time by {100 * med(added['b']):+.2f}% of a running trial's time (rounds {100 * min(added['b']):+.2f}% "
        f"to {100 * max(added['b']):+.2f}%; target < 1%), status line and heartbeats together by "
        f"{100 * med(added['c']):+.2f}%. The writes themselves cost {1000 * beats * beat:.1f} ms a run in c "
        f"({beats:.0f} writes at {1000 * beat:.3f} ms, {100 * beats * beat / trials:.3f}% "
        "of the trials' time): differences much larger than that are the noise of CPU accounting on a shared "
        f"machine (a's own runs spread over {spread(long_cpu)} s, {100 * (max(long_cpu) - min(long_cpu)) / trials:.2f}% "
        f"of the trials' time), and the largest of any round ({100 * largest:+.2f}%) bounds the cost from above. "
        "The tick itself (a "
        "coroutine in the trial's loop, every second, handing its state to the session) runs in every setting, "
        "a included: it cannot be turned off, so it is not in these differences."
    )
    return ["".join(text)]


def ratios(top: list[Run], bottom: list[Run]) -> tuple[str, str]:
    """Wall and CPU ratios of ``top`` to ``bottom``: of the medians, and paired round by round."""
    cells = []
    for of in ("wall", "cpu"):
        tops, bottoms = [getattr(r, of) for r in top], [getattr(r, of) for r in bottom]
        paired = [t / b for t, b in zip(tops, bottoms)]
        cells.append(f"{med(tops) / med(bottoms):.3f} | {med(paired):.3f} ({spread(paired, 3)})")
    return cells[0], cells[1]


def write_section(out: Path, section: list[str]) -> None:
    """Put ``section`` in ``out`` in place of its previous version (at the end if it has none)."""
    text = out.read_text(encoding="utf-8") if out.exists() else "# Benchmarks\n"
    new = "\n".join(section).rstrip() + "\n"
    start = text.find("\n" + HEADING + "\n")
    if start < 0:
        out.write_text(text.rstrip() + "\n\n" + new)
        return
    end = text.find("\n## ", start + 1)
    out.write_text(text[: start + 1] + new + (text[end:] if end >= 0 else ""))


if __name__ == "__main__":
    main()
