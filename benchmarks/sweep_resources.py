"""Descriptors, threads and memory of the pytest process over a long sweep in one session.

    python benchmarks/sweep_resources.py [--trials 1000] [--out docs/benchmarks.md]

Runs one session of ``--trials`` cheap trials (one lookup param with that many variants) and
records, after each trial, the pytest process's open file descriptors, threads and RSS (a
conftest.py in the investigation reads ``/proc/self``). The table gives them after 1, 10, 100,
... trials, and replaces the section "A long sweep" of ``--out``. Flat numbers mean no leak:
before the fix each trial left about 12 descriptors and one thread behind, so a sweep under the
common ``ulimit -n 1024`` died at about trial 83.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from run import GIT, REPO  # the benchmark suite's own constants (this folder is on sys.path)

SECTION = "## A long sweep: descriptors, threads and memory"

CONFTEST = """
import json
import os
import threading

PAGE = os.sysconf("SC_PAGE_SIZE")


def pytest_runtest_logreport(report):
    if report.when != "call":
        return
    with open("/proc/self/statm") as stream:
        rss = int(stream.read().split()[1]) * PAGE
    record = {"outcome": report.outcome, "fds": len(os.listdir("/proc/self/fd")),
              "threads": threading.active_count(), "rss": rss}
    with open(os.environ["MITOSIS_BENCH_LOG"], "a") as stream:
        stream.write(json.dumps(record) + "\\n")
"""


def run(trials: int) -> tuple[list[dict[str, float]], float, str]:
    with tempfile.TemporaryDirectory(prefix="mitosis-bench-") as tmp:
        root = Path(tmp) / "study"
        root.mkdir()
        (root / "pyproject.toml").write_text("[tool.mitosis.steps]\ncheap = ['steps:cheap', 'steps:lookup']\n")
        (root / "steps.py").write_text(
            textwrap.dedent(f"""
            lookup = {{"i": {{f"v{{i:04d}}": i for i in range({trials})}}}}


            def cheap(i):
                return {{"main": i}}
        """)
        )
        (root / "conftest.py").write_text(CONFTEST)
        (root / ".gitignore").write_text("__pycache__/\n")
        env = {**os.environ, **GIT, "MITOSIS_BENCH_LOG": str(Path(tmp) / "log.jsonl")}
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
        records = [json.loads(line) for line in (Path(tmp) / "log.jsonl").read_text().splitlines()]
    return records, seconds, tail


def table(records: list[dict[str, float]], seconds: float, tail: str) -> str:
    marks = [n for n in (1, 10, 100, 1000, 10000) if n <= len(records)]
    lines = [
        SECTION,
        "",
        f"One session of {len(records)} cheap trials (`benchmarks/sweep_resources.py`, {seconds:.0f} s, "
        f"pytest said: `{tail}`). The pytest process after the Nth trial:",
        "",
        "| after trial | open descriptors | threads | RSS (MB) |",
        "|---|---|---|---|",
    ]
    for n in marks:
        r = records[n - 1]
        lines.append(f"| {n} | {r['fds']} | {r['threads']} | {r['rss'] / 2**20:.0f} |")
    failed = sum(1 for r in records if r["outcome"] != "passed")
    lines += [
        "",
        f"Trials that did not pass: {failed}. Before the fix (jupyter_client's channels were never closed) "
        "each trial left about 12 descriptors and one thread open: under `ulimit -n 1024` a sweep failed from "
        "about trial 83 with `Too many open files`. `tests/test_sweep_survives.py` runs 60 trials under "
        "`ulimit -n 256` and asserts the count stays flat.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks.md")
    args = parser.parse_args()
    records, seconds, tail = run(args.trials)
    text = table(records, seconds, tail)
    print(text)
    doc = args.out.read_text(encoding="utf-8") if args.out.exists() else "# Benchmarks\n"
    if SECTION in doc:
        head, rest = doc.split(SECTION, 1)
        following = rest.find("\n## ")
        doc = head + text + (rest[following + 1 :] if following >= 0 else "")
    else:
        doc = doc.rstrip("\n") + "\n\n" + text
    args.out.write_text(doc, encoding="utf-8")


if __name__ == "__main__":
    main()
