"""Start and stop the real app (app_launcher.py: `streamlit run app.py`) on a free port of
127.0.0.1, and launch Debian's Chromium: shared by the browser tests and the benchmarks that
drive the app."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@dataclass
class AppServer:
    url: str
    home: Path  # the workspace the app opens
    log: Path
    up_s: float  # from starting the process to its first answer on /_stcore/health


def chromium_path() -> str | None:
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(proc: subprocess.Popen, url: str, log_path: Path, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited early:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return
        except OSError:
            pass
        if time.time() > deadline:
            proc.kill()
            raise RuntimeError(f"streamlit did not answer /_stcore/health in {timeout:.0f} s:\n"
                               f"{log_path.read_text()[-3000:]}")
        time.sleep(0.3)


@contextmanager
def running_app(home: Path, log_path: Path, *, upload_limit_mb: int | None = None,
                warm_numba: bool = True, warm_models: bool = True, script: Path | None = None
                ) -> Iterator[AppServer]:
    """The app over the workspace ``home``, offline, until the block ends; ``script`` runs
    another Streamlit script instead of app.py (a benchmark's bare page, say)."""
    port = free_port()
    env = {**os.environ, "FEATURELAB_HOME": str(home), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONPATH": str(ROOT), "FEATURELAB_WARM_NUMBA": "1" if warm_numba else "0",
           "FEATURELAB_WARM_MODELS": "1" if warm_models else "0"}
    env.pop("FEATURELAB_CHROMA_URL", None)
    # The app starts as scripts/app starts it (app_launcher.py: `streamlit run app.py` after the imports).
    command = [sys.executable, "-m", "streamlit", "run", str(script)] if script else [sys.executable, "app_launcher.py"]
    args = [*command, "--server.port", str(port),
            "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--server.fileWatcherType", "none"]
    if upload_limit_mb is not None:
        args += ["--server.maxUploadSize", str(upload_limit_mb)]
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        started = time.perf_counter()
        proc = subprocess.Popen(args, cwd=script.parent if script else ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_healthy(proc, url, log_path)
            yield AppServer(url, home, log_path, time.perf_counter() - started)
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
