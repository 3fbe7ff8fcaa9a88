"""Collection's import of the steps, in a fork of the warm parent instead of in pytest's process.

Collection imports the step modules to read their signatures and lookup dicts, and so imports
what they import: numpy and matplotlib cost each pytest process about 0.9 s of CPU (scikit-learn
more), and every pytest-xdist worker paid it again while the warm parent (:mod:`.forkparent`)
was importing the same libraries beside it. A fork of that parent has them already: it imports
only the investigation's own modules (fresh, from the working tree, as pytest would), runs
:func:`~pytest_mitosis.config.experiments.collect_experiments` with pytest's ``sys.path``,
environment and directory, and writes the experiments to a file in a private folder, each
value replaced by what pytest's process needs of it (:class:`~pytest_mitosis.core.resolved.Resolved`:
its fingerprint, its short text, its header cell), with the warnings the import raised, which
pytest's process raises again (pytest lists them as it did), and the installed modules the steps
hold (what the parent should preload as well, see :func:`.preload.imported_by`).

Whenever the fork cannot be used (kernels are spawned, no warm parent was started for this
session, it refuses to fork or dies, the child fails) pytest's process collects itself: the
experiments, their errors and their messages are the same either way.
"""

from __future__ import annotations

import base64
import os
import pickle
import shutil
import sys
import time
import warnings
from dataclasses import replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..config.experiments import Collected
    from ..config.project import ProjectConfig
    from ..config.settings import Settings
    from .forkserver import ForkServer

#: how often pytest's process looks whether the child has finished
_POLL = 0.005


def collect_in_fork(
    server: ForkServer, project: ProjectConfig, settings: Settings, quiet: bool = True
) -> tuple[list[Collected], list[str]] | None:
    """The experiments collected in a fork of ``server``'s parent (a :class:`.forkserver.ForkServer`), and
    the installed modules their steps hold; ``None`` when that did not work (then collect here).
    ``quiet``: pytest captures output, so what the import prints is dropped (``-s``: it is shown).

    A ``ConfigError`` of the command line is raised here, as in-process collection raises it.
    """
    from ..core.errors import ConfigError
    from ..core.processes import start_time
    from .forkserver import ForkFailed, alive
    from .private import private_folder

    try:
        payload = base64.b64encode(pickle.dumps((project, settings, list(sys.path)))).decode("ascii")
        folder = private_folder()
    except Exception:  # settings a plugin made unpicklable, a full /tmp: collect here
        return None
    out = os.path.join(folder, "collected.pickle")
    try:
        try:
            pid = server.collect(payload, out, dict(os.environ), os.getcwd(), quiet)
        except ForkFailed:
            return None
        started = start_time(pid)  # once it exits, its pid may be a later process's
        try:
            while not os.path.exists(out):
                if not alive(pid, started):
                    if os.path.exists(out):  # written just before it exited
                        break
                    return None  # the child failed: pytest's process collects, and says what is wrong
                time.sleep(_POLL)
        except KeyboardInterrupt:  # a Ctrl-C while the steps are imported: the child goes too
            _kill(pid)
            # pytest names where the interrupt landed: here, not in the module being imported
            raise KeyboardInterrupt(f"while collection imported the steps of {project.path}") from None
        except BaseException:
            _kill(pid)
            raise
        try:
            with open(out, "rb") as stream:
                kind, found, caught, imported = pickle.load(stream)
        except Exception:
            return None
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    for category, message, filename, lineno in caught:
        builtin = _category(category)
        text = message if builtin is not UserWarning or category == "UserWarning" else f"{category}: {message}"
        warnings.warn_explicit(text, builtin, filename, lineno)
    if kind == "error":
        raise ConfigError(found)
    return list(found), list(imported)


def child_main(payload: str, out: str) -> None:
    """In the forked child: collect as pytest's process would, and write what it needs (atomically)."""
    from ..config.experiments import collect_experiments
    from ..core.errors import ConfigError
    from .preload import imported_by

    project, settings, path = pickle.loads(base64.b64decode(payload))
    sys.path[:] = path
    result: tuple[str, Any]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        try:
            result = ("ok", [_resolved(c) for c in collect_experiments(project, settings)])
        except ConfigError as err:
            result = ("error", str(err))
    modules = [ref.module for s in project.steps.values() for ref in (s.function, s.lookup) if ref is not None]
    try:
        imported = imported_by(modules, project.root)
    except Exception:  # an optimisation only
        imported = []
    seen = [(_category_name(w.category), str(w.message), w.filename, w.lineno) for w in caught]
    tmp = out + ".tmp"
    with open(tmp, "wb") as stream:
        pickle.dump((*result, seen, imported), stream)
    os.replace(tmp, out)


def _resolved(collected: Collected) -> Collected:
    """``collected`` with each trial's values replaced by what pytest's process needs of them."""
    if not collected.trials:
        return collected
    return replace(
        collected, trials=tuple(replace(t, params=tuple(_param(p) for p in t.params)) for t in collected.trials)
    )


def _param(p: Any) -> Any:
    from ..core.errors import shorten
    from ..core.fingerprint import fingerprint
    from ..identity.trial import unfingerprintable
    from .notebook import value_cell

    if p.kind == "seed":
        return p
    found: tuple[str, Any] | None = None
    reason: str | None = None
    if p.tracked:
        try:
            found = fingerprint(p.value)
        except Exception as err:
            reason = unfingerprintable(err)
    from ..core.resolved import Resolved

    return replace(p, value=Resolved(found, reason, shorten(p.value, 120), value_cell(p.value)))


def _category_name(category: type[Warning]) -> str:
    return category.__name__ if category.__module__ == "builtins" else f"{category.__module__}.{category.__qualname__}"


def _category(name: str) -> type[Warning]:
    """A warning's category again: a built-in one by its name; the investigation's own as a UserWarning
    (its class lives in the child), whose text names it."""
    import builtins

    found = getattr(builtins, name, None)
    return found if isinstance(found, type) and issubclass(found, Warning) else UserWarning


def _kill(pid: int) -> None:
    import signal

    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass
