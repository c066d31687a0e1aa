"""featurelab: `streamlit run app.py`. Declares the pages; each page only renders."""
import streamlit as st

st.set_page_config(page_title="featurelab", page_icon=":material/scatter_plot:", layout="wide")

pages = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
]
st.navigation(pages).run()
