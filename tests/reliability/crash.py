"""Kill a store job with SIGKILL at random moments, then check the workspace.

A job is a Python script run in its own process as ``python -c JOB ws_path arg`` would run
it; it prints ``ready`` once it has opened the workspace and one line per call that
returned. The harness kills it after a random delay, checks the invariants, and in the end
reruns the job uninterrupted.
"""
from __future__ import annotations

import atexit
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from store import Workspace

ROOT = Path(__file__).resolve().parents[2]


# The jobs run in processes forked from a server that has imported the store, Chroma, torch
# and open_clip once (as multiprocessing's forkserver does): a fresh interpreter per run
# spends 1 to 4 s importing them, which at 20 kills per kind would be most of the test's
# time. A job process runs its script as `python -c` would and exits as the interpreter does
# (non-daemon threads joined, atexit handlers run), but without tearing down the preloaded
# modules one by one (2 s with torch loaded, and no part of any job).
FORK_SERVER = r"""
import json, os, sys
import numpy, PIL.Image, torch, open_clip, chromadb, chromadb.api.rust, store, store.embedders.job, store.io.transfer
print("up", flush=True)
job = None
while line := sys.stdin.readline():
    req = json.loads(line)
    pid = os.fork()
    if pid == 0:
        job = req
        break
    print(pid, flush=True)
    sys.stdin.readline()  # reaped only when asked: until then a finished job stays a zombie, so its pid is not reused
    print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
if job is None:
    sys.exit(0)
for fd, path, flags in ((0, os.devnull, os.O_RDONLY), (1, job["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                        (2, job["err"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
    os.dup2(os.open(path, flags, 0o644), fd)
sys.argv = ["-c", *job["args"]]
exec(compile(job["job"], "<string>", "exec"), {"__name__": "__main__"})
print("end", flush=True)  # the job's code ran to its end: a kill after this is not mid-job
import atexit, threading
threading._shutdown()
atexit._run_exitfuncs()
sys.stdout.flush()
os._exit(0)
"""


