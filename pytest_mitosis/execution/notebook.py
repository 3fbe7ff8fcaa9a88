"""Write the notebook that runs one trial, so that the executed copy tells its story.

Cells: a markdown header (experiment, trial, every parameter with its variant and value), a
set-up cell, one cell per step, a result cell. Parameters are resolved *in the kernel* (a
lookup by variant name, an eval by expression), never pickled across. nbformat is imported
here and nowhere near ``plugin.py``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..config.variants import ParamSpec, TrialSpec
from ..core.errors import shorten
from ..core.processes import Process
from ..core.resolved import Resolved

#: characters of a value shown in full in the header's table; longer values are folded
SHOWN = 200
#: characters of a value inside the fold; beyond that it is cut (the full value is in trial.yaml)
FOLDED = 20_000
#: characters that HTML, a markdown link or code span, a table or MathJax would interpret;
#: written as numeric entities (an underscore stays: within words markdown leaves it alone)
_SPECIAL = frozenset("&<>\"'\\`*[]|$")


def _text(value: object) -> str:
    """``value`` as literal text in a markdown cell, also inside a table cell and inside HTML.

    Variant names, eval texts and values come from the user's lookup dicts and command line
    (or from a store for a reproduction): written as entities, ``<script>`` stays text, a
    ``[text](javascript:...)`` is no link, ``|`` does not split the table, ``$`` starts no
    formula and ``*`` no emphasis.
    """
    return "".join(f"&#{ord(c)};" if c in _SPECIAL else c for c in " ".join(str(value).split()))


def _repr(value: object) -> str:
    try:
        return " ".join(repr(value).split())
    except Exception:
        return f"<{type(value).__name__}>"


def _summary(value: object) -> str:
    """A long value's first level: every key of a dict (their values shortened), else its start."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_repr(k)}: {shorten(v, 40)}" for k, v in value.items()) + "}"
    return shorten(value, SHOWN)


def value_cell(value: object) -> str:
    """A value for the header: in full up to ``SHOWN`` characters, else folded in ``<details>``
    (a value resolved in another process, :class:`Resolved`, brings its cell)."""
    if isinstance(value, Resolved):
        return value.cell
    text = _repr(value)
    if len(text) <= SHOWN:  # a code span: markdown shows its content as text, never as HTML
        return "`" + text.replace("`", "'").replace("|", "\\|") + "`"
    full = text if len(text) <= FOLDED else f"{text[:FOLDED]}... ({len(text) - FOLDED} more characters; see trial.yaml)"
    return f"<details><summary><code>{_text(_summary(value))}</code></summary><code>{_text(full)}</code></details>"


def _provenance(metadata: dict[str, Any]) -> str:
    git = metadata.get("git") or {}
    env = metadata.get("environment") or {}
    commit = git.get("commit")
    code = (
        (
            f"commit <code>{_text(str(commit)[:12])}</code>"
            + (f" on branch <code>{_text(git['branch'])}</code>" if git.get("branch") else "")
        )
        if commit
        else "no commit"
    )
    python = _text(env.get("python", {}).get("version", "?"))
    system = _text(env.get("platform", {}).get("platform", "?"))
    where = f" Working directory: <code>{_text(metadata['working_dir'])}</code>." if metadata.get("working_dir") else ""
    return f"Code: {code}. Python {python} on {system}, host <code>{_text(env.get('hostname', '?'))}</code>.{where}"


def header(spec: TrialSpec, title: str, debug: bool, seed: int, metadata: dict[str, Any] | None = None) -> str:
    lines = [f"# {_text(title)}", ""]
    if debug:
        lines += ["**Debug trial**: the reproducibility guards were waived; not a reproducible result.", ""]
    chain = ", ".join(f"<code>{_text(s.name)}</code> ({_text(s.function)})" for s in spec.steps)
    lines += [
        f"Experiment **{_text(spec.experiment)}**, trial <code>{_text(spec.item_name)}</code>; steps: {chain}.",
        "",
    ]
    if spec.params:
        lines += ["| step | parameter | kind | variant / expression | value | tracked |", "|---|---|---|---|---|---|"]
        for p in spec.params:
            lines.append(
                f"| {_text(p.step)} | {_text(p.name)} | {p.kind} | {_text(p.text)} | "
                f"{value_cell(seed if p.kind == 'seed' else p.value)} | "
                f"{'yes' if p.tracked else 'no (+)' if p.kind != 'seed' else 'no (seed)'} |"
            )
    else:
        lines.append("Every parameter takes its default value.")
    lines += ["", f"Seed: `{seed}` (`random` and numpy's global generator are seeded with it before each step)."]
    if metadata:
        lines += ["", _provenance(metadata)]
    return "\n".join(lines)


