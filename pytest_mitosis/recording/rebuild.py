"""A recorded trial rebuilt from the pyproject.toml at its commit, never from the record's code.

A store is a file a colleague can hand you, so the record is never a source of code: the
steps (callables and lookup dicts) come from the pyproject.toml *at the recorded commit* (read
with ``git show``, nothing checked out), and the record must name exactly those; an eval
expression runs only when that commit's experiment table declares it for that parameter, when
it is a plain literal (``ast.literal_eval`` reads it without running anything), or when the
user vouches for it by giving the same ``--mitosis-eval``. Names that become paths must be
single path components. No pytest import.
"""

from __future__ import annotations

import ast
import re
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..config.project import ProjectConfig, load_project
from ..config.variants import ParamSpec, StepSpec, TrialSpec
from ..core.errors import ConfigError, MitosisError
from ..store import TrialRecord, printable, valid_commit


class ReproductionError(MitosisError):
    """The recorded commit cannot be checked out (or the record cannot be rebuilt)."""


class _Recorded(str):
    """A recorded value's text, shown as is in the notebook header."""

    def __repr__(self) -> str:
        return str(self)


_NAME = re.compile(r"^trial_[^/\\\x00-\x1f\x7f]{1,200}$")  # one path component, no control character
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _refuse(record: TrialRecord, pyproject: Path, what: str) -> ReproductionError:
    return ReproductionError(
        printable(
            f"cannot reproduce trial {record.name} (key {record.key}): {what}. A reproduction runs only the steps "
            f"that {pyproject} declares at commit {str(record.commit)[:12]}; nothing was run. If the store was edited "
            "or comes from elsewhere, do not trust it; otherwise reproduce by hand: git checkout the commit and run "
            "pytest --mitosis with the trial's parameters."
        )
    )


def _literal(text: str) -> bool:
    try:
        ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


def rebuild(
    record: TrialRecord,
    project: ProjectConfig,
    vouched: frozenset[tuple[str, str, str]] = frozenset(),
) -> TrialSpec:
    """The trial as specified, its steps taken from ``project`` (the pyproject at the recorded commit).

    The record must agree with ``project``: the same callable and lookup dict for every step
    name, the experiment's chain if it is declared there; eval expressions must be declared
    for that parameter, literals, or ``vouched`` for on the command line. Anything else is a
    ``ReproductionError`` naming the mismatch, raised before anything runs.
    """
    _check_shape(record, project.path)
    names = [step.get("name") for step in record.steps]
    declared = project.experiments.get(record.experiment)
    if declared is not None and tuple(names) != declared.steps:
        raise _refuse(
            record,
            project.path,
            f"experiment {record.experiment!r} has the steps {', '.join(declared.steps)} "
            f"there, the record names {', '.join(map(str, names))}",
        )
    steps = tuple(_step(record, project, index, step) for index, step in enumerate(record.steps))
    declared_evals = {(a.step, a.param, a.value) for a in declared.evals} if declared is not None else set()
    params = tuple(_param(record, project.path, p, names, declared_evals | vouched) for p in record.params)
    return TrialSpec(record.experiment, steps, params)


def _check_shape(record: TrialRecord, where: Path) -> None:
    """The record's name, steps, parameters and seed have the types pytest-mitosis writes."""
    if not isinstance(record.name, str) or not _NAME.match(record.name):
        raise _refuse(record, where, f"its recorded name {record.name!r} is not a trial name (trial_..., no '/')")
    if (
        not isinstance(record.steps, list)
        or not record.steps
        or not all(isinstance(s, dict) for s in record.steps)
        or not isinstance(record.params, list)
        or not all(isinstance(p, dict) for p in record.params)
    ):
        raise _refuse(record, where, "its steps or parameters are not records pytest-mitosis writes")
    if record.seed is not None and (not isinstance(record.seed, int) or isinstance(record.seed, bool)):
        raise _refuse(record, where, f"its seed {record.seed!r} is not an integer")


