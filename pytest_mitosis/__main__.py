"""``python -m pytest_mitosis``: see :mod:`pytest_mitosis.views.cli`."""

from pytest_mitosis.views.cli import main

raise SystemExit(main())
