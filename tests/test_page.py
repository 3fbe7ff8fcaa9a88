"""A trial's HTML page (``execution/page.py``) is nbconvert's page, element for element.

The exporter skips work nbconvert repeats for every page (reading the theme, cleaning Pygments'
output with bleach, a BeautifulSoup pass over the whole page); these tests render the same
notebooks with nbconvert's own ``HTMLExporter`` and compare what a reader's browser gets: every
element with its attributes, and the text.
"""

from __future__ import annotations

from pathlib import Path

import nbformat.v4 as v4
import pytest
from bs4 import BeautifulSoup
from nbconvert import HTMLExporter

from pytest_mitosis.execution.artifacts import HtmlWriter
from pytest_mitosis.execution.page import NO_ALT, TrialPageExporter, focusable

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


def trial_like() -> object:
    """A notebook shaped like a trial's: a header, set-up, a step with every kind of output, saving."""
    nb = v4.new_notebook(
        metadata={"language_info": {"name": "python", "pygments_lexer": "ipython3"}},
        cells=[
            v4.new_markdown_cell("# Trial `sine`\n\n| variant | value |\n|---|---|\n| frequency | *slow* |"),
            v4.new_code_cell("import numpy as np\nseed = 7  # set-up", execution_count=1),
            v4.new_code_cell(
                "results = run(frequency=1)\nprint('done')\ndisplay(fig)",
                execution_count=2,
                outputs=[
                    v4.new_output("stream", name="stdout", text="done\n<b>not bold</b>\n"),
                    v4.new_output("display_data", data={"image/png": PNG, "text/plain": "<Figure>"}),
                    v4.new_output(
                        "execute_result",
                        data={"text/html": '<table class="dataframe"><tr><td>1</td></tr></table>', "text/plain": "x"},
                        execution_count=2,
                    ),
                    v4.new_output(
                        "error", ename="ValueError", evalue="bad", traceback=["\x1b[31mValueError\x1b[0m: bad"]
                    ),
                ],
            ),
            v4.new_code_cell("</div><script>alert('source')</script>", execution_count=3),
        ],
    )
    return nb


def elements(html: str) -> list[tuple[str, list[tuple[str, str]]]]:
    soup = BeautifulSoup(html, "html.parser")
    return [
        (tag.name, sorted((k, " ".join(v) if isinstance(v, list) else v) for k, v in tag.attrs.items()))
        for tag in soup.find_all()
    ]


def test_the_page_is_nbconverts_element_for_element() -> None:
    nb = trial_like()
    theirs, _ = HTMLExporter().from_notebook_node(nb, resources={"metadata": {"name": "trial_sine-slow-1"}})
    exporter = TrialPageExporter()
    for _ in range(2):  # the second page is built from what the first read once
        ours, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": "trial_sine-slow-1"}})
        assert elements(ours) == elements(theirs)
        assert BeautifulSoup(ours, "html.parser").get_text() == BeautifulSoup(theirs, "html.parser").get_text()
    # what nbconvert's pass adds: alt text on the figure, inputs and outputs reachable by keyboard
    assert f'alt="{NO_ALT}"' in ours
    assert ours.count('tabindex="0"') == theirs.count('tabindex="0"') >= 7


def test_a_code_cell_cannot_inject_markup() -> None:
    """Pygments escapes what it highlights: the page has no cleaning pass over it and needs none."""
    page = HtmlWriter()(trial_like(), "trial")
    body = page[page.index("<body") :]
    assert "<script>alert" not in body
    assert "alert(" in BeautifulSoup(body, "html.parser").get_text()


def written_oddly() -> object:
    """Outputs whose images and cells are written as an author or a library may write them."""
    html = (
        '<img src="a.png"><IMG ALT="up" SRC="b.png"><img data-alt="d" src="c.png"><img alt src="e.png">'
        '<img alt = "spaced" src="f.png"><img title="a>b" alt="g" src="g.png"><img-viewer src="h"></img-viewer>'
        '<img\nsrc="nl.png"><div class=\'jp-Cell-inputWrapper\'>single</div><DIV CLASS="jp-OutputArea-output">up'
        "</DIV><div class=jp-OutputArea-output>unquoted</div><!-- <img src=comment> -->"
        '<script>document.body.innerHTML += "<img src=" + "s.png" + ">";</script><style>/* <img src=st> */</style>'
    )
    return v4.new_notebook(
        metadata={"language_info": {"name": "python", "pygments_lexer": "ipython3"}},
        cells=[
            v4.new_code_cell(
                "x = '\x00nul \x1b[31m escape \x07 bell \x0c'\nshow(x)",
                execution_count=1,
                outputs=[v4.new_output("display_data", data={"text/html": html, "text/plain": "x"})],
            )
        ],
    )


