"""app_launcher.py (how scripts/app and the browser tests start the app): the first page's
imports are done before Streamlit starts, and nothing slow beyond them (the warm-up's)."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROBE = """
import json, sys
import app_launcher
app_launcher.preload()
print(json.dumps(sorted(sys.modules)))
"""


def test_preload_imports_the_first_pages_modules_and_not_the_warm_ups():
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         check=True).stdout
    loaded = set(json.loads(out.splitlines()[-1]))
    # pandas for st.dataframe, plotly's figure classes for the hidden preload chart, the store.
    assert {"pandas", "pyarrow", "plotly.graph_objs._figure", "plotly.graph_objs._scattergl", "store",
            "store.analysis.projection"} <= loaded
    # chromadb, torch and the models come later, from the warm-up thread (seconds of server start otherwise).
    assert not {"chromadb", "torch", "sentence_transformers", "umap", "numba"} & loaded
