"""featurelab: `streamlit run app.py`. Declares the pages, grouped by what they are for;
each page only renders.

The pages live in app_pages/, not pages/: Streamlit treats a folder named pages/ as an
old-style multipage app and runs a deep-linked page (/search on a fresh server, and every
AppTest run) by itself, without this file's page config and navigation."""
import streamlit as st

from components.preload import preload_plotly
from components.state import ACTIVITY, warm_up

st.set_page_config(page_title="featurelab", page_icon=":material/scatter_plot:", layout="wide")


def page(file: str, title: str, icon: str, *, default: bool = False) -> st.Page:
    """A page of app_pages/; its URL path comes from the file name (/search, /feature_sets...)."""
    return st.Page(f"app_pages/{file}", title=title, icon=f":material/{icon}:", default=default)


# Section -> pages, in menu order; Home is the default page (the app's root URL).
sections = {
    "Data": [
        page("home.py", "Home", "home", default=True),
        page("datasets.py", "Datasets", "photo_library"),
        page("upload.py", "Upload", "upload"),
        page("export.py", "Export and import", "import_export"),
    ],
    "Vectors": [
        page("feature_sets.py", "Feature sets", "dataset"),
        page("embed.py", "Embed", "memory"),
    ],
    "Explore": [
        page("search.py", "Search", "search"),
        page("map.py", "Map", "scatter_plot"),
        page("clusters.py", "Clusters", "bubble_chart"),
        page("compare.py", "Compare sets", "compare_arrows"),
    ],
    "Curate": [page("duplicates.py", "Duplicates and outliers", "content_copy")],
    "Chroma": [page("collections.py", "Chroma collections", "database")],
}
with ACTIVITY.serving():  # the warm-up and the index worker wait while a run is in progress
    st.navigation(sections).run()
preload_plotly()
warm_up()  # after the first page is drawn, never before it
