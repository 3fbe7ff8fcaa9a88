"""A logger for the Jupyter machinery (nbclient, jupyter_client, nbconvert) that goes nowhere.

They log what our own messages already say ("Kernel died while waiting for execute reply",
"Could not destroy zmq context", "Alternative text is missing on 1 image(s)"); pytest would
print those records under every failing trial. No pytest import here.
"""

from __future__ import annotations

import logging


def quiet(name: str) -> logging.Logger:
    logger = logging.getLogger(f"pytest_mitosis.{name}")
    # Disabled, not merely non-propagating: pytest 9 attaches its capture handler to
    # non-propagating loggers too.
    logger.disabled = True
    return logger
