"""featurelab's app server: `python app_launcher.py [streamlit options]` is `streamlit run
app.py [options]` (Streamlit's own command line, same flags), with what a new server's first
page would import done before the server listens. Without it the first session's first run
paid them: Home in a new server imported pandas (0.8 to 0.9 s on this 2-core machine;
`st.dataframe` imports it even for a pyarrow table), built plotly's figure classes for the
hidden preload chart, imported the store and the projection module (the warm-up's numba
cache folder), and Streamlit's first element walked `inspect.stack()` (0.1 s: inspect's
module index over ~1,800 modules). bench/app_clicks.py, "Home in a new server", measures it.

Not imported here: chromadb (1.5 to 2.4 s; the workspace opens Chroma at its first use, and
the app's warm-up imports it in the background) and torch with the models (the warm-up's,
after the first page)."""
from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path

APP = Path(__file__).resolve().parent / "app.py"
FIRST_RUN_MODULES = ("pyarrow", "pandas", "plotly.graph_objects", "store", "store.analysis.projection")


def preload() -> None:
    """Import what every first page needs, so that no session's run pays it."""
    for name in FIRST_RUN_MODULES:
        importlib.import_module(name)
    import plotly.graph_objects as go

    go.Figure(go.Scattergl())  # plotly loads its figure classes lazily, at the first figure
    inspect.stack()  # fills inspect's module-by-file index once (Streamlit's REPL check walks the stack)


def main(argv: list[str]) -> None:
    """Preload, then hand over to `streamlit run app.py` with ``argv`` (it never returns)."""
    preload()
    from streamlit.web import cli

    cli.main(["run", str(APP), *argv], prog_name="streamlit")


if __name__ == "__main__":
    main(sys.argv[1:])