def _param_line(p: ParamSpec, module: str, lookup: str | None) -> str:
    if p.kind == "lookup":
        return f"    {p.name!r}: {lookup}[{p.name!r}][{p.text!r}],  # variant {p.text!r}"
    if p.kind == "seed":
        return f"    {p.name!r}: mitosis_trial.seed,  # the trial seed"
    return f"    {p.name!r}: eval({p.text!r}, vars({module})),  # eval param"


def _step_source(index: int, spec: TrialSpec) -> str:
    step = spec.steps[index]
    imports = [step.function.module]
    lookup_expr = None
    if step.lookup is not None:
        imports.append(step.lookup.module)
        lookup_expr = f"{step.lookup.module}.{step.lookup.attr}"
    lines = [f"# Step {index + 1} of {len(spec.steps)}: {step.name} = {step.function}"]
    if step.chained:
        lines[0] += f", called with result['data'] of step {index}"
    lines += [f"import {m}" for m in dict.fromkeys(imports)]
    params = [p for p in spec.params if p.step == step.name]
    lines.append("step_params = {" if params else "step_params = {}")
    if params:
        lines += [_param_line(p, step.function.module, lookup_expr) for p in params]
        lines.append("}")
    lines.append(
        f"step_result = mitosis_trial.step({step.name!r}, {str(step.function)!r}, "
        f"{step.function.module}.{step.function.attr}, step_params)"
    )
    return "\n".join(lines)


def _node(**fields: Any) -> Any:
    from nbformat.notebooknode import NotebookNode

    return NotebookNode(fields)


def _cell(kind: str, source: str) -> Any:
    """A cell as ``nbformat.v4.new_code_cell``/``new_markdown_cell`` make it, without their schema
    validation of each cell (a few milliseconds of every trial, for cells that are valid by
    construction; the notebook is validated when it is written)."""
    from nbformat.corpus.words import generate_corpus_id

    if kind == "code":
        return _node(
            id=generate_corpus_id(), cell_type="code", metadata=_node(), execution_count=None, source=source, outputs=[]
        )
    return _node(id=generate_corpus_id(), cell_type="markdown", source=source, metadata=_node())


def stopped_cell(stopped: Iterable[Process], killed: Iterable[Process] = ()) -> Any:
    """A markdown cell naming the processes a trial left running, stopped when it ended (pid, command line).

    Appended to the executed notebook (so also its HTML page) after the kernel stopped: where a
    reader of the trial looks, and never mistaken for a step's output.
    """
    hard = {p.pid for p in killed}
    lines = [
        "**Processes stopped when the trial ended**: started by the trial and still running, "
        "they were stopped (SIGTERM) with its kernel.",
        "",
    ]
    for process in stopped:
        note = " (ignored SIGTERM: killed)" if process.pid in hard else ""
        lines.append(f"- pid {process.pid}: <code>{_text(process.command)}</code>{note}")
    return _cell("markdown", "\n".join(lines))


def from_json(data: dict[str, Any]) -> Any:
    """A notebook :func:`build` made in another process, from its JSON (``nbformat.from_dict``)."""
    import nbformat

    return nbformat.from_dict(data)


def build(
    spec: TrialSpec,
    *,
    title: str,
    folder: Path,
    debug: bool,
    seed: int,
    metadata: dict[str, Any],
    sys_path: list[str] | None = None,
    max_output: int = 0,
) -> Any:
    """The unexecuted notebook for ``spec``; ``folder`` receives the log, pickles and outcome.

    ``sys_path`` (default: the pytest process's) is put in front of the kernel's own;
    ``max_output``: the characters of stdout and stderr each cell shows at most (0: all).
    """
    modules = list(dict.fromkeys(s.function.module for s in spec.steps))
    paths = [p for p in (sys.path if sys_path is None else sys_path) if p]
    setup = "\n".join(
        [
            "# pytest-mitosis set-up: the same importability as the pytest process, logging, figures",
            "import sys",
            f"sys.path[:0] = [p for p in {paths!r} if p not in sys.path]",
            "import pytest_mitosis.execution.runtime",
            f"mitosis_trial = pytest_mitosis.execution.runtime.Trial({str(folder)!r}, steps={[s.name for s in spec.steps]!r}, "
            f"modules={modules!r}, seed={seed}, log_level={'DEBUG' if debug else 'INFO'!r}"
            + (f", max_output={max_output}" if max_output else "")
            + ")",
        ]
    )
    cells = [_cell("markdown", header(spec, title, debug, seed, metadata)), _cell("code", setup)]
    cells += [_cell("code", _step_source(i, spec)) for i in range(len(spec.steps))]
    cells.append(
        _cell(
            "code", "# Result: main and metrics of the last step; every step's result pickled\nmitosis_trial.finish()"
        )
    )
    nb = _node(nbformat=4, nbformat_minor=5, metadata=_node(), cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (pytest-mitosis)", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata["mitosis"] = metadata
    return nb
