"""``python -m pytest_mitosis``: see :mod:`pytest_mitosis.cli`."""

from pytest_mitosis.cli import main

raise SystemExit(main())
