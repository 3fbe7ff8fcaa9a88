"""Lay out a trial's artifacts: a staging folder while it runs, the final folder once complete.

Everything is written into ``<trials>/.staging/<key>/`` first and renamed into place at the
end (one ``rename`` on one filesystem), so a crash never leaves a folder under its final
name that looks complete and is not: what sits in ``.staging`` is, by its place, unfinished.
A trial whose files cannot be written discards its staging folder (the space comes back), and
the next session removes the staging folders of trials that a killed session left behind.

Debug trials go to ``<trials>/debug/``, unless the trials folder is itself named ``debug``
(``--mitosis-trials-folder trials/debug``): the user already keeps debug runs apart.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..core import profile

STAGING = ".staging"
DEBUG = "debug"
#: written into every trials folder the plugin creates, so git (and so the dirty check) ignores it
GITIGNORE = "# Created by pytest-mitosis: trial artifacts and the trial store are not source code.\n*\n"


def prepare_trials_folder(folder: Path, gitignore: bool = True) -> None:
    """Create the trials folder, with a ``.gitignore`` holding ``*``, if it does not exist yet.

    Like ``.pytest_cache``, a folder the plugin creates ignores itself wherever it is, so a run
    into ``trials/debug`` never makes a later run into ``trials/pm`` refuse a dirty tree. A
    folder that exists already is left as it is (it may be the user's, tracked on purpose).
    Sessions started at the same moment may both find no folder: the one whose ``mkdir``
    creates it writes the ``.gitignore``, the others go on with the folder it made.
    Every folder created on the way gets one too: ``trials/`` made as the parent of ``trials/debug``
    would otherwise show the store and the report of a later run into ``trials`` as untracked.
    Raises ``OSError`` (a file in the way, no permission) for the caller to explain.
    """
    if folder.is_dir():
        return
    created = []
    parent = folder
    while not os.path.lexists(parent) and parent != parent.parent:
        created.append(parent)
        parent = parent.parent
    try:
        folder.mkdir(parents=True)
    except FileExistsError:
        if folder.is_dir():
            return  # another session created it a moment ago (and writes its .gitignore)
        raise
    if gitignore:
        for made in created:
            tmp = made / f".gitignore.{os.getpid()}.tmp"
            tmp.write_text(GITIGNORE, encoding="utf-8")
            os.replace(tmp, made / ".gitignore")


def leftover_staging(trials: Path) -> list[str]:
    """Keys of the staging folders in ``trials`` (each is a trial that never finished writing)."""
    try:
        return sorted(p.name for p in (trials / STAGING).iterdir() if p.is_dir() and not p.is_symlink())
    except OSError:
        return []


def remove_staging(trials: Path, key: str) -> None:
    """Remove one trial's staging folder (``key`` as :func:`leftover_staging` listed it; its trial is over)."""
    shutil.rmtree(trials / STAGING / key, ignore_errors=True)


class SavingTimedOut(Exception):
    """Writing a trial's notebook and HTML page took longer than ``--mitosis-timeout``."""

    def __init__(self, timeout: float) -> None:
        super().__init__(f"timed out after {timeout:g} s")
        self.timeout = timeout


@dataclass(frozen=True)
class TrialFolder:
    """Where one trial's files go; ``name`` is the mitosis trial name used for the files."""

    trials: Path
    key: str
    name: str
    debug: bool

    @property
    def staging(self) -> Path:
        return self.trials / STAGING / self.key

    @property
    def final(self) -> Path:
        parent = self.trials / DEBUG if self.debug and self.trials.name != DEBUG else self.trials
        return parent / f"{self.name}_{self.key}"

    @property
    def html(self) -> Path:
        """The HTML's path once the trial is complete (what reports name)."""
        return self.final / f"{self.name}.html"

    @property
    def kernel_log(self) -> Path:
        """What the kernel's (and its processes') descriptors 1 and 2 received, when anything (see :mod:`.launch`)."""
        return self.staging / "kernel.log"

    @property
    def html_staged(self) -> Path:
        return self.staging / f"{self.name}.html"

    def create(self) -> None:
        self.staging.mkdir(parents=True, exist_ok=False)

    def discard(self) -> None:
        """Remove the staging folder and whatever it holds (the trial could not be completed)."""
        shutil.rmtree(self.staging, ignore_errors=True)

    def read_outcome(self) -> dict[str, Any]:
        """What the kernel's runtime last wrote; empty when the kernel never got that far."""
        try:
            data = json.loads((self.staging / "outcome.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def save(
        self,
        nb: Any,
        outcome: dict[str, Any],
        description: dict[str, Any],
        html: Any = None,
        timeout: float | None = None,
        later: bool = False,
    ) -> Path:
        """Write the notebook, its HTML, the outcome and ``trial.yaml``, then move the folder into place.

        ``html`` writes the notebook and its page (an :class:`HtmlWriter`, or the helper process of
        :mod:`.htmlworker`, which writes them while this writes the rest); the folder moves only once
        all are complete, and never while the helper still writes into it. The helper gets
        ``timeout`` seconds (:class:`SavingTimedOut`; the folder stays in staging).

        ``later`` (with the helper): the folder moves once the notebook is complete, and the helper
        renders the page into it in the background (the trial is recorded meanwhile: the record needs
        the notebook, the page can always be built from it); the helper's ``finish`` waits for it.
        """
        notebook = self.staging / f"{self.name}.ipynb"
        background = later and hasattr(html, "page_later")
        with profile.timed("notebook handed to the HTML helper"):
            if background:
                written = html.save(nb, notebook, self.name, timeout=timeout)
            elif timeout is None:
                written = (html or HtmlWriter()).write(nb, notebook, self.html_staged, self.name)
            else:
                written = (html or HtmlWriter()).write(nb, notebook, self.html_staged, self.name, timeout=timeout)
        try:
            with profile.timed("trial.yaml and outcome.json"):
                with (self.staging / "trial.yaml").open("w", encoding="utf-8") as stream:
                    yaml.dump(
                        plain_yaml(description),
                        stream,
                        Dumper=_PlainDumper,
                        sort_keys=False,
                        allow_unicode=True,
                        width=100,
                    )
                tmp = self.staging / "outcome.json.tmp"
                tmp.write_text(json.dumps(outcome, indent=2, default=repr), encoding="utf-8")
                os.replace(tmp, self.staging / "outcome.json")
        except BaseException:
            try:
                written()  # the helper is done with the folder before the caller removes it
            except Exception:
                pass  # the first problem (a full disk, a Ctrl-C) is the one reported
            raise
        with profile.timed("waiting for the notebook" if background else "waiting for the notebook and HTML page"):
            written()
        with profile.timed("folder moved into place"):
            self.final.parent.mkdir(parents=True, exist_ok=True)
            os.rename(self.staging, self.final)
        if background:
            with profile.timed("page asked for"):
                html.page_later(self.final / notebook.name, self.html, self.name, timeout=timeout, saved_as=notebook)
        return self.final


class _PlainDumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """YAML without anchors and aliases (``&id001``/``*id001``): every value written where it is.

    libyaml's emitter when PyYAML has it (the same text, a fifth of the time: ``trial.yaml`` was
    about 10 ms of every trial in pytest's process), else PyYAML's own.
    """

    def ignore_aliases(self, data: Any) -> bool:
        return True


def plain_yaml(value: Any) -> Any:
    """``value`` as plain YAML (mappings, lists, numbers, text), recorded parameter values decoded.

    Parameter records hold canonical trees (``{"dict": [[k, v], ...]}``); a person reading
    ``trial.yaml`` wants ``{k: v}``. Tuples and sets become lists, arrays nested lists, keys
    that YAML cannot hold as keys their text, and anything else its ``str``.
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {
            (k if isinstance(k, (str, int, float, bool)) else str(k)): (
                [_param_yaml(p) for p in v] if k == "params" and isinstance(v, list) else plain_yaml(v)
            )
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [plain_yaml(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((plain_yaml(v) for v in value), key=repr)
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return plain_yaml(tolist())
    return str(value)


def _param_yaml(record: Any) -> Any:
    if not isinstance(record, dict) or "value" not in record:
        return plain_yaml(record)
    from ..store.readers import decode

    try:
        value = plain_yaml(decode(record["value"]))
    except Exception:  # a tree this version cannot decode: keep it as recorded
        value = plain_yaml(record["value"])
    return {**{k: plain_yaml(v) for k, v in record.items() if k != "value"}, "value": value}


def _written() -> None:
    """What is left to wait for once a page was written in this process: nothing."""


class HtmlWriter:
    """nbconvert's HTML exporter (made cheap: :mod:`.page`), prepared once and reused for every trial.

    A session's trials use the helper process of :mod:`.htmlworker`, which holds one of these;
    in this process it writes the pages when the helper is unusable, and those of reproductions.
    Importing nbconvert and compiling its templates costs about half a second: :meth:`prepare`
    is then called while the first trial's kernel boots (in its own process). It runs in the
    main thread: imports in a thread race pytest's logging plugin (see execution/warmup.py).
    """

    def __init__(self) -> None:
        self._exporter: Any = None

    def prepare(self) -> None:
        if self._exporter is None:
            import nbformat.v4 as v4

            from .logs import quiet
            from .page import TrialPageExporter

            exporter = TrialPageExporter(log=quiet("html"))
            exporter.from_notebook_node(v4.new_notebook(cells=[v4.new_code_cell("")]))  # compile the templates
            self._exporter = exporter

    def __call__(self, nb: Any, title: str = "Notebook") -> str:
        """A self-contained HTML page of the executed notebook (figures are inline PNG data)."""
        self.prepare()
        try:
            body, _ = self._exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
        finally:
            # nbconvert's exporter keeps every notebook's metadata it converted, keyed by its name
            # (``Exporter._nb_metadata``, read by the widgets filter of the page being rendered, never
            # after): each trial's title is new, so a helper that renders a sweep's pages kept them all,
            # about 30 kB a trial (its environment record). Forget them once the page is rendered.
            kept = getattr(self._exporter, "_nb_metadata", None)
            if isinstance(kept, dict):
                kept.clear()
        return str(body)

    def write(
        self, nb: Any, notebook: Path, page: Path, title: str, timeout: float | None = None
    ) -> Callable[[], None]:
        """Write ``nb`` to ``notebook`` and its HTML to ``page`` now; returns the (nothing left to) wait.

        ``timeout`` cannot bound work done in this process; it is accepted as the helper's is.
        """
        import nbformat

        with profile.timed("notebook save"):
            nbformat.write(nb, str(notebook))
        with profile.timed("HTML page"):
            write_whole(page, self(nb, title))
        return _written

    def save(self, nb: Any, notebook: Path) -> Callable[[], None]:
        """Write ``nb`` to ``notebook`` now (its page is written by :meth:`page`)."""
        import nbformat

        nbformat.write(nb, str(notebook))
        return _written

    def page(self, notebook: Path, page: Path, title: str) -> None:
        """Render the notebook written at ``notebook`` to ``page`` (whole: see :func:`write_whole`)."""
        import nbformat

        write_whole(page, self(nbformat.read(str(notebook), as_version=4), title))


def _partial(page: Path) -> Path:
    """Where ``page`` is written before it is renamed into place (hidden, named by the writing process)."""
    return page.with_name(f".{page.name}.{os.getpid()}.tmp")


def write_whole(page: Path, text: str) -> None:
    """Write ``text`` to ``page`` under a temporary name, then rename it: a reader (or a crash) never sees
    half a page, only none or all of it."""
    tmp = _partial(page)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, page)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise


def remove_partial(page: Path) -> None:
    """Remove what a stopped writer left of ``page`` under a temporary name (see :func:`write_whole`)."""
    for tmp in page.parent.glob(f".{page.name}.*.tmp"):
        try:
            tmp.unlink()
        except OSError:
            pass


def placeholder_page(page: Path, title: str, message: str) -> None:
    """A short page where nbconvert's should be, saying why it is not (``message``), written whole."""
    import html

    write_whole(
        page,
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1><p>{html.escape(message)}</p></body></html>\n",
    )


def without_outputs(nb: Any, note: str) -> Any:
    """A copy of ``nb`` with no cell outputs, ``note`` (markdown) first: what a trial whose notebook
    could not be written in time keeps (its cells, and why their outputs are missing)."""
    import copy

    import nbformat.v4 as v4

    bare = copy.copy(nb)
    bare.cells = []
    for cell in nb.cells:
        cell = copy.copy(cell)
        if cell.get("cell_type") == "code":
            cell.outputs = []
        bare.cells.append(cell)
    bare.cells.insert(0, v4.new_markdown_cell(note))
    return bare


class PlainPage:
    """Writes a notebook and, instead of nbconvert's page, a short HTML page saying why: for a trial
    whose page could not be written within ``--mitosis-timeout``."""

    def __init__(self, message: str) -> None:
        self.message = message

    def write(self, nb: Any, notebook: Path, page: Path, title: str) -> Callable[[], None]:
        import html

        import nbformat

        nbformat.write(nb, str(notebook))
        write_whole(
            page,
            f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
            f"<body><h1>{html.escape(title)}</h1><p>{html.escape(self.message)}</p>"
            f"<p>The notebook <a href='{html.escape(notebook.name)}'>{html.escape(notebook.name)}</a> holds the "
            "trial's cells, without their outputs.</p></body></html>\n",
        )
        return _written
