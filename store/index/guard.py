"""Guard the process against a damaged embedded Chroma folder.

A torn or corrupted HNSW file (``header.bin``, ``data_level0.bin``, ``link_lists.bin``...)
can crash the process that loads it (a segfault in hnswlib, not an exception), and a
garbled one can silently answer with wrong vectors. So before a process loads the index,
featurelab compares the HNSW files' names, sizes and modification times with those it last
knew good (recorded in the catalog after each write to Chroma and at close). When they
differ (a kill during a flush, a disk error, someone's tampering), a child process loads
every collection first: it checks Chroma's SQLite file, counts each collection, compares
its vectors with the catalog's bit for bit and runs one query. If the child crashes or finds
a difference, the folder is moved aside to ``chroma.damaged`` and the index rebuilt from the
catalog (the vectors' source of truth). Unchanged files cost one directory walk at open.

    python -m store.index.guard CHROMA_DIR CATALOG NAMESPACE   # the child's side
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..env import env_number

log = logging.getLogger(__name__)
META_KEY = "chroma_hnsw_files"
PROBE_TIMEOUT_S = env_number("FEATURELAB_INDEX_PROBE_TIMEOUT", 900.0, "a number of seconds, e.g. 900")


def hnsw_files(chroma_dir: Path) -> dict[str, list[int]]:
    """{relative path: [size, mtime_ns]} of the files in the collections' segment folders:
    the ones whose damage can crash a process. Chroma's own SQLite file is left out: SQLite
    reports damage as an error, and it changes at every open."""
    out: dict[str, list[int]] = {}
    try:
        folders = [e for e in os.scandir(chroma_dir) if e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return out
    for folder in folders:
        for entry in os.scandir(folder.path):
            st = entry.stat(follow_symlinks=False)
            out[f"{folder.name}/{entry.name}"] = [st.st_size, st.st_mtime_ns]
    return out


def known_files(catalog) -> dict | None:
    raw = catalog.meta(META_KEY)
    return None if raw is None else json.loads(raw)


def note_files(catalog, chroma_dir: Path, last: dict | None) -> dict:
    """Record the HNSW files as good (after a write this process completed); returns them."""
    now = hnsw_files(chroma_dir)
    if now != last:
        catalog.set_meta(META_KEY, json.dumps(now, sort_keys=True))
    return now


@dataclass
class ProbeReport:
    """What the child found: ``damage`` maps a set id (or ``*`` for the whole folder) to
    the reason; empty when every collection loaded and matched the catalog."""

    damage: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.damage


def probe(chroma_dir: Path, catalog_path: Path, namespace: str, timeout: float = PROBE_TIMEOUT_S) -> ProbeReport:
    """Load every collection of this workspace in a child process and report damage."""
    started = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]),
                                                                       os.environ.get("PYTHONPATH")]))}
    report = ProbeReport()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "store.index.guard", str(chroma_dir), str(catalog_path), namespace],
            capture_output=True, text=True, timeout=timeout, env=env,
        )
        lines, code, err = proc.stdout.splitlines(), proc.returncode, proc.stderr
    except subprocess.TimeoutExpired as exc:
        lines = (exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or "").splitlines()
        code, err = None, f"no answer within {timeout:.0f} s"
    current = None
    for line in lines:
        word, _, rest = line.partition(" ")
        if word == "start":
            current = rest
        elif word == "ok":
            current = None
            report.checked += 1
        elif word == "bad":
            set_id, _, reason = rest.partition(" ")
            report.damage[set_id] = reason
            current = None
    if code != 0:
        if code is not None and code < 0:
            why = f"the process loading it was killed by {signal.Signals(-code).name}"
        else:
            why = (err.strip().splitlines() or ["no output"])[-1][:300] if code is not None else err
        report.damage[current or "*"] = why
    report.seconds = time.perf_counter() - started
    return report


def exiting() -> bool:
    """Whether the interpreter is shutting down (its main thread has ended: a script that
    wrote and exited without close()). Opening Chroma then fails (chromadb's import can no
    longer register its exit hooks), which says nothing about the folder: it is not set
    aside, and the worker starts no step (what is left resumes at the next open)."""
    return not threading.main_thread().is_alive()


def set_aside(chroma_dir: Path) -> Path:
    """Move a damaged Chroma folder to ``chroma.damaged`` (replacing an older one)."""
    target = chroma_dir.with_name(chroma_dir.name + ".damaged")
    shutil.rmtree(target, ignore_errors=True)
    os.replace(chroma_dir, target)
    return target


def open_embedded(chroma_dir: Path, catalog, namespace: str):
    """The embedded index, opened only after a probe when its HNSW files changed since
    they were last known good. Returns (VectorIndex, damage): on damage the folder was set
    aside and a fresh, empty index opened, which the caller rebuilds from the catalog."""
    from ..errors import FeaturelabError
    from .chroma import VectorIndex

    damage: dict[str, str] = {}
    current = hnsw_files(chroma_dir)
    if current and current != known_files(catalog):
        report = probe(chroma_dir, catalog.path, namespace)
        log.info("probed the Chroma index in %.2f s: %s", report.seconds, report.damage or "sound")
        damage = report.damage
    if not damage:
        try:
            return VectorIndex(chroma_dir, None, namespace), damage
        except FeaturelabError as exc:  # Chroma's own files cannot be read
            if exiting():
                raise
            damage = {"*": str(exc)}
            _forget_client(chroma_dir)
    if not chroma_dir.exists():  # it could not be created (nothing there to set aside): say why
        raise FeaturelabError(f"cannot open the Chroma folder {chroma_dir}: {damage.get('*', damage)}")
    moved = set_aside(chroma_dir)
    log.warning("the Chroma index %s is damaged (%s); moved it to %s and rebuilding it from the catalog",
                chroma_dir, "; ".join(f"{k}: {v}" for k, v in damage.items()), moved)
    return VectorIndex(chroma_dir, None, namespace), damage


def _forget_client(chroma_dir: Path) -> None:
    """chromadb keeps a client's system per folder even when starting it failed, and would
    hand that broken one to the next client of the same folder: drop it."""
    from chromadb.api.shared_system_client import SharedSystemClient

    # chromadb's private registry (third-party): it offers no public way to drop a system.
    system = SharedSystemClient._identifier_to_system.pop(str(chroma_dir), None)
    SharedSystemClient._identifier_to_refcount.pop(str(chroma_dir), None)
    if system is not None:
        try:
            system.stop()
        except Exception as exc:  # noqa: BLE001 - it never started; nothing to keep
            log.debug("stopping the failed Chroma client: %s", exc)


# ---- the child's side ---------------------------------------------------------------------
def _child(chroma_dir: str, catalog_path: str, namespace: str) -> int:
    """Print ``start SET``, then ``ok SET`` or ``bad SET REASON``, for each collection.
    A crash leaves the last ``start`` unanswered: the parent blames that set."""
    import numpy as np

    say = lambda text: print(text, flush=True)  # noqa: E731 - each line must be out before a crash
    db = Path(chroma_dir) / "chroma.sqlite3"
    if db.exists():
        try:
            # Read-write: after a writer was killed, SQLite must first recover Chroma's WAL (as
            # Chroma itself does at open), which a read-only connection refuses as damage.
            with sqlite3.connect(db) as con:
                check = con.execute("PRAGMA quick_check").fetchone()[0]
        except sqlite3.Error as exc:
            check = str(exc)
        if check != "ok":
            say(f"bad * Chroma's SQLite file is damaged ({check})")
            return 0
    catalog = sqlite3.connect(f"file:{catalog_path}?mode=ro", uri=True)
    sets = catalog.execute("SELECT id, COALESCE(indexed_rid, 0) FROM feature_sets").fetchall()
    from .chroma import connect

    say("start *")
    try:
        client = connect(chroma_dir)
        names = {getattr(c, "name", c) for c in client.list_collections()}
    except Exception as exc:  # noqa: BLE001 - any failure to open is damage
        say(f"bad * Chroma cannot open the folder ({type(exc).__name__}: {exc})")
        return 0
    say("ok *")
    for set_id, mark in sets:
        name = f"fl-{namespace}-{set_id}"
        if name not in names:
            continue  # never indexed, or lost: the parent's count check rebuilds it
        say(f"start {set_id}")
        try:
            reason = _check_collection(client.get_collection(name), catalog, set_id, mark, np)
        except Exception as exc:  # noqa: BLE001 - an error reading it is damage
            reason = f"{type(exc).__name__}: {exc}"
        say(f"bad {set_id} {reason}" if reason else f"ok {set_id}")
    return 0


def _check_collection(col, catalog, set_id: str, mark: int, np) -> str | None:
    """None, or what is wrong: the vectors the catalog says were indexed must be there, bit
    for bit, and a query must run."""
    col.count()
    rows = catalog.execute(
        "SELECT entity_id, value FROM features WHERE feature_set_id=? AND rid<=? ORDER BY rid", (set_id, mark)
    ).fetchall()
    for start in range(0, len(rows), 1000):
        chunk = rows[start : start + 1000]
        got = col.get(ids=[r[0] for r in chunk], include=["embeddings"])
        found = dict(zip(got["ids"], got["embeddings"]))
        for entity_id, value in chunk:
            if entity_id not in found:
                return f"vector of {entity_id} is missing from the index"
            if np.asarray(found[entity_id], dtype=np.float32).tobytes() != value:
                return f"vector of {entity_id} differs from the catalog's"
    if rows:
        col.query(query_embeddings=[np.frombuffer(rows[0][1], dtype=np.float32)], n_results=min(10, len(rows)))
    return None


if __name__ == "__main__":
    sys.exit(_child(*sys.argv[1:4]))
