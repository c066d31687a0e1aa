"""featurelab: `streamlit run app.py`. Declares the pages; each page only renders.

The pages live in app_pages/, not pages/: Streamlit treats a folder named pages/ as an
old-style multipage app and runs a deep-linked page (/search on a fresh server, and every
AppTest run) by itself, without this file's page config and navigation."""
import streamlit as st

from components.preload import preload_plotly

st.set_page_config(page_title="featurelab", page_icon=":material/scatter_plot:", layout="wide")

pages = [
    st.Page("app_pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("app_pages/feature_sets.py", title="Feature sets", icon=":material/dataset:"),
    st.Page("app_pages/upload.py", title="Upload", icon=":material/upload:"),
    st.Page("app_pages/embed.py", title="Embed", icon=":material/memory:"),
    st.Page("app_pages/search.py", title="Search", icon=":material/search:"),
    st.Page("app_pages/map.py", title="Map", icon=":material/scatter_plot:"),
    st.Page("app_pages/clusters.py", title="Clusters", icon=":material/bubble_chart:"),
    st.Page("app_pages/compare.py", title="Compare sets", icon=":material/compare_arrows:"),
    st.Page("app_pages/duplicates.py", title="Duplicates and outliers", icon=":material/content_copy:"),
    st.Page("app_pages/collections.py", title="Chroma collections", icon=":material/database:"),
    st.Page("app_pages/export.py", title="Export and import", icon=":material/import_export:"),
]
st.navigation(pages).run()
preload_plotly()
