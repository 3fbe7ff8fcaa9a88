"""Execute a trial notebook in a fresh Jupyter kernel on pytest's own interpreter.

The kernel is started from ``sys.executable`` (never whatever a ``python3`` kernelspec points
to), talks over IPC sockets in a private temporary directory (no TCP port another local user
could reach, and no "unencrypted TCP" warning), runs in the investigation's directory, and is
always shut down. The executed notebook is returned whatever happened, so it can be saved.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import AsyncKernelManager
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


def execute(nb: Any, cwd: Path, timeout: float | None) -> Execution:
    """Run every cell of ``nb`` in a new kernel; stop at the first error or at ``timeout``."""
    started = time.monotonic()
    deadline = None if timeout is None else started + timeout

    def remaining(cell: Any) -> int | None:
        if deadline is None:
            return None
        return max(1, int(deadline - time.monotonic() + 0.999))

    with tempfile.TemporaryDirectory(prefix="mitosis-kernel-") as private:
        os.chmod(private, 0o700)
        manager = _SameInterpreterKernelManager(transport="ipc", ip=os.path.join(private, "kernel"), log=_QUIET)
        manager.connection_file = os.path.join(private, "connection.json")
        client = NotebookClient(
            nb,
            km=manager,
            timeout=None,
            timeout_func=remaining,
            startup_timeout=STARTUP_TIMEOUT,
            allow_errors=False,
            shutdown_kernel="immediate",
            resources={"metadata": {"path": str(cwd)}},
            log=_QUIET,
        )
        error: str | None = None
        kind: str | None = None
        try:
            client.execute()
        except CellTimeoutError:
            kind, error = "timeout", f"timed out after {timeout:g} s"
        except DeadKernelError as err:
            kind, error = "dead", f"kernel died ({err})" if str(err) else "kernel died"
        except CellExecutionError as err:
            kind, error = "cell", f"{err.ename}: {err.evalue}"
        except RuntimeError as err:  # "Kernel didn't respond in N seconds" and friends
            kind, error = "startup", f"the kernel did not start: {err}"
    return Execution(client.nb, error, kind, time.monotonic() - started)
