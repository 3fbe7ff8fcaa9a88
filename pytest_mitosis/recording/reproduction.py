"""Reproduction as a test: re-run a recorded trial at its commit and compare with the record.

The recorded commit is checked out into a temporary ``git worktree`` (the user's work tree is
never touched); the trial is rebuilt and run in a fresh kernel whose ``sys.path`` starts at
that checkout. Its ``main`` and metrics must equal the recorded ones, exactly or within
``rtol``/``atol``.

A store is a file a colleague can hand you, so the record is never a source of code: the
steps (callables and lookup dicts) come from the pyproject.toml *at the recorded commit*,
and the record must name exactly those; an eval expression runs only when that commit's
experiment table declares it for that parameter, when it is a plain literal (numbers,
strings, containers of them: ``ast.literal_eval`` reads it without running anything), or
when the user vouches for it by giving the same ``--mitosis-eval`` on the command line.
The commit must be a hex object name and reaches git after ``--end-of-options``; names
that become paths must be single path components. No pytest import.
"""

from __future__ import annotations

import ast
import contextlib
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..config.project import ProjectConfig, load_project
from ..config.variants import ParamSpec, StepSpec, TrialSpec
from ..core.errors import ConfigError, MitosisError
from ..core.rules import close
from ..identity.environment import package_changes
from ..store import Reader, RecordsError, TrialRecord, printable, valid_commit, valid_key


class ReproductionError(MitosisError):
    """The recorded commit cannot be checked out (or the record cannot be rebuilt)."""


def select(reader: Reader, selectors: tuple[str, ...]) -> list[TrialRecord]:
    """Keys (unique prefixes), experiment names (their latest trial of every identity), or ``all``."""
    experiments = set(reader.experiments())
    found: dict[str, TrialRecord] = {}
    for selector in selectors:
        if selector == "all":
            chosen = list(reader.latest())
        elif selector in experiments:
            chosen = list(reader.latest(selector))
        else:
            try:
                chosen = [reader.get(selector)]
            except RecordsError as err:
                raise ConfigError(f"--mitosis-reproduce {selector}: {err}") from None
        for record in chosen:
            if not valid_key(record.key):
                raise ConfigError(
                    printable(
                        f"--mitosis-reproduce {selector}: the store {reader.location} holds a trial whose key {record.key!r} "
                        "is not a pytest-mitosis key (8 hex digits): the store was edited or is not ours. Nothing was run."
                    )
                )
            found.setdefault(record.key, record)
    return list(found.values())


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
    where = project.path
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
    names = [step.get("name") for step in record.steps]
    declared = project.experiments.get(record.experiment)
    if declared is not None and tuple(names) != declared.steps:
        raise _refuse(
            record,
            where,
            f"experiment {record.experiment!r} has the steps {', '.join(declared.steps)} "
            f"there, the record names {', '.join(map(str, names))}",
        )
    steps = []
    for index, step in enumerate(record.steps):
        config = project.steps.get(step.get("name"))  # type: ignore[arg-type]
        if config is None:
            raise _refuse(record, where, f"step {step.get('name')!r} is not registered in [tool.mitosis.steps] there")
        if step.get("function") != str(config.function) or step.get("lookup") != (
            str(config.lookup) if config.lookup else None
        ):
            raise _refuse(
                record,
                where,
                f"step {config.name!r} is {config.function}"
                + (f" with {config.lookup}" if config.lookup else "")
                + f" there, but the record says {step.get('function')!r}"
                + (f" with {step.get('lookup')!r}" if step.get("lookup") else ""),
            )
        steps.append(StepSpec(config.name, config.function, config.lookup, index > 0))
    declared_evals = {(a.step, a.param, a.value) for a in declared.evals} if declared is not None else set()
    params = []
    for p in record.params:
        kind, owner, name, text = p.get("kind"), p.get("step"), p.get("name"), p.get("text")
        if (
            kind not in ("lookup", "eval", "seed")
            or owner not in names
            or not isinstance(name, str)
            or not _IDENTIFIER.match(name)
            or not isinstance(text, str)
        ):
            raise _refuse(record, where, f"its parameter record {p!r} is not one pytest-mitosis writes")
        if (
            kind == "eval"
            and (owner, name, text) not in declared_evals
            and (owner, name, text) not in vouched
            and not _literal(text)
        ):
            raise _refuse(
                record,
                where,
                f"the eval expression {text!r} for {owner}.{name} is not declared for experiment {record.experiment!r} "
                "there and is not a plain literal, so it is not evaluated from a store; if you have read it and trust "
                f"it, add --mitosis-eval {owner}.{name}={text} to vouch for it",
            )
        params.append(
            ParamSpec(str(owner), name, kind, text, bool(p.get("tracked")), False, _Recorded(p.get("repr", "")))
        )
    return TrialSpec(record.experiment, tuple(steps), tuple(params))


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
            return replace(load_project(copy, trials), path=Path(inside))
        except ConfigError as err:
            raise ReproductionError(
                f"cannot reproduce trial {record.name} (key {record.key}): {inside} at commit {commit[:12]} cannot be "
                f"read, so the steps it declares are unknown; nothing was run. "
                + str(err).replace(str(copy), f"{inside}@{commit[:12]}")
            ) from None


