"""Execute a trial notebook in a fresh Jupyter kernel on pytest's own interpreter.

The kernel is started from ``sys.executable`` (never whatever a ``python3`` kernelspec points
to), talks over IPC sockets in a private temporary directory (no TCP port another local user
could reach, and no "unencrypted TCP" warning), runs in the investigation's directory, and is
always shut down. The executed notebook is returned whatever happened, so it can be saved.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import AsyncKernelManager
from jupyter_core.utils import run_sync
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

from .logs import quiet

STARTUP_TIMEOUT = 60.0
_QUIET = quiet("kernel")


class _SameInterpreterKernelManager(AsyncKernelManager):  # type: ignore[misc]
    """A kernel manager whose kernel is ``sys.executable -m ipykernel_launcher``."""

    @property
    def kernel_spec(self) -> KernelSpec:
        return KernelSpec(
            argv=[sys.executable, "-Xfrozen_modules=off", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            display_name="Python 3 (pytest-mitosis)",
            language="python",
            env={"PYDEVD_DISABLE_FILE_VALIDATION": "1"},
        )


@dataclass
class Execution:
    """What happened in the kernel; ``error`` is ``None`` when every cell ran."""

    notebook: Any
    error: str | None
    kind: str | None  # "cell", "timeout", "dead", "startup" or None
    seconds: float


class Launched:
    """A fresh kernel process, started ahead of the trial that will use it (and only that one).

    Starting the next trial's kernel while the current trial runs (or while pytest collects)
    hides most of a kernel's start-up; a launched kernel never runs more than one trial.
    """

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self._private = tempfile.mkdtemp(prefix="mitosis-kernel-")
        os.chmod(self._private, 0o700)
        self.manager = _SameInterpreterKernelManager(
            transport="ipc", ip=os.path.join(self._private, "kernel"), log=_QUIET
        )
        self.manager.connection_file = os.path.join(self._private, "connection.json")
        try:
            run_sync(self.manager.start_kernel)(cwd=str(cwd))
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop the kernel (if still running) and remove its sockets."""
        try:
            if run_sync(self.manager.is_alive)():
                run_sync(self.manager.shutdown_kernel)(now=True)
        except RuntimeError:
            pass
        finally:
            run_sync(self.manager.cleanup_resources)()
            shutil.rmtree(self._private, ignore_errors=True)


def execute(nb: Any, cwd: Path, timeout: float | None, launched: Launched | None = None) -> Execution:
    """Run every cell of ``nb`` in a fresh kernel (``launched``, or a new one); stop at the first
    error or at ``timeout``. The kernel is always shut down afterwards."""
    started = time.monotonic()
    deadline = None if timeout is None else started + timeout

    def remaining(cell: Any) -> int | None:
        if deadline is None:
            return None
        return max(1, int(deadline - time.monotonic() + 0.999))

    error: str | None = None
    kind: str | None = None
    client = None
    try:
        if launched is None or launched.cwd != cwd:
            if launched is not None:
                launched.close()
            launched = Launched(cwd)
        client = NotebookClient(
            nb,
            km=launched.manager,
            timeout=None,
            timeout_func=remaining,
            startup_timeout=STARTUP_TIMEOUT,
            allow_errors=False,
            shutdown_kernel="immediate",
            resources={"metadata": {"path": str(cwd)}},
            log=_QUIET,
        )
        client.execute()
    except CellTimeoutError:
        kind, error = "timeout", f"timed out after {timeout:g} s"
    except DeadKernelError as err:
        kind, error = "dead", f"kernel died ({err})" if str(err) else "kernel died"
    except CellExecutionError as err:
        kind, error = "cell", f"{err.ename}: {err.evalue}"
    except RuntimeError as err:  # "Kernel didn't respond in N seconds" and friends
        kind, error = "startup", f"the kernel did not start: {err}"
    finally:
        # nbclient leaves a kernel it did not create running: stop it now, not at exit.
        if launched is not None:
            launched.close()
    return Execution(client.nb if client is not None else nb, error, kind, time.monotonic() - started)
