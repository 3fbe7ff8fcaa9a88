"""The floor of a trial: a fresh kernel (nbclient), one cell running the experiment, HTML (nbconvert).

Run from the investigation's directory; prints the phases as JSON on its last line. The cell
runs the sine example, or the code given as the first argument.
"""

from __future__ import annotations

import json
import sys
import time

started = time.perf_counter()
import nbformat.v4 as v4  # noqa: E402
from nbclient import NotebookClient  # noqa: E402
from nbconvert import HTMLExporter  # noqa: E402

imported = time.perf_counter()
CELL = """
import matplotlib.pyplot as plt
import sine_experiment
result = sine_experiment.run(4, 1)
plt.show()
"""
nb = v4.new_notebook(cells=[v4.new_code_cell(sys.argv[1] if len(sys.argv) > 1 else CELL)])
client = NotebookClient(
    nb, timeout=600, kernel_name="python3", shutdown_kernel="immediate", resources={"metadata": {"path": "."}}
)
with client.setup_kernel():
    ready = time.perf_counter()
    client.execute_cell(nb.cells[0], 0)
    ran = time.perf_counter()
body, _ = HTMLExporter().from_notebook_node(nb)
with open("floor.html", "w", encoding="utf-8") as stream:
    stream.write(body)
done = time.perf_counter()
print(
    json.dumps(
        {
            "imports": imported - started,
            "kernel start": ready - imported,
            "cell": ran - ready,
            "html": done - ran,
            "python": sys.version.split()[0],
        }
    )
)
