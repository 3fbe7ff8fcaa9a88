"""The mitosis README's trivial example: is the maximum of a sine wave its amplitude?

Hypothesis: the maximum value of a sine wave equals its amplitude. ``main`` is the error.
"""

import logging

import matplotlib.pyplot as plt
import numpy as np

logger = logging.getLogger(__name__)

lookup_dict = {"frequency": {"fast": 10, "slow": 1}}


def run(amplitude, frequency):
    """Determine whether the maximum value of the sine function equals ``amplitude``."""
    x = np.arange(0, 10, 0.05)
    y = amplitude * np.sin(frequency * x)
    err = np.abs(max(y) - amplitude)
    logger.info("amplitude=%s frequency=%s error=%s", amplitude, frequency, err)
    plt.title("What's the maximum value of a sine wave?")
    plt.plot(x, y, label="trial data")
    plt.plot(x, amplitude * np.ones_like(x), label="expected")
    plt.legend()
    return {"main": err, "data": y, "metrics": {"max": float(max(y))}}