@contextlib.contextmanager
def checkout(worktree: Path, commit: str, submodules: bool) -> Iterator[Path]:
    """A temporary ``git worktree`` of ``worktree``'s repository at ``commit``, removed afterwards."""

    def git(*args: str, cwd: Path = worktree) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", "-c", "core.fsmonitor=false", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
        )

    with tempfile.TemporaryDirectory(prefix="mitosis-reproduce-") as parent:
        path = Path(parent) / "checkout"
        if not valid_commit(commit):  # never an option: "--output=..." would make git write a file
            raise ReproductionError(printable(f"the recorded commit {commit!r} is not a git object name (hex digits)"))
        done = git("worktree", "add", "--detach", "--end-of-options", str(path), commit)
        if done.returncode != 0:
            raise ReproductionError(
                f"cannot check out commit {commit} of {worktree}: {done.stderr.strip()}. Fetch the commit "
                "(git fetch) or reproduce from a clone that has it."
            )
        try:
            if submodules:
                sub = git("-c", "protocol.file.allow=always", "submodule", "update", "--init", "--recursive", cwd=path)
                if sub.returncode != 0:
                    raise ReproductionError(f"cannot check out the submodules at {commit}: {sub.stderr.strip()}")
            yield path
        finally:
            git("worktree", "remove", "--force", str(path))
            git("worktree", "prune")


def kernel_path(checkout: Path, worktree: Path, project_root: Path) -> list[str]:
    """``sys.path`` for the kernel, every entry inside the work tree moved into the checkout.

    That covers the investigation's root and paths such as an editable install's ``src``
    (a ``.pth`` entry): the kernel imports the recorded commit's code, never today's.
    """
    moved = [str(checkout / project_root.relative_to(worktree))]
    for entry in sys.path:
        if not entry:
            continue
        path = Path(entry).resolve()
        if path == worktree or worktree in path.parents:
            moved.append(str(checkout / path.relative_to(worktree)))
        else:
            moved.append(entry)
    return list(dict.fromkeys(moved))


def differences(record: TrialRecord, main: Any, metrics: dict[str, Any], rtol: float, atol: float) -> list[str]:
    """``name: recorded X, reproduced Y`` for ``main`` and each metric that does not match."""
    found = []
    if not close(record.main, main, rtol, atol):
        found.append(f"main: recorded {record.main!r}, reproduced {main!r}")
    for name in dict.fromkeys([*record.metrics, *metrics]):
        if not close(record.metrics.get(name), metrics.get(name), rtol, atol):
            found.append(f"metrics.{name}: recorded {record.metrics.get(name)!r}, reproduced {metrics.get(name)!r}")
    return found


