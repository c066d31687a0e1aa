"""Kill a store job with SIGKILL at random moments, then check the workspace.

A job is a Python script run in its own process as ``python -c JOB ws_path arg`` would run
it; it prints ``ready`` once it has opened the workspace and one line per call that
returned. The harness kills it after a random delay, checks the invariants, and in the end
reruns the job uninterrupted.
"""
from __future__ import annotations

import hashlib
import os
import random
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from store import Workspace
from tests.forkserver import is_zombie, server, spawn

# The jobs run in processes forked from one preloaded interpreter (tests/forkserver.py): a
# fresh interpreter per run spends seconds importing torch and the rest, which at 20 kills
# per kind would be most of the test's time.


def run_child(job: str, *args: str, kill_after: float | None = None) -> tuple[list[str], int]:
    """Run ``job``; kill it ``kill_after`` seconds after it says ready. Returns what it
    printed after ``ready`` (split on whitespace) and its exit code (negative: killed)."""
    lines, code, _ = _run(job, args, kill_after)
    return lines, code


def _run(job: str, args: tuple[str, ...], kill_after: float | None) -> tuple[list[str], int, bool]:
    """(lines, exit code, whether the job's code had run to its end)."""
    pid, out, err = spawn(job, *args)
    if kill_after is not None:
        time.sleep(kill_after)
        os.kill(pid, signal.SIGKILL)  # a job that has ended is a zombie until reaped: this is a no-op then
    code = server().wait()
    if kill_after is None:
        assert code == 0, err.read_text()[-3000:]
    words = out.read_text().split()[1:]
    finished = words[-1:] == ["end"]
    return words[:-1] if finished else words, code, finished


def timed_run(job: str, *args: str) -> float:
    """Seconds from the job's ``ready`` to the end of its code: the window in which a kill
    lands mid-job."""
    pid, out, err = spawn(job, *args)
    start = time.perf_counter()
    while not out.read_text().endswith("end\n") and not is_zombie(pid):
        time.sleep(0.001)
    seconds = time.perf_counter() - start
    code = server().wait()
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


@dataclass
class Kills:
    runs: int  # how many runs it took
    interrupted: list[int]  # the runs whose code had not ended: the ones a rerun must complete


def kill_loop(job: str, ws_path: Path, args_for, kills: int, duration: float, after_kill) -> Kills:
    """Run the job with ``args_for(i)`` and SIGKILL it at a random moment within
    ``duration`` until ``kills`` kills have landed mid-job (a run whose code had ended
    before its kill does not count); ``after_kill(ws, i, lines)`` checks the workspace after
    each run."""
    rng = random.Random(1234)
    runs, interrupted = 0, []
    while len(interrupted) < kills:
        assert runs < 4 * kills, f"only {len(interrupted)} of {runs} kills landed mid-job; the job is too short to test"
        lines, code, finished = _run(job, (str(ws_path), *args_for(runs)), rng.uniform(0, duration))
        if code == -signal.SIGKILL and not finished:
            interrupted.append(runs)
        with Workspace.open(ws_path) as ws:
            check_consistent(ws)
            after_kill(ws, runs, lines)
        runs += 1
    return Kills(runs, interrupted)


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
