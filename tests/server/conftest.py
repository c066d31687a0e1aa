"""A real `python -m store serve` subprocess on a free port, and the real dtlpy SDK in this
process pointed at it (its cookie and logs in a tmp folder, never the user's ~/.dataloop)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT, free_port  # sets DATALOOP_PATH before dtlpy is imported

import dtlpy as dl  # noqa: E402
from dtlpy.services.cookie import CookieIO  # noqa: E402


class Server:
    """A running `serve`: its URL, token, workspace, process, and the project id."""

    def __init__(self, workspace: Path, port: int, proc: subprocess.Popen, token: str, project_id: str) -> None:
        self.workspace, self.port, self.proc, self.token, self.project_id = workspace, port, proc, token, project_id
        self.url = f"http://127.0.0.1:{port}"

    @property
    def auth(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}


def run_cli(workspace: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "store", "--workspace", str(workspace), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def wait_until_up(url: str, token: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"serve exited with {proc.returncode}: {proc.stdout.read() if proc.stdout else ''}")
        try:
            if requests.get(f"{url}/users/me", headers={"Authorization": f"Bearer {token}"}, timeout=2).ok:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"serve did not answer on {url} within {timeout} s")


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> Server:
    """`python -m store serve` on a fresh workspace; the SDK connected by exec'ing the
    snippet `python -m store dtlpy-env` writes (so that snippet is what is tested)."""
    workspace = tmp_path_factory.mktemp("served") / "ws"
    port = free_port()
    snippet = workspace.parent / "connect.py"
    made = run_cli(workspace, "dtlpy-env", "--port", str(port), "-o", str(snippet))
    assert made.returncode == 0, made.stderr
    token = (workspace / "server-token").read_text().strip()
    proc = subprocess.Popen([sys.executable, "-m", "store", "--workspace", str(workspace), "serve", "--port", str(port)],
                            cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until_up(f"http://127.0.0.1:{port}", token, proc)
        _use_tmp_cookie(tmp_path_factory.mktemp("dtlpy"))
        scope: dict = {}
        exec(compile(snippet.read_text(), str(snippet), "exec"), scope)
        yield Server(workspace, port, proc, token, scope["project"].id)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        if proc.stdout:
            proc.stdout.close()


def _use_tmp_cookie(folder: Path) -> None:
    """Point dtlpy's cookie at ``folder`` even when another test module imported dtlpy first."""
    api = dl.client_api
    api.cookie_io = CookieIO(path=str(folder / "cookie.json"))
    api._environments = api._environment = api._token = None
    api._verbose = api._error_suppression = api._cache_state = api._sdk_cache = None


@pytest.fixture(scope="session")
def project(server):
    return dl.projects.get(project_id=server.project_id)