def environment_changes(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """What differs from the recorded environment that could explain a difference."""
    found = []
    for part in ("python", "platform"):
        if recorded.get(part) != current.get(part):
            old = recorded.get(part, {}).get("version" if part == "python" else "platform")
            new = current.get(part, {}).get("version" if part == "python" else "platform")
            found.append(f"{part}: {old} -> {new}")
    changes = package_changes(recorded.get("packages", {}), current.get("packages", {}))
    found += [f"package {kind}: {p}" for kind in ("changed", "added", "removed") for p in changes[kind]]
    return found


def reproduce_trial(
    record: TrialRecord,
    *,
    reader: Reader,
    store: Any,
    project_root: Path,
    trials: Path,
    worktree: Path,
    environment: dict[str, Any],
    nodeid: str,
    timeout: float | None,
    rtol: float,
    atol: float,
    pyproject: Path | None = None,
    vouched: frozenset[tuple[str, str, str]] = frozenset(),
    working_dir: Path | None = None,
) -> Any:
    """Run ``record`` again at its commit, record it as a trial linked to it, and judge it.

    ``pyproject`` is the investigation's pyproject.toml (default: ``project_root/pyproject.toml``);
    the same file at the recorded commit says which steps may run. ``vouched`` holds the
    ``(step, param, expression)`` the user gave with ``--mitosis-eval``. The kernel runs in
    ``working_dir`` (``working-dir`` of ``[tool.mitosis]``, default the investigation's root)
    moved into the checkout when it is inside the work tree.
    """

    from ..execution.runner import run_trial
    from ..store import NewTrial, new_key, start

    if record.commit is None:
        raise ReproductionError(
            f"trial {record.name} (key {record.key}) recorded no commit, so it cannot be reproduced"
        )
    if not valid_commit(record.commit):
        raise ReproductionError(
            printable(
                f"trial {record.name} (key {record.key}) recorded the commit {record.commit!r}, which is not a git object "
                "name (hex digits): the store was edited or is not ours. Nothing was run."
            )
        )
    pyproject = pyproject if pyproject is not None else project_root / "pyproject.toml"
    # the steps that may run: the pyproject at the recorded commit, checked before anything is checked out
    spec = rebuild(record, project_at(worktree, record.commit, pyproject, trials, record), vouched)
    cwd = working_dir or project_root
    relative = cwd.relative_to(worktree) if cwd.is_relative_to(worktree) else None
    with checkout(worktree, record.commit, bool(record.git.get("submodules"))) as path:
        slug = record.name.rsplit("-", 1)[0] if record.iteration is not None else record.name
        git = {**record.git, "commit": record.commit, "dirty": [], "worktree": str(worktree), "checkout": str(path)}
        env = {**environment, "git": git}
        key, iteration = start(
            store,
            lambda key: NewTrial(
                key,
                record.experiment,
                record.identity,
                record.variants,
                slug,
                nodeid,
                False,
                git,
                int(record.seed or 0),
                env,
                record.steps,
                record.params,
                reproduces=record.key,
            ),
            (),
            new_key(),
        )
        name = f"{slug}-{iteration}"
        root = path / relative if relative is not None else cwd
        try:
            outcome = run_trial(
                spec,
                key=key,
                name=name,
                root=root,
                trials=trials,
                timeout=timeout,
                debug=False,
                seed=int(record.seed or 0),
                sys_path=kernel_path(path, worktree, project_root),
                metadata={
                    "experiment": record.experiment,
                    "id": record.variants,
                    "iteration": iteration,
                    "debug": False,
                    "git": git,
                    "steps": record.steps,
                    "params": record.params,
                    "environment": env,
                    "reproduces": record.key,
                    "working_dir": str(root),
                },
            )
        except BaseException as err:
            store.finish(
                key, status="failed", main=None, metrics={}, folder=None, message=f"{type(err).__name__}: {err}"
            )
            raise
    message = outcome.message
    passed = outcome.passed
    if passed:
        found = differences(record, outcome.main, outcome.metrics, rtol, atol)
        if found:
            passed = False
            tolerance = "exactly" if not (rtol or atol) else f"within rtol={rtol:g}, atol={atol:g}"
            lines = [
                f"reproduction of {record.name} (key {record.key}) at commit {record.commit[:12]} does not match "
                f"its record {tolerance}:",
                *[f"  {d}" for d in found],
            ]
            changed = environment_changes(reader.environment(record), env)
            lines += (
                ["the environment differs from the recorded one:", *[f"  {c}" for c in changed]]
                if changed
                else ["the environment matches the recorded one (python, platform, packages)"]
            )
            message = "\n".join(lines) + f"\n\nnotebook: {outcome.html}"
    elif message:
        message = f"reproduction of {record.name} (key {record.key}) at commit {record.commit[:12]} failed: {message}"
    warnings = store.finish(
        key,
        status="passed" if passed else "failed",
        main=outcome.main,
        metrics=outcome.metrics,
        folder=str(outcome.folder),
        message=message,
        verdict="reproduced" if passed else "not reproduced",
    )
    return replace(
        outcome,
        passed=passed,
        message=message,
        iteration=iteration,
        commit=record.commit,
        seed=record.seed,
        warnings=tuple(warnings),
    )
