"""Views: what users read, from the store and from outcomes; nothing here changes a trial.

Owns the terminal summary and junit properties (:mod:`.summary`), the CI files (Markdown
summary, github-action-benchmark JSON: :mod:`.ci`), the plain-text show and
diff of records (:mod:`.records_text`), the static HTML report (:mod:`.report`), the command
line ``python -m pytest_mitosis`` (:mod:`.cli`) and the Python API (:mod:`.api`, re-exported
by ``pytest_mitosis``). The pytest-html extras need pytest, so they live in the pytest layer
(:mod:`pytest_mitosis.pytest_layer.html_extras`).

May import: every stage below (core, config, identity, store, execution, checks). Never pytest.
"""