def test_images_and_cells_written_oddly_get_what_nbconvert_gives_them() -> None:
    """An author's ``alt``, however written, is kept; a script's strings are not edited."""
    nb = written_oddly()
    theirs, _ = HTMLExporter().from_notebook_node(nb, resources={"metadata": {"name": "odd"}})
    ours, _ = TrialPageExporter().from_notebook_node(nb, resources={"metadata": {"name": "odd"}})
    assert elements(ours) == elements(theirs)
    assert BeautifulSoup(ours, "html.parser").get_text() == BeautifulSoup(theirs, "html.parser").get_text()
    assert '"<img src=" + "s.png" + ">"' in ours  # a script that still runs
    images = {img.get("src"): img.get("alt") for img in BeautifulSoup(ours, "html.parser").find_all("img")}
    assert images == {"a.png": NO_ALT, "b.png": "up", "c.png": NO_ALT, "e.png": "", "f.png": "spaced"} | {
        "g.png": "g",
        "nl.png": NO_ALT,
    }
    # control characters pasted into a cell: bleach's ``?`` (or nothing), as in nbconvert's page
    assert "nul ?[31m escape ? bell" in BeautifulSoup(ours, "html.parser").get_text()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('<img src="a.png">', f'<img alt="{NO_ALT}" src="a.png">'),
        ('<img alt="mine" src="a.png">', '<img alt="mine" src="a.png">'),
        ('<div class="jp-OutputArea-output x">', '<div tabindex="0" class="jp-OutputArea-output x">'),
        ('<div class="x jp-Cell-inputWrapper">', '<div tabindex="0" class="x jp-Cell-inputWrapper">'),
        ('<div class="jp-OutputArea-outputs">', '<div class="jp-OutputArea-outputs">'),
        ('<div class="my-jp-OutputArea-output">', '<div class="my-jp-OutputArea-output">'),
        ("<DIV class='jp-OutputArea-output'>", "<DIV tabindex=\"0\" class='jp-OutputArea-output'>"),
        ('<img alt src="a.png"><img ALT = "x">', '<img alt src="a.png"><img ALT = "x">'),
        ('<img data-alt="d">', f'<img alt="{NO_ALT}" data-alt="d">'),
        ('<img-viewer src="a"></img-viewer>', '<img-viewer src="a"></img-viewer>'),
        ('<script>s = "<img src=" + u + ">"</script>', '<script>s = "<img src=" + u + ">"</script>'),
        ("<!-- <img src=a> --><textarea></textarea>", "<!-- <img src=a> --><textarea></textarea>"),
    ],
)
def test_focusable_marks_what_nbconvert_marks(body: str, expected: str) -> None:
    head = '<html><head><style>img { }</style><img src="head.png"></head>'
    page = focusable(f"{head}<body>{body}</body></html>")
    assert page == f"{head}<body>{expected}</body></html>"


def test_two_trials_of_one_name_each_get_the_page_of_their_own_notebook(tmp_path: Path) -> None:
    """The helper keeps the notebooks it saved for their pages: two trials of one name (two
    investigations in a session, a rerun) saved before either page is rendered keep their own."""
    from pytest_mitosis.execution.htmlworker import HtmlWorker

    worker = HtmlWorker()
    try:
        staged, final = {}, {}
        for key in ("0000aaaa", "0000bbbb"):
            nb = v4.new_notebook(cells=[v4.new_code_cell(f"print('run {key}')", execution_count=1)])
            staged[key] = tmp_path / ".staging" / key / "trial_same.ipynb"
            staged[key].parent.mkdir(parents=True)
            worker.save(nb, staged[key], "trial_same")()
        for key in staged:  # the folders move into place, then the pages are asked for
            final[key] = tmp_path / f"trial_same_{key}" / "trial_same.ipynb"
            staged[key].parent.rename(final[key].parent)
            worker.page_later(final[key], final[key].with_suffix(".html"), "trial_same", saved_as=staged[key])
        assert worker.finish() == []
    finally:
        worker.close()
    for key, notebook in final.items():
        text = BeautifulSoup(notebook.with_suffix(".html").read_text(encoding="utf-8"), "html.parser").get_text()
        assert f"run {key}" in text and text.count("run 0000") == 1, key


def test_a_template_may_include_a_script_as_a_module() -> None:
    """nbconvert's ``include_js`` takes ``module=``: read once too, as nbconvert gives it."""
    from jinja2 import DictLoader

    source = "{%- extends 'lab/index.html.j2' -%}{% block header %}{{ super() }}"
    source += "{{ resources.include_js('lab/static/index.css', module=True) }}{% endblock header %}"
    loader = DictLoader({"with-module.html.j2": source})
    nb = trial_like()
    theirs, _ = HTMLExporter(extra_loaders=[loader], template_file="with-module.html.j2").from_notebook_node(nb)
    exporter = TrialPageExporter(extra_loaders=[loader], template_file="with-module.html.j2")
    for _ in range(2):
        ours, _ = exporter.from_notebook_node(nb)
        assert '<script type="module">' in ours
        assert elements(ours) == elements(theirs)