def _step(record: TrialRecord, project: ProjectConfig, index: int, step: dict[str, Any]) -> StepSpec:
    """The recorded step as registered in ``project``, which must name the same callable and lookup dict."""
    config = project.steps.get(step.get("name"))  # type: ignore[arg-type]
    if config is None:
        raise _refuse(
            record, project.path, f"step {step.get('name')!r} is not registered in [tool.mitosis.steps] there"
        )
    if step.get("function") != str(config.function) or step.get("lookup") != (
        str(config.lookup) if config.lookup else None
    ):
        raise _refuse(
            record,
            project.path,
            f"step {config.name!r} is {config.function}"
            + (f" with {config.lookup}" if config.lookup else "")
            + f" there, but the record says {step.get('function')!r}"
            + (f" with {step.get('lookup')!r}" if step.get("lookup") else ""),
        )
    return StepSpec(config.name, config.function, config.lookup, index > 0)


def _param(
    record: TrialRecord,
    where: Path,
    p: dict[str, Any],
    names: list[Any],
    trusted: frozenset[tuple[str, str, str]] | set[tuple[str, str, str]],
) -> ParamSpec:
    """A recorded parameter, checked: of a recorded step, and an eval expression only when ``trusted``
    (declared there, or vouched for) or a plain literal."""
    kind, owner, name, text = p.get("kind"), p.get("step"), p.get("name"), p.get("text")
    if (
        kind not in ("lookup", "eval", "seed")
        or owner not in names
        or not isinstance(name, str)
        or not _IDENTIFIER.match(name)
        or not isinstance(text, str)
    ):
        raise _refuse(record, where, f"its parameter record {p!r} is not one pytest-mitosis writes")
    if kind == "eval" and (owner, name, text) not in trusted and not _literal(text):
        raise _refuse(
            record,
            where,
            f"the eval expression {text!r} for {owner}.{name} is not declared for experiment {record.experiment!r} "
            "there and is not a plain literal, so it is not evaluated from a store; if you have read it and trust "
            f"it, add --mitosis-eval {owner}.{name}={text} to vouch for it",
        )
    return ParamSpec(str(owner), name, kind, text, bool(p.get("tracked")), False, _Recorded(p.get("repr", "")))


def project_at(worktree: Path, commit: str, pyproject: Path, trials: Path, record: TrialRecord) -> ProjectConfig:
    """``[tool.mitosis]`` of ``pyproject`` as committed at ``commit`` (read with ``git show``, nothing checked out)."""
    if not valid_commit(commit):
        raise ReproductionError(printable(f"the recorded commit {commit!r} is not a git object name (hex digits)"))
    inside = pyproject.relative_to(worktree).as_posix()
    done = subprocess.run(
        ["git", "-c", "core.fsmonitor=false", "show", "--no-textconv", "--end-of-options", f"{commit}:{inside}"],
        cwd=worktree,
        capture_output=True,
        stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0:
        raise ReproductionError(
            f"cannot reproduce trial {record.name} (key {record.key}): {inside} cannot be read at commit {commit[:12]} "
            f"of {worktree}: {done.stderr.decode(errors='replace').strip()}. Fetch the commit (git fetch) or reproduce "
            "from a clone that has it; nothing was run."
        )
    with tempfile.TemporaryDirectory(prefix="mitosis-reproduce-") as folder:
        copy = Path(folder) / pyproject.name
        copy.write_bytes(done.stdout)
        try:  # named as in the repository in messages, not as the temporary copy
            return replace(load_project(copy, trials, stands_for=pyproject), path=Path(inside))
        except ConfigError as err:
            raise ReproductionError(
                f"cannot reproduce trial {record.name} (key {record.key}): {inside} at commit {commit[:12]} cannot be "
                f"read, so the steps it declares are unknown; nothing was run. "
                + str(err).replace(str(copy), f"{inside}@{commit[:12]}")
            ) from None