class _ForkServer:
    """One per test session, started on first use, stopped at exit."""

    def __init__(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
        env.pop("FEATURELAB_CHROMA_URL", None)
        self.proc = subprocess.Popen([sys.executable, "-c", FORK_SERVER], env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)
        assert self.proc.stdout.readline().strip() == "up", "the fork server did not start"
        self.dir = Path(tempfile.mkdtemp(prefix="featurelab-crash-"))
        atexit.register(self.stop)

    def start(self, job: str, args: tuple[str, ...]) -> tuple[int, Path, Path]:
        out, err = self.dir / "out", self.dir / "err"
        out.write_text("")
        self.proc.stdin.write(json.dumps({"job": job, "args": list(args), "out": str(out), "err": str(err)}) + "\n")
        return int(self.proc.stdout.readline()), out, err

    def wait(self) -> int:
        """The exit code of the job started last (negative: killed by that signal)."""
        self.proc.stdin.write("reap\n")
        return int(self.proc.stdout.readline())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(30)
        shutil.rmtree(self.dir, ignore_errors=True)


_server: _ForkServer | None = None


def _spawn(job: str, *args: str) -> tuple[int, Path, Path]:
    """Start the job; return once it has printed ``ready``: (pid, stdout file, stderr file)."""
    global _server
    if _server is None:
        _server = _ForkServer()
    pid, out, err = _server.start(job, args)
    deadline = time.monotonic() + 120
    while not out.read_text().startswith("ready\n"):
        if time.monotonic() > deadline or _is_zombie(pid):
            os.kill(pid, signal.SIGKILL)
            raise AssertionError(f"job {pid} never said ready (exit {_server.wait()}): {err.read_text()[-3000:]}")
        time.sleep(0.002)
    return pid, out, err


def _is_zombie(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"


def run_child(job: str, *args: str, kill_after: float | None = None) -> tuple[list[str], int]:
    """Run ``job``; kill it ``kill_after`` seconds after it says ready. Returns what it
    printed after ``ready`` (split on whitespace) and its exit code (negative: killed)."""
    lines, code, _ = _run(job, args, kill_after)
    return lines, code


def _run(job: str, args: tuple[str, ...], kill_after: float | None) -> tuple[list[str], int, bool]:
    """(lines, exit code, whether the job's code had run to its end)."""
    pid, out, err = _spawn(job, *args)
    if kill_after is not None:
        time.sleep(kill_after)
        os.kill(pid, signal.SIGKILL)  # a job that has ended is a zombie until reaped: this is a no-op then
    code = _server.wait()
    if kill_after is None:
        assert code == 0, err.read_text()[-3000:]
    words = out.read_text().split()[1:]
    finished = words[-1:] == ["end"]
    return words[:-1] if finished else words, code, finished


def timed_run(job: str, *args: str) -> float:
    """Seconds from the job's ``ready`` to the end of its code: the window in which a kill
    lands mid-job."""
    pid, out, err = _spawn(job, *args)
    start = time.perf_counter()
    while not out.read_text().endswith("end\n") and not _is_zombie(pid):
        time.sleep(0.001)
    seconds = time.perf_counter() - start
    code = _server.wait()
    assert code == 0, err.read_text()[-3000:]
    return seconds


def snapshot(ws: Workspace) -> dict:
    """The workspace's content without ids or times: what two equal runs must share."""
    items = {}
    name_of = {}
    for ds in ws.datasets.list():
        for item in ds.items.list().all():
            name_of[item.id] = f"{ds.name}:{item.filename}"
            items[name_of[item.id]] = (item.sha256, item.kind, item.hidden, item.metadata,
                                       tuple((a.label, tuple(a.box)) for a in item.annotations.list()))
    vectors = {}
    for fs in ws.feature_sets.list():
        m = ws.matrix(fs)
        for eid, value in zip(m.entity_ids.tolist(), m.values):
            vectors[(fs.name, name_of.get(eid, eid))] = value.tobytes()
    return {"items": items, "vectors": vectors, "sets": sorted((s.name, s.size) for s in ws.feature_sets.list())}


def check_consistent(ws: Workspace) -> None:
    """Nothing half there: a sound SQLite file, every item with its whole file, no temp
    files, catalog and Chroma holding the same vectors, no staging datasets."""
    assert ws.catalog.scalar("PRAGMA integrity_check") == "ok"
    for row in ws.catalog.all("SELECT id, sha256 FROM items"):
        path = ws.blobs.path(row["sha256"])
        assert path.exists(), f"item {row['id']} lost its file"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == row["sha256"]
    assert list(ws.blobs.root.glob("*/.tmp-*")) == []
    assert ws.catalog.all("SELECT key FROM meta WHERE key LIKE 'importing:%'") == []
    assert ws.catalog.scalar("SELECT COUNT(*) FROM datasets WHERE name LIKE '.importing-%'") == 0
    orphans = ws.catalog.scalar(
        "SELECT COUNT(*) FROM features WHERE entity_id NOT IN (SELECT id FROM items)"
        " AND entity_id NOT IN (SELECT id FROM annotations)")
    assert orphans == 0
    for fs in ws.feature_sets.list():
        in_catalog = {r[0] for r in ws.catalog.all("SELECT entity_id FROM features WHERE feature_set_id=?", (fs.id,))}
        assert ws.wait_for_index(60)  # the index catches up in the background
        assert ws.index.ids(fs.id) == in_catalog, f"catalog and Chroma disagree on {fs.name}"


def kill_loop(job: str, ws_path: Path, args_for, kills: int, duration: float, after_kill) -> int:
    """Run the job with ``args_for(i)`` and SIGKILL it at a random moment within
    ``duration`` until ``kills`` kills have landed mid-job (a run whose code had ended
    before its kill does not count); ``after_kill(ws, i, lines)`` checks the workspace after
    each run. Returns how many runs it took."""
    rng = random.Random(1234)
    landed = runs = 0
    while landed < kills:
        assert runs < 4 * kills, f"only {landed} of {runs} kills landed mid-job; the job is too short to test"
        lines, code, finished = _run(job, (str(ws_path), *args_for(runs)), rng.uniform(0, duration))
        landed += code == -signal.SIGKILL and not finished
        with Workspace.open(ws_path) as ws:
            check_consistent(ws)
            after_kill(ws, runs, lines)
        runs += 1
    return runs


def dataset_content(ws: Workspace, name: str) -> dict:
    """Items of one dataset by filename, without ids or times."""
    ds = ws.datasets.get(dataset_name=name)
    return {i.filename: (i.sha256, i.kind, i.width, i.height, i.hidden, i.metadata) for i in ds.items.list().all()}


def set_content(ws: Workspace, name: str) -> dict:
    """Vectors of one feature set by their item's filename."""
    fs = ws.feature_sets.get(feature_set_name=name)
    m = ws.matrix(fs)
    items = ws.items_by_ids(m.entity_ids.tolist())
    return {items[e].filename: v.tobytes() for e, v in zip(m.entity_ids.tolist(), m.values)}
