"""``benchmarks/slurm.py``'s own arithmetic: how many tasks ran at once, a throttled slot's refill, the kept text.

The benchmark itself needs root and a Slurm cluster and takes minutes; what it computes from the
clocks it reads is checked here on hand-made numbers, so a wrong count never reaches docs/benchmarks.md.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "slurm.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mitosis_bench_slurm", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_tasks_at_once_max_and_mean(bench: ModuleType) -> None:
    # two slots: 0-2 and 0-2, then 2-4 and 2.5-4 (an end and a start at the same instant do not overlap)
    starts, ends = [0.0, 0.0, 2.0, 2.5], [2.0, 2.0, 4.0, 4.0]
    most, mean = bench.at_once(starts, ends)
    assert most == 2
    assert mean == pytest.approx((2 + 2 + 2 + 1.5) / 4)
    assert bench.at_once([0.0, 1.0, 1.5], [3.0, 2.0, 4.0]) == (3, pytest.approx((3 + 1 + 2.5) / 4))


def test_a_throttled_slot_refill_is_the_wait_after_the_latest_outcome(bench: ModuleType) -> None:
    run = bench.Run("slurm, throttle=2", 1, 0.0, 0.0, 0.0, starts=[0.0, 0.1, 2.5, 3.0], ends=[2.0, 2.2, 4.0, 4.5])
    assert bench.refills(run) == [pytest.approx(0.3), pytest.approx(0.8)]
    unthrottled = bench.Run("slurm", 1, 0.0, 0.0, 0.0, starts=[0.0, 0.0], ends=[1.0, 1.0])
    assert bench.refills(unthrottled) == []


def test_out_replaces_the_tables_and_keeps_the_reading(bench: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    out.write_text("# Benchmarks\n\n## Before\n\nbefore\n")
    bench.write_section(out, [bench.HEADING, "", "tables 1"])
    text = out.read_text()
    assert text == f"# Benchmarks\n\n## Before\n\nbefore\n\n{bench.HEADING}\n\ntables 1\n\n{bench.KEPT}\n"
    out.write_text(text + "what it means\n\n## After\n\nafter\n")
    bench.write_section(out, [bench.HEADING, "", "tables 2"])
    assert out.read_text() == (
        f"# Benchmarks\n\n## Before\n\nbefore\n\n{bench.HEADING}\n\ntables 2\n\n{bench.KEPT}\nwhat it means\n"
        "\n## After\n\nafter\n"
    )
