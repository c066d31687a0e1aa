"""Browser tests: Debian's Chromium driven by Playwright against a real `streamlit run
app.py` on 127.0.0.1, over a workspace in a temporary folder. Each test saves a screenshot
of its page under tests/artifacts/browser/ (git ignores tests/artifacts/)."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.browser.ui import shot

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
# The uploader's limit for this server (MB): small, so the test can cross it cheaply.
UPLOAD_LIMIT_MB = 5


def chromium_path() -> str | None:
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("browser-models")


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """`streamlit run app.py` on a free port of 127.0.0.1 with its own workspace."""
    home = tmp_path_factory.mktemp("browser-workspace")
    port = _free_port()
    log_path = home.parent / "streamlit.log"
    env = {**os.environ, "FEATURELAB_HOME": str(home / "ws"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONPATH": str(ROOT)}
    env.pop("FEATURELAB_CHROMA_URL", None)
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false",
         "--server.maxUploadSize", str(UPLOAD_LIMIT_MB), "--server.fileWatcherType", "none"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited early:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    break
        except OSError:
            pass
        if time.time() > deadline:
            proc.kill()
            raise RuntimeError(f"streamlit did not answer /_stcore/health in 90 s:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.3)
    yield {"url": url, "home": home / "ws", "log": log_path}
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="session")
def browser():
    path = chromium_path()
    if path is None:
        pytest.fail("Chromium is missing: `apt-get install -y chromium` (scripts/test does it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server, request):
    """A fresh browser tab on the app; a screenshot is saved when the test ends."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    context.set_default_timeout(30_000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.goto(server["url"])
    tab.get_by_role("heading", name="featurelab").wait_for()
    yield tab
    try:
        shot(tab, f"{request.node.name}-end")
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
