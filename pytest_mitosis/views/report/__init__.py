"""The static report: a self-contained site of every trial, with interactive charts that work offline.

``build`` writes or refreshes ``<trials>/report/``: an index (:mod:`.index`), one page per
experiment (:mod:`.experiment`), one per trial (:mod:`.trial`) with its figures
(:mod:`.figures`), and a compare page (:mod:`.compare`) fed by each trial's compare data
(:mod:`.compare_data`). Every page is a Jinja2 template of ``templates/`` (:mod:`.render`). Charts are plotly figure dicts (:mod:`.charts`) drawn by plotly.js, which
is copied once into the report folder (:mod:`.assets`): the site opens from a file browser,
needs no server and fetches nothing.

A store is a file a colleague can hand you, so nothing recorded is trusted: a page is
written only for a key of the key format (8 hex digits), links point only at artifact
folders inside the trials folder, are relative and percent-encoded (no ``javascript:``),
every text is HTML-escaped by the templates' autoescaping (:mod:`.render`) and data handed
to scripts cannot close them (:mod:`.html`).
Pages respect the umask. The store is read through :class:`pytest_mitosis.store.Reader`
only. No pytest import here.
"""

from __future__ import annotations

from .build import REPORT, build, compare

__all__ = ["REPORT", "build", "compare"]
