"""The report's Jinja2 environment: every page is a template of ``templates/``, escaped by default.

A store is a file a colleague can hand you, so every recorded text is untrusted. The
environment autoescapes every ``.html.j2`` template: ``{{ value }}`` is HTML-escaped, quotes
included, so it is safe in an attribute too. Data handed to a page's script goes through
``|tojson``, whose JSON cannot close the ``<script>`` element it sits in (``<``, ``>``, ``&``
and ``'`` as ``\\u`` escapes, by :func:`.html.script_json` and Jinja2; NaN and infinities as
``null``). ``|safe`` and :class:`~markupsafe.Markup` are only for HTML that these templates
rendered themselves (an index row kept for the next refresh, an environment's section shared
by many trial pages), and each place says so. A variable that a template names and its caller
did not give fails the render (``StrictUndefined``), so a test meets it.

Templates are laid out for reading, pages for the browser (:class:`Spaceless`): a line break
and the indentation after it are dropped next to markup (after ``>``, ``%}`` or ``#}``, before
``<``, ``{%`` or ``{#``) and are one space inside running text (between words, or a word and a
``{{ }}``), as a browser reads text. So a template puts each element on a line of its own without
adding text between elements (where text would show: between inline elements, in a cell the
page's script sorts by its text), and a space next to a tag is written on the tag's line. Every
``{{ }}`` and ``{% %}`` stays on one line.

A build makes one environment (:func:`environment`) and hands it to every page it writes;
its templates are compiled once, at their first use, and the child that :mod:`.pages` forks
inherits them.
"""

from __future__ import annotations

import re
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from jinja2.ext import Extension

from .html import page_name, script_json, trial_href

#: where the templates are (package data: ``pyproject.toml``'s ``[tool.setuptools.package-data]``)
TEMPLATES = Path(__file__).parent / "templates"

_LINE_BREAK = re.compile(r"\n\s*")
_AFTER_MARKUP = (">", "%}", "#}")
_BEFORE_MARKUP = ("<", "{%", "{#")


class Spaceless(Extension):
    """Drop a template's line breaks (with the indentation after them) next to markup, make them one space in text."""

    def preprocess(self, source: str, name: str | None, filename: str | None = None) -> str:
        def joined(found: re.Match[str]) -> str:
            start, end = found.start(), found.end()
            at_markup = source.endswith(_AFTER_MARKUP, 0, start) or source.startswith(_BEFORE_MARKUP, end)
            return "" if start == 0 or end == len(source) or at_markup else " "

        return _LINE_BREAK.sub(joined, source)


def environment() -> Environment:
    """The environment a build renders every page with (made once per build)."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=True),
        undefined=StrictUndefined,
        extensions=[Spaceless],
        auto_reload=False,  # the package's templates do not change while a build runs
    )
    # |tojson: our JSON (NaN as null, anything else as its text, U+2028/9 escaped), then Jinja2's escapes
    env.policies["json.dumps_function"] = script_json
    env.policies["json.dumps_kwargs"] = {}
    env.filters["page_name"] = page_name
    env.globals["trial_href"] = trial_href
    return env
