"""Shared fixtures: workspaces in tmp_path, and a real `chroma run` server for the
server path. Vector tests take ``ws`` and run once per backend."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The Dataloop SDK (dtlpy) keeps its cookie and logs under DATALOOP_PATH, read when it is
# first imported: point it at a temporary folder so no test touches the user's ~/.dataloop.
os.environ.setdefault("DATALOOP_PATH", tempfile.mkdtemp(prefix="featurelab-dtlpy-"))

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from store import Workspace  # noqa: E402
from tests.forkserver import run_store  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--long", action="store_true", default=False,
                     help="run the long reliability profiles (50 kills per job kind, many state-machine steps)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chroma_executable() -> str:
    local = Path(sys.executable).with_name("chroma")
    return str(local) if local.exists() else (shutil.which("chroma") or "chroma")


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory):
    """A real Chroma server (`chroma run`) on 127.0.0.1 for the whole session."""
    port = free_port()
    path = tmp_path_factory.mktemp("chroma-server")
    log = open(path / "server.log", "wb")
    proc = subprocess.Popen(
        [chroma_executable(), "run", "--path", str(path / "data"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"chroma run exited: {(path / 'server.log').read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        raise RuntimeError("chroma run did not start within 60 s")
    yield url
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(params=["embedded", "server"])
def chroma_url(request):
    """None for embedded Chroma, else the URL of the session's real server."""
    if request.param == "embedded":
        return None
    return request.getfixturevalue("chroma_server")


@pytest.fixture
def ws(tmp_path, chroma_url, monkeypatch):
    monkeypatch.delenv("FEATURELAB_CHROMA_URL", raising=False)
    w = Workspace.open(tmp_path / "ws", chroma_url=chroma_url)
    yield w
    w.close()


@pytest.fixture
def ws_embedded(tmp_path, monkeypatch):
    monkeypatch.delenv("FEATURELAB_CHROMA_URL", raising=False)
    w = Workspace.open(tmp_path / "ws")
    yield w
    w.close()


def png_bytes(width: int = 32, height: int = 24, color=(200, 30, 30)) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, format="PNG")
    return buf.getvalue()


def jpeg_bytes(width: int = 40, height: int = 30, color=(10, 120, 200)) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture
def run_cli(tmp_path):
    """Run `python -m store` in a process of its own against a workspace under tmp_path:
    forked from the preloaded interpreter of tests/forkserver.py (seconds of imports saved
    per run), or a fresh interpreter with ``fresh=True`` or an environment the preloaded one
    was not started with."""
    def run(*args: str, ok: bool = True, env_extra: dict | None = None, fresh: bool = False):
        env = {**os.environ, "PYTHONPATH": str(ROOT), "FEATURELAB_HOME": str(tmp_path / "cli-ws")}
        env.pop("FEATURELAB_CHROMA_URL", None)
        env.update(env_extra or {})
        proc = run_store(list(args), env, tmp_path, fresh=fresh)
        if ok and proc.returncode != 0:
            raise AssertionError(f"exit {proc.returncode}\nstdout:{proc.stdout}\nstderr:{proc.stderr}")
        return proc
    return run


@pytest.fixture(scope="session")
def ray_cluster():
    """A real Ray cluster for the session: ``ray start --head`` on 127.0.0.1 with two CPUs
    (tests/ray/cluster.py), its address yielded; stopped at the end, also after a failure."""
    from tests.ray.cluster import start_local_ray, stop_local_ray

    temp = Path(tempfile.mkdtemp(prefix="flray-", dir="/tmp"))  # short: Ray's socket paths are limited
    proc, address = start_local_ray(temp, num_cpus=2)
    try:
        yield address
    finally:
        try:
            import ray

            ray.shutdown()  # this process's own connection, if a test made one
        finally:
            stop_local_ray(proc)
            shutil.rmtree(temp, ignore_errors=True)
