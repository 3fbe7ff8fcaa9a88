"""A trial's identity, its variant locks and its parameter record, from its resolved values.

Tracked parameters (lookup variants and eval expressions without ``+``) are fingerprinted:
they make the identity that numbers iterations and the locks that keep a variant name from
changing meaning. Untracked (``+``) parameters are recorded by their ``repr`` but never
fingerprinted: ``+`` is the way out for a value that cannot be described, so describing it
anyway could only fail. ``identify`` raises nothing but ``UnfingerprintableValue``: the
pytest layer turns that into the one trial's setup error. No pytest import.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from typing import Any

from ..config.variants import ParamSpec, TrialSpec
from ..core.errors import MitosisError, shorten
from ..core.fingerprint import FingerprintError, fingerprint
from ..core.resolved import Resolved
from ..core.tree_text import render
from .locks import Lock


class UnfingerprintableValue(MitosisError):
    """A tracked parameter's value has no exact description, so it could not be locked."""


@dataclass(frozen=True)
class TrialIdentity:
    identity: str
    locks: tuple[Lock, ...]
    params: list[dict[str, Any]]


def _label(spec: TrialSpec, p: ParamSpec) -> str:
    what = f"variant {p.text!r}" if p.kind == "lookup" else f"eval expression {p.text!r}"
    return f"experiment {spec.experiment!r}, step {p.step!r}, parameter {p.name!r} ({what})"


class _Worded(Exception):
    """Why a value resolved in another process has no fingerprint, worded there."""


def unfingerprintable(err: Exception) -> str:
    """Why a value has no fingerprint, as the refusal words it."""
    if isinstance(err, (FingerprintError, _Worded)):
        return str(err)
    return f"fingerprinting it raised {type(err).__name__}: {err}"


def fingerprint_of(value: Any) -> tuple[str, Any]:
    """``fingerprint(value)``; a value resolved in another process (:class:`Resolved`) brings its own."""
    if isinstance(value, Resolved):
        if value.fingerprint is None:
            raise _Worded(value.unfingerprintable or "it has no fingerprint")
        return value.fingerprint
    return fingerprint(value)


def _refusal(spec: TrialSpec, p: ParamSpec, err: Exception) -> UnfingerprintableValue:
    what = unfingerprintable(err)
    option = "--mitosis-param" if p.kind == "lookup" else "--mitosis-eval"
    return UnfingerprintableValue(
        f"mitosis: {_label(spec, p)}: {what}, so its meaning cannot be locked. Give it a value that can "
        f"be compared exactly, or mark the parameter untracked with a leading + "
        f"({option} {shlex.quote(f'+{p.step}.{p.name}={p.text}')}) if it cannot change a result."
    )


def identify(spec: TrialSpec, seed: int, strict: bool = True) -> TrialIdentity:
    """Fingerprint ``spec``'s values; ``strict`` (not debug) refuses tracked values without one."""
    parts: list[list[str]] = []
    locks: list[Lock] = []
    params: list[dict[str, Any]] = []
    lookups = {s.name: str(s.lookup) for s in spec.steps}
    for p in spec.params:
        record: dict[str, Any] = {"step": p.step, "name": p.name, "kind": p.kind, "text": p.text, "tracked": p.tracked}
        if p.kind == "seed":  # the trial seed: recorded with the trial, never part of its identity
            params.append({**record, "fingerprint": None, "value": seed, "repr": str(seed)})
            continue
        digest: str | None = None
        tree: Any = None
        if p.tracked:
            try:
                digest, tree = fingerprint_of(p.value)
            except Exception as err:  # fingerprint() raises FingerprintError; anything else is its bug, not a crash
                if strict:
                    raise _refusal(spec, p, err) from None
        short = p.value.short if isinstance(p.value, Resolved) else shorten(p.value, 120)
        record.update(fingerprint=digest, value=tree, repr=render(tree) if tree is not None else short)
        params.append(record)
        if p.tracked and digest is not None:
            if not p.at_default:  # typing the default changes neither the trial's name nor what it computes
                parts.append([p.step, p.name, p.kind, p.text if p.kind == "lookup" else digest])
            locks.append(Lock(spec.experiment, p.step, p.name, p.kind, p.text, digest, tree, lookups[p.step]))
    if spec.expect is not None:
        digest, tree = fingerprint(spec.expect)
        locks.append(
            Lock(
                spec.experiment,
                f"experiment {spec.experiment}",
                "expect",
                "expect",
                "hypothesis",
                digest,
                tree,
                "[tool.mitosis.experiments]",
            )
        )
    return TrialIdentity(json.dumps(sorted(parts)), tuple(locks), params)
