"""Write or refresh the report: what is new once, the pages that summarise everything again.

A finished trial never changes, so its page, its figures and its compare data are written
once (a trial still running gets them at a later refresh); the index and the experiment
pages are rewritten on every refresh. Which trial pages exist is read with one directory
listing, so a refresh over 10,000 trials costs reading the records and writing the
summaries (``benchmarks/report_build.py``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from jinja2 import Environment
from markupsafe import Markup

from ...config.project import load_project
from ...core.errors import MitosisError
from ...core.rules import parse_hypothesis
from ...store import Reader, StoreURL, TrialRecord, valid_key
from . import summaries
from .assets import write_assets
from .compare import compare_html, write_compare
from .compare_data import write_data
from .experiment import experiment_page
from .figures import extract, listing, notebook_file
from .html import href, page_name, write
from .index import index_page
from .pages import write_pages
from .render import environment
from .summaries import TrialSummary
from .trial import trial_page

REPORT = "report"
#: the layout of the pages written once; a report folder of another layout (an older
#: pytest-mitosis) gets every trial page again, so no trial keeps a page without its figures
FORMAT = "3"
#: the layout of the summary pages (the index, the experiment pages): another one (an older
#: pytest-mitosis wrote them, without the grouped views) rewrites them at the next refresh, once
SUMMARY_LAYOUT = "2"


def directions(trials_folder: Path) -> dict[str, bool]:
    """Whether higher main is better, per experiment, from the pyproject whose trials folder this is.

    For trials that recorded their directions, the report reads those (see :func:`build`): this
    is for an experiment whose trials recorded none. The ``higher-is-better`` of the experiment (else
    of ``[tool.mitosis]``) decides (as for ``--mitosis-benchmark-json``);
    without it, a hypothesis that bounds main from below (``expect = "main > 0.9"``) means
    higher is better; otherwise lower is (the drift gate's default). The pyproject is the
    current directory's or the trials folder's parent's, used only when its trials folder
    is this one; without one every experiment reads lower-is-better.
    """
    folder = trials_folder.resolve()
    try:
        here = Path.cwd()
    except OSError:  # the current directory was removed
        here = folder.parent
    for pyproject in dict.fromkeys((here / "pyproject.toml", folder.parent / "pyproject.toml")):
        if not pyproject.is_file():
            continue
        try:
            project = load_project(pyproject)
        except (MitosisError, OSError, ValueError):
            continue
        if project.trials_folder.resolve() != folder:
            continue
        found = {}
        for name, experiment in project.experiments.items():
            hypothesis = parse_hypothesis(experiment.expect) if experiment.expect else None
            bounded = hypothesis is not None and hypothesis.name == "main" and hypothesis.op in (">", ">=")
            rule = experiment.higher_is_better if experiment.higher_is_better is not None else project.higher_is_better
            found[name] = project.directions(name)("main") if rule is not None else bounded
        return found
    return {}


def host(reader: Reader, record: TrialRecord) -> str:
    """The host that ran the trial, from its environment record (read once per environment)."""
    name = reader.environment(record).get("hostname")
    return name if isinstance(name, str) and name else "-"


class Site:
    """The report folder being written: the trial pages already there, so each new trial is written once,
    and the summaries of the trials (:mod:`.summaries`), so a refresh reads only what changed."""

    def __init__(self, reader: Reader, out: Path, env: Environment) -> None:
        self.reader = reader
        self.out = out
        self.env = env
        for folder in ("trials", "experiments", "data", "figures"):
            (out / folder).mkdir(parents=True, exist_ok=True)
        write_assets(out)
        marker = out / "assets" / "format"
        current = marker.is_file() and marker.read_text(encoding="utf-8").strip() == FORMAT
        listing = os.listdir(out / "trials")
        self.pages = {n for n in listing if not n.endswith(".tmp")} if current else set()
        _sweep_leftovers(out / "trials", listing)
        if not current:
            write(marker, FORMAT + "\n")
        self.environments: dict[str, Markup] = {}  # an environment's HTML, by digest (shared by many trials)
        self._signatures_path = out / "assets" / "pages.json"
        self.signatures: dict[str, str] = _json_object(self._signatures_path) if current else {}
        self._changed = False
        self._rows_path = out / "assets" / "rows.json"
        self.rows: dict[str, list[str]] = _json_object(self._rows_path) if current else {}
        self._summaries_path = out / "assets" / "trials.json"
        self.summaries = summaries.load(self._summaries_path) if current else {}
        self._summaries_changed = False

    def read(self) -> dict[str, TrialRecord]:
        """Bring the summaries up to date with the store; return the records read whole (new or changed trials).

        Every trial's state is read without decoding a record (:meth:`Reader.states`); a trial
        read whole is one that is new, whose state changed, or whose page is missing.
        """
        states = self.reader.states(debug=True)  # debug trials too: compare may name them
        gone = self.summaries.keys() - states.keys()
        for key in gone:
            del self.summaries[key]
        wanted = {
            key
            for key, state in states.items()
            if (known := self.summaries.get(key)) is None
            or known.state != state
            or (valid_key(key) and known.status != "running" and f"{key}.html" not in self.pages)
        }
        records = {r.key: r for r in self.reader.trials_with_keys(wanted)}
        for record in records.values():
            found = notebook_file(self.reader, record, ".html")
            notebook = href(found, self.out) if found is not None else None
            self.summaries[record.key] = summaries.summarize(record, host(self.reader, record), notebook)
        self._summaries_changed = bool(gone or records)
        return records

    def stale(self, path: Path, signature: str) -> bool:
        """Whether the summary page at ``path`` must be written (and note its new signature)."""
        name = path.relative_to(self.out).as_posix()
        if path.is_file() and self.signatures.get(name) == signature:
            return False
        self.signatures[name] = signature
        self._changed = True
        return True

    def save(self) -> None:
        """Keep the summary pages' signatures, their rows and the trials' summaries for the next refresh."""
        if self._changed:
            write(self._signatures_path, json.dumps(self.signatures, indent=0, sort_keys=True))
            write(self._rows_path, json.dumps(self.rows, separators=(",", ":")))
        if self._summaries_changed:
            write(self._summaries_path, summaries.dump(self.summaries))

    def trial(self, record: TrialRecord, previous: TrialRecord | None) -> None:
        """Write the trial's page and figures, unless there already (or the trial still runs)."""
        name = f"{record.key}.html"
        if not valid_key(record.key) or record.status == "running" or name in self.pages:
            return  # a crafted key never becomes a file name; a running trial is written when it ends
        figures = extract(self.reader, record, self.out)
        write(
            self.out / "trials" / name,
            trial_page(self.env, self.reader, record, previous, figures, self.out, self.environments),
        )
        self.pages.add(name)


#: a temporary page older than this is a leftover (a build killed while writing it), never another build's
LEFTOVER_SECONDS = 3600


def _sweep_leftovers(folder: Path, names: list[str]) -> None:
    """Remove the temporary pages a killed build left (``.KEY.html.*.tmp``); a recent one may be another
    build's, still being written, and is left alone."""
    now = time.time()
    for name in names:
        if name.startswith(".") and name.endswith(".tmp"):
            path = folder / name
            with contextlib.suppress(OSError):
                if now - path.lstat().st_mtime > LEFTOVER_SECONDS:
                    path.unlink()


def _json_object(path: Path) -> dict[str, Any]:
    """The JSON object kept at ``path`` (empty when missing or damaged: the pages it saves are rebuilt)."""
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _previous(records: Iterable[TrialSummary]) -> dict[str, TrialSummary | None]:
    """Each trial's previous trial of the same identity (by start), by key."""
    by_identity: dict[tuple[str, str], list[TrialSummary]] = defaultdict(list)
    for record in sorted(records, key=lambda r: r.started):
        by_identity[(record.experiment, record.identity)].append(record)
    found: dict[str, TrialSummary | None] = {}
    for history in by_identity.values():
        for before, record in zip([None, *history], history):
            found[record.key] = before
    return found


def _signature(records: list[TrialSummary], *extra: object) -> str:
    """What a summary page shows depends on: its trials' keys, statuses, verdicts and folders."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr((FORMAT, SUMMARY_LAYOUT, extra)).encode())
    for r in records:
        digest.update(f"{r.key}:{r.status}:{r.verdict}:{r.folder}\n".encode())
    return digest.hexdigest()


def build(
    trials_folder: Path, out: Path | None = None, debug: bool = False, store: str | StoreURL | None = None
) -> Path:
    """Write (or refresh) the site of the store ``store`` (a URL; ``None``: the trials folder's); return the index.

    Only the trials that are new or changed since the last refresh are read whole (:meth:`Site.read`);
    a summary page (the index, an experiment's page) is rewritten only when the trials it
    shows changed (:func:`_signature`, kept in ``assets/pages.json``): a session that ran one
    experiment rewrites the index and that experiment's page.
    """
    return _build(environment(), trials_folder, out, debug, store)


def _build(env: Environment, trials_folder: Path, out: Path | None, debug: bool, store: str | StoreURL | None) -> Path:
    with Reader(trials_folder, store) as reader:
        out = (out or trials_folder / REPORT).resolve()
        site = Site(reader, out, env)
        records = site.read()
        everything = sorted(site.summaries.values(), key=lambda r: (r.started, r.key), reverse=True)  # newest first
        new = [r for r in records.values() if f"{r.key}.html" not in site.pages]
        if new:
            previous = _previous(everything)
            before = {p.key for r in new if (p := previous[r.key]) is not None and p.key not in records}
            if before:
                records.update((r.key, r) for r in reader.trials_with_keys(before))
            pages = []
            for record in sorted(new, key=lambda r: r.started):
                earlier = previous[record.key]
                pages.append((record, records.get(earlier.key) if earlier is not None else None))
            env.get_template("trial.html.j2")  # compiled here, before write_pages may fork: not in both processes
            write_pages(site, pages)
        write_data(reader, everything, records, listing(out), out)
        shown = everything if debug else [r for r in everything if not r.debug]
        experiments = sorted({r.experiment for r in shown})
        newest: dict[str, Any] = {}
        higher = directions(trials_folder)
        for summary in shown:  # newest last: an experiment reads the direction its newest trial recorded
            if summary.higher is not None and summary.started >= newest.get(summary.experiment, summary.started):
                higher[summary.experiment] = summary.higher
                newest[summary.experiment] = summary.started
        by_experiment: dict[str, list[TrialSummary]] = defaultdict(list)
        for summary in shown:
            by_experiment[summary.experiment].append(summary)
        for experiment in experiments:
            path = out / "experiments" / f"{page_name(experiment)}.html"
            direction = higher.get(experiment, False)
            if site.stale(path, _signature(by_experiment[experiment], experiment, direction)):
                write(path, experiment_page(env, experiment, by_experiment[experiment], direction))
        compare_page = compare_html(env, "")
        if not (out / "compare.html").is_file() or (out / "compare.html").read_text(encoding="utf-8") != compare_page:
            write(out / "compare.html", compare_page)
        index = out / "index.html"
        if site.stale(index, _signature(shown, "index", debug, str(out))):
            write(index, index_page(env, shown, experiments, site.rows, reader.sessions()))
        site.save()
    return index


def compare(trials_folder: Path, keys: list[str], out: Path | None = None, store: str | StoreURL | None = None) -> Path:
    """Refresh the report, then write the compare page of the trials with these keys (or unique prefixes)."""
    with Reader(trials_folder, store) as reader:
        chosen = [reader.get(key) for key in keys]  # an unknown key fails before anything is written
    env = environment()
    _build(env, trials_folder, out, False, store)
    with Reader(trials_folder, store) as reader:
        return write_compare(env, reader, chosen, (out or trials_folder / REPORT).resolve())
