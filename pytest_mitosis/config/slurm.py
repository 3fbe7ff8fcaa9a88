"""What a trial's Slurm job asks for: ``[tool.mitosis.slurm]``, an experiment's ``slurm`` table, ``--mitosis-slurm``.

The Slurm executor (``--mitosis-executor=slurm``) submits each experiment's selected trials as one
job array; these are the resources of its jobs. Precedence, key by key: ``--mitosis-slurm KEY=VALUE``
over the experiment's ``[tool.mitosis.experiments.NAME.slurm]`` over ``[tool.mitosis.slurm]``.

Every value is checked here, where the error can name the file and the key: a value goes into a
job script as an ``#SBATCH`` line, so a partition such as ``"cpu\\n#SBATCH --uid=0"`` must never get
that far. ``setup`` lines are the user's own shell lines (``module load python/3.11``), run before the
trial in the job; ``sbatch`` lines are extra options, written ``#SBATCH <option>`` verbatim. No pytest
import: the pytest layer reads the command line, this module judges the values.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from ..core.errors import ConfigError

#: Slurm's time formats: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS (or UNLIMITED)
_TIME = re.compile(r"(\d+|\d+:\d{1,2}|\d+:\d{1,2}:\d{1,2}|\d+-\d{1,2}(:\d{1,2}){0,2}|UNLIMITED|INFINITE)\Z")
#: ``--mem``: a number with an optional K, M, G or T unit
_MEM = re.compile(r"\d+[KMGT]?\Z")
#: partition and account names (a partition may be a comma-separated list Slurm picks from)
_NAME = re.compile(r"[A-Za-z0-9_.+-]+(,[A-Za-z0-9_.+-]+)*\Z")
#: ``--gpus``: a count, or type:count
_GPUS = re.compile(r"([A-Za-z0-9_.-]+:)?\d+\Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class SlurmResources:
    """One job array's resources (``None``: the cluster's default) and how many of its tasks run at once."""

    partition: str | None = None
    time: str | None = None
    cpus: int | None = None
    mem: str | None = None
    gpus: str | None = None
    account: str | None = None
    #: ``--array=...%N``: at most this many of the array's trials run at once (``None``: Slurm decides)
    throttle: int | None = None
    #: extra ``#SBATCH`` options, verbatim (``--qos=short``)
    sbatch: tuple[str, ...] = ()
    #: shell lines run in the job before the trial (``module load ...``, ``conda activate ...``)
    setup: tuple[str, ...] = ()

    def describe(self) -> str:
        """The resources as ``sbatch`` options, for the plan line and errors."""
        shown = [f"{f.name}={getattr(self, f.name)}" for f in fields(self) if f.name not in ("sbatch", "setup")]
        kept = [s for s in shown if not s.endswith("=None")]
        return ", ".join(kept + list(self.sbatch)) or "the cluster's defaults"


#: the keys of a ``slurm`` table and of ``--mitosis-slurm``, in the order the guide lists them
KEYS = tuple(f.name for f in fields(SlurmResources))


def _line(where: str, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: {key}: expected a text, found {value!r}.")
    if _CONTROL.search(value):
        raise ConfigError(
            f"{where}: {key}: {value!r} holds a line break or another control character; a Slurm job script "
            "takes one line per value."
        )
    return value.strip()


def _count(where: str, key: str, value: Any) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where}: {key}: expected a whole number of at least 1, found {value!r}.")
    return value


def _matching(where: str, key: str, value: Any, pattern: re.Pattern[str], expected: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    text = _line(where, key, value)
    if not pattern.match(text):
        raise ConfigError(f"{where}: {key}: expected {expected}, found {value!r}.")
    return text


def _lines(where: str, key: str, value: Any, option: bool) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise ConfigError(f"{where}: {key}: expected a list of texts, found {value!r}.")
    found = tuple(_line(where, key, v) for v in value)
    if option:
        for line in found:
            if not line.startswith("-"):
                raise ConfigError(
                    f'{where}: {key}: expected sbatch options such as "--qos=short", found {line!r} (each entry '
                    "is written as an '#SBATCH <option>' line)."
                )
    return found


def _value(where: str, key: str, value: Any) -> Any:
    """One key's value, checked; ``ConfigError`` names ``where`` and the key."""
    if key in ("partition", "account"):
        return _matching(where, key, value, _NAME, "a partition or account name (letters, digits, _.+-)")
    if key == "time":
        return _matching(where, key, value, _TIME, 'a Slurm time such as "30" (minutes), "2:00:00" or "1-12:00:00"')
    if key == "mem":
        return _matching(where, key, value, _MEM, 'a memory size such as "4G" or "500M"')
    if key == "gpus":
        return _matching(where, key, value, _GPUS, 'a GPU count such as 1 or "a100:2"')
    if key in ("cpus", "throttle"):
        return _count(where, key, value)
    return _lines(where, key, value, key == "sbatch")


def slurm_table(where: str, table: object) -> dict[str, Any]:
    """A ``slurm`` table's entries, checked (``where`` names it in errors: file and table)."""
    if not isinstance(table, Mapping):
        raise ConfigError(
            f'{where}: expected a table such as {{ partition = "cpu", time = "1:00:00" }}, found {table!r}.'
        )
    unknown = sorted(set(table) - set(KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; the keys are: {', '.join(KEYS)}.")
    return {key: _value(where, key, value) for key, value in table.items()}


def parse_override(text: str) -> tuple[str, str]:
    """``--mitosis-slurm KEY=VALUE``, checked now (a typo stops the run before anything is submitted);
    argparse shows an ``ArgumentTypeError``'s text as it is."""
    import argparse

    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or key not in KEYS:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE with KEY one of {', '.join(KEYS)}, found {text!r}")
    try:
        _value("--mitosis-slurm", key, value.strip())
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix("--mitosis-slurm: ")) from None
    return key, value.strip()


def resources(
    top: Mapping[str, Any], experiment: Mapping[str, Any], overrides: Iterable[tuple[str, str]]
) -> SlurmResources:
    """An experiment's resources: the command line over its table over ``[tool.mitosis.slurm]``.

    ``sbatch`` and ``setup`` lines of the command line are added to the tables' (each a single line);
    every other key replaces.
    """
    merged: dict[str, Any] = {**top, **experiment}
    for key, value in overrides:
        checked = _value("--mitosis-slurm", key, value)
        merged[key] = (*merged.get(key, ()), *checked) if key in ("sbatch", "setup") else checked
    values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in merged.items()}
    return SlurmResources(**values)
