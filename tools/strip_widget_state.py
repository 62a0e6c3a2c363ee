"""Remove live-widget state from stored notebooks (it is useless on GitHub and bloats the file).

Usage: python tools/strip_widget_state.py notebooks/*.ipynb
"""

import sys

import nbformat

WIDGET = "application/vnd.jupyter.widget-view+json"

for path in sys.argv[1:]:
    nb = nbformat.read(path, as_version=4)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if WIDGET not in o.get("data", {})]
    nbformat.write(nb, path)
