"""Write the notebook that runs one trial, so that the executed copy tells its story.

Cells: a markdown header (experiment, trial, every parameter with its variant and value), a
set-up cell, one cell per step, a result cell. Parameters are resolved *in the kernel* (a
lookup by variant name, an eval by expression), never pickled across. nbformat is imported
here and nowhere near ``plugin.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ..config.variants import ParamSpec, TrialSpec
from ..core.errors import shorten


def _markdown_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("`", "'")


def _provenance(metadata: dict[str, Any]) -> str:
    git = metadata.get("git") or {}
    env = metadata.get("environment") or {}
    commit = git.get("commit")
    code = f"commit `{commit[:12]}`" + (f" on branch `{git['branch']}`" if git.get("branch") else "") if commit else "no commit"
    python = env.get("python", {}).get("version", "?")
    system = env.get("platform", {}).get("platform", "?")
    where = f" Working directory: `{metadata['working_dir']}`." if metadata.get("working_dir") else ""
    return f"Code: {code}. Python {python} on {system}, host `{env.get('hostname', '?')}`.{where}"


def header(spec: TrialSpec, title: str, debug: bool, seed: int, metadata: dict[str, Any] | None = None) -> str:
    lines = [f"# {title}", ""]
    if debug:
        lines += ["**Debug trial**: the reproducibility guards were waived; not a reproducible result.", ""]
    chain = ", ".join(f"`{s.name}` ({s.function})" for s in spec.steps)
    lines += [f"Experiment **{spec.experiment}**, trial `{spec.item_name}`; steps: {chain}.", ""]
    if spec.params:
        lines += ["| step | parameter | kind | variant / expression | value | tracked |", "|---|---|---|---|---|---|"]
        for p in spec.params:
            lines.append(
                f"| {p.step} | {p.name} | {p.kind} | {_markdown_cell(p.text)} | "
                f"`{_markdown_cell(shorten(seed if p.kind == 'seed' else p.value))}` | "
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


def build(
    spec: TrialSpec,
    *,
    title: str,
    folder: Path,
    debug: bool,
    seed: int,
    metadata: dict[str, Any],
    sys_path: list[str] | None = None,
) -> Any:
    """The unexecuted notebook for ``spec``; ``folder`` receives the log, pickles and outcome.

    ``sys_path`` (default: the pytest process's) is put in front of the kernel's own.
    """
    import nbformat.v4 as v4

    modules = list(dict.fromkeys(s.function.module for s in spec.steps))
    paths = [p for p in (sys.path if sys_path is None else sys_path) if p]
    setup = "\n".join(
        [
            "# pytest-mitosis set-up: the same importability as the pytest process, logging, figures",
            "import sys",
            f"sys.path[:0] = [p for p in {paths!r} if p not in sys.path]",
            "import pytest_mitosis.execution.runtime",
            f"mitosis_trial = pytest_mitosis.execution.runtime.Trial({str(folder)!r}, steps={[s.name for s in spec.steps]!r}, "
            f"modules={modules!r}, seed={seed}, log_level={'DEBUG' if debug else 'INFO'!r})",
        ]
    )
    cells = [v4.new_markdown_cell(header(spec, title, debug, seed, metadata)), v4.new_code_cell(setup)]
    cells += [v4.new_code_cell(_step_source(i, spec)) for i in range(len(spec.steps))]
    cells.append(v4.new_code_cell("# Result: main and metrics of the last step; every step's result pickled\nmitosis_trial.finish()"))
    nb = v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (pytest-mitosis)", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata["mitosis"] = metadata
    return nb
