"""What the machine and the interpreter were when a trial ran: recorded once per process.

Python, OS, CPU, host, every installed distribution with its version, an allow-list of
environment variables, the GPUs when ``nvidia-smi`` is present. The git facts come from
:mod:`pytest_mitosis.checks.clean_tree`. Everything is a plain JSON-able dict; plugins add entries with
the ``pytest_mitosis_environment`` hook. No pytest import here.
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterable, Mapping
from importlib import metadata
from typing import Any


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as stream:
            for line in stream:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _name_and_version(dist: metadata.Distribution) -> tuple[str | None, str | None]:
    """``Name`` and ``Version`` from the metadata file's headers alone.

    ``dist.metadata`` hands the whole file, long description included, to the email parser,
    and ``dist.version`` does it a second time: for every distribution, in every session and
    every xdist worker, that was a tenth of a second or more of the pytest process. The
    headers come first and these two are single lines; anything unusual falls back to the parser.
    """
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
    name = version = None
    for line in text.split("\n\n", 1)[0].splitlines():
        if not name and line.startswith("Name:"):
            name = line[5:].strip()
        elif not version and line.startswith("Version:"):
            version = line[8:].strip()
        if name and version:
            return name, version
    parsed = dist.metadata
    return parsed["Name"], parsed["Version"]


def packages() -> dict[str, str]:
    """Every installed distribution (normalised name → version)."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name, version = _name_and_version(dist)
        if name:
            found[name.lower().replace("_", "-")] = str(version)
    return dict(sorted(found.items()))


def gpus() -> list[str]:
    """``name, driver, memory`` per GPU, when ``nvidia-smi`` is on the PATH."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        done = subprocess.run(
            [smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in done.stdout.splitlines() if line.strip()] if done.returncode == 0 else []


def gather(env_vars: tuple[str, ...]) -> dict[str, Any]:
    """The built-in environment record (the git part is added by the caller)."""
    return {
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
        },
        "platform": {
            "system": platform.system(),
            "release": platform.release(),
            "machine": platform.machine(),
            "platform": platform.platform(),
        },
        "cpu": {"model": _cpu_model(), "count": os.cpu_count()},
        "hostname": socket.gethostname(),
        "packages": packages(),
        "env": {name: os.environ[name] for name in env_vars if name in os.environ},
        "gpus": gpus(),
    }


def package_changes(old: dict[str, str], new: dict[str, str]) -> dict[str, list[str]]:
    """Packages added, removed and changed between two environment records."""
    return {
        "added": [f"{n} {new[n]}" for n in sorted(set(new) - set(old))],
        "removed": [f"{n} {old[n]}" for n in sorted(set(old) - set(new))],
        "changed": [f"{n} {old[n]} -> {new[n]}" for n in sorted(set(old) & set(new)) if old[n] != new[n]],
    }


def merge(found: dict[str, Any], extras: Iterable[Mapping[str, Any] | None]) -> dict[str, Any]:
    """``found`` with the entries of the ``pytest_mitosis_environment`` implementations added.

    A key that is already there (built in, or from another implementation) raises
    ``ValueError``: a silently overwritten entry would make the record lie.
    """
    merged = dict(found)
    builtin = set(found)
    for extra in extras:
        for key, value in dict(extra or {}).items():
            if key in merged:
                origin = "the built-in record" if key in builtin else "another implementation"
                raise ValueError(
                    f"a pytest_mitosis_environment implementation returns the key {key!r}, which {origin} already has; "
                    "use another key."
                )
            merged[key] = value
    return merged
