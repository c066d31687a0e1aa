"""The app's safe defaults, as shipped in .streamlit/config.toml and seen by Streamlit."""
import tomllib
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parents[2]


def test_safe_defaults_in_the_config_file():
    server = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())["server"]
    assert server["address"] == "127.0.0.1"  # bound to this machine unless the user says otherwise
    assert server["enableXsrfProtection"] is True
    assert isinstance(server["maxUploadSize"], int) and 1 <= server["maxUploadSize"] <= 1024


def test_streamlit_reads_them(open_page):
    open_page("app_pages/upload.py")  # the app, run from the repository root, loads the file
    assert st.get_option("server.address") == "127.0.0.1"
    assert st.get_option("server.enableXsrfProtection") is True
    assert st.get_option("server.maxUploadSize") == tomllib.loads(
        (ROOT / ".streamlit" / "config.toml").read_text())["server"]["maxUploadSize"]
    assert st.get_option("client.showErrorDetails") == "type"
