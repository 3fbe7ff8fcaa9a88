"""A trial's HTML page: nbconvert's ``lab`` page, rendered for a fraction of its usual cost.

Every trial gets a page, so at thousands of trials the page decides what a cheap trial costs:
nbconvert's ``HTMLExporter`` took about 24 ms of CPU for a four-cell trial notebook on this
machine kind, more than the trial's kernel. Three parts of that are the same work repeated:

- it re-reads the theme's CSS (and base64-encodes its fonts) for every page: read once here;
- it passes the code cells' Pygments output through ``bleach`` (about 7 ms a cell): Pygments
  escapes every character of the source it highlights, so there is nothing to clean. The page
  keeps nbconvert's cleaning wherever it applies to content (``should_sanitize_html``, raw cells);
- it parses the whole page (280 kB, most of it CSS) with BeautifulSoup to add ``alt`` text to
  images and ``tabindex`` to cells and outputs: done here on the page's body only, with the
  standard library's ``HTMLParser`` (the tokenizer BeautifulSoup's ``html.parser`` uses, so the same
  tags are found: not those in scripts, styles or comments, whatever their case or quoting) and the
  attributes inserted into the page's text where those tags start (no tree built, nothing
  re-serialized). Patterns over the text were tried first: they edited ``<img`` inside scripts
  (breaking a string such as ``"<img src=" + url + ">"``), gave ``<img-viewer>`` an ``alt``,
  overrode an author's ``alt`` written ``alt = "..."`` or ``alt`` alone, and missed
  ``class='jp-OutputArea-output'``.

Bleach did one thing to Pygments' output that a reader sees: control characters (a NUL, an
escape code pasted into a cell) dropped or made ``?``; :func:`visible` cleans the (rare) code
cells that have one.

The page is otherwise nbconvert's: same template (``lab``), same preprocessors, filters and
resources; ``tests/test_page.py`` compares it with nbconvert's own. About 6 ms a page.
This module imports nbconvert: it is imported only when the first page is rendered.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from html.parser import HTMLParser
from typing import Any

from jinja2 import DictLoader
from nbconvert import HTMLExporter
from nbconvert.exporters.templateexporter import TemplateExporter
from nbconvert.filters.highlight import Highlight2HTML
from nbconvert.filters.strings import clean_html
from nbconvert.filters.widgetsdatatypefilter import WidgetsDataTypeFilter

TEMPLATE = "mitosis-trial.html.j2"

#: nbconvert's lab page, but for the code cells' input: Pygments' output, not cleaned again
_SOURCE = """{%- extends 'lab/index.html.j2' -%}
{% block input %}
<div class="jp-CodeMirrorEditor jp-Editor jp-InputArea-editor" data-type="inline">
     <div class="cm-editor cm-s-jupyter">
{{ cell.source | highlight_code(metadata=cell.metadata) | bleach_visible }}
     </div>
</div>
{%- endblock input %}
"""

#: what ``HTMLExporter`` gives an image that has no ``alt`` text
NO_ALT = "No description has been provided for this image"
#: the classes of the ``div`` elements ``HTMLExporter`` makes focusable: cell inputs and outputs
_FOCUSABLE = frozenset({"jp-Cell-inputWrapper", "jp-OutputArea-output"})
#: what bleach may change in Pygments' output: C0 controls but tab and newlines (its ``INVISIBLE_CHARACTERS``)
_INVISIBLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")


class TrialPageExporter(HTMLExporter):
    """``HTMLExporter`` with its per-page repeated work done once (see the module's docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("extra_loaders", [DictLoader({TEMPLATE: _SOURCE})])
        kwargs.setdefault("template_file", TEMPLATE)
        super().__init__(**kwargs)
        self._included: dict[tuple[Any, ...], Any] = {}

    def _init_resources(self, resources: Any) -> Any:
        resources = super()._init_resources(resources)
        for key in ("include_css", "include_lab_theme", "include_js", "include_url"):
            include = resources.get(key)
            if callable(include):
                resources[key] = self._once(key, include)
        return resources

    def _once(self, key: str, include: Callable[..., Any]) -> Callable[..., Any]:
        """``include`` read once a name for every page (the files are the installed package's); its
        other arguments as nbconvert's take them (``include_js(name, module=True)``)."""

        def included(name: str, *args: Any, **kwargs: Any) -> Any:
            asked = (key, name, args, tuple(sorted(kwargs.items())))
            if asked not in self._included:
                self._included[asked] = include(name, *args, **kwargs)
            return self._included[asked]

        return included

    def default_filters(self) -> Iterable[tuple[str, Any]]:
        yield from super().default_filters()
        yield ("bleach_visible", visible)

    def from_notebook_node(  # type: ignore[override]  # a page, as HTMLExporter's (typed as its base's)
        self, nb: Any, resources: Any = None, **kwargs: Any
    ) -> tuple[str, Any]:
        # HTMLExporter.from_notebook_node without its BeautifulSoup pass over the whole page
        langinfo = nb.metadata.get("language_info", {})
        lexer = langinfo.get("pygments_lexer", langinfo.get("name", None))
        highlight_code = self.filters.get("highlight_code", Highlight2HTML(pygments_lexer=lexer, parent=self))
        resources = self._init_resources(resources)
        data_types = WidgetsDataTypeFilter(notebook_metadata=self._nb_metadata, parent=self, resources=resources)
        self.register_filter("highlight_code", highlight_code)
        self.register_filter("filter_data_type", data_types)
        html, resources = TemplateExporter.from_notebook_node(self, nb, resources, **kwargs)
        return focusable(html), resources


def visible(highlighted: str) -> str:
    """Pygments' output, cleaned by bleach as nbconvert does when that changes what a reader sees.

    Bleach's tokenizer drops a NUL and makes most other C0 controls a ``?`` (which ones depends
    on the text around them); source with none of them (nearly all) needs no cleaning.
    """
    return clean_html(highlighted) if _INVISIBLE.search(highlighted) else highlighted


class _Marks(HTMLParser):
    """Where the attributes ``HTMLExporter`` adds go: after the name of each tag that gets one."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=False)
        #: offset in ``text`` of each line's start (the parser gives a tag's line and column)
        self.lines = [0]
        at = text.find("\n")
        while at >= 0:
            self.lines.append(at + 1)
            at = text.find("\n", at + 1)
        #: ``(offset, attribute)``, in the text's order
        self.inserts: list[tuple[int, str]] = []

    def _insert(self, tag: str, attribute: str) -> None:
        line, column = self.getpos()  # where the tag's ``<`` is
        self.inserts.append((self.lines[line - 1] + column + 1 + len(tag), attribute))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            if all(name != "alt" for name, _ in attrs):
                self._insert(tag, f' alt="{NO_ALT}"')
        elif tag == "div":
            classes = [value.split() for name, value in attrs if name == "class" and value]
            if classes and _FOCUSABLE.intersection(classes[-1]):  # the last one, as BeautifulSoup
                self._insert(tag, ' tabindex="0"')

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)


def focusable(html: str) -> str:
    """``html`` with ``alt`` text on images that had none and ``tabindex`` on inputs and outputs.

    Only the body is scanned: the head is nbconvert's CSS and scripts.
    """
    start = html.find("<body")
    end = html.rfind("</body>")
    if start < 0 or end < start:
        return html
    body = html[start:end]
    marks = _Marks(body)
    marks.feed(body)
    marks.close()
    parts = [html[:start]]
    last = 0
    for at, attribute in marks.inserts:
        parts += (body[last:at], attribute)
        last = at
    parts += (body[last:], html[end:])
    return "".join(parts)
