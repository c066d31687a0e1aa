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
    """Run `python -m store` in a subprocess against a workspace under tmp_path."""
    def run(*args: str, ok: bool = True, env_extra: dict | None = None) -> subprocess.CompletedProcess:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "FEATURELAB_HOME": str(tmp_path / "cli-ws")}
        env.pop("FEATURELAB_CHROMA_URL", None)
        env.update(env_extra or {})
        proc = subprocess.run([sys.executable, "-m", "store", *args], capture_output=True, text=True, env=env,
                              cwd=tmp_path, timeout=300)
        if ok and proc.returncode != 0:
            raise AssertionError(f"exit {proc.returncode}\nstdout:{proc.stdout}\nstderr:{proc.stderr}")
        return proc
    return run


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """A real Ray cluster for the session: ``ray start --head --block`` on 127.0.0.1 with two
    CPUs, in a process group of its own. Stopped at the end (also after a failure) by
    ending that group: ``ray stop`` would end every Ray on the machine, not only this one."""
    import signal

    port = free_port()
    temp = Path(tempfile.mkdtemp(prefix="flray-", dir="/tmp"))  # short: Ray's socket paths are limited
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
           "RAY_USAGE_STATS_ENABLED": "0", "FEATURELAB_WARM_NUMBA": "0"}
    env.pop("RAY_ADDRESS", None)
    log = open(temp / "ray-start.log", "wb")
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("ray")), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
         "--port", str(port), "--num-cpus", "2", "--num-gpus", "0", "--include-dashboard", "false",
         "--object-store-memory", str(300 * 1024 * 1024), "--temp-dir", str(temp), "--disable-usage-stats"],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )
    address = f"127.0.0.1:{port}"
    try:
        _wait_for_ray(address, proc, temp)
        yield address
    finally:
        try:
            import ray

            ray.shutdown()
        except ImportError:
            pass
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        shutil.rmtree(temp, ignore_errors=True)


def _wait_for_ray(address: str, proc: subprocess.Popen, temp: Path) -> None:
    host, port = address.split(":")
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited: {(temp / 'ray-start.log').read_text()[-3000:]}")
        if "--block" in (temp / "ray-start.log").read_text(errors="replace"):  # printed once the head is up
            return
        time.sleep(0.3)
    raise RuntimeError(f"ray start did not come up within 120 s: {(temp / 'ray-start.log').read_text()[-3000:]}")
