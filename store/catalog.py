"""The SQLite catalog: schema, connection and transactions.

The catalog is the source of truth. Vectors are kept here as float32 bytes, written in
the same transaction as their feature row; Chroma is an index rebuilt from them
(see ``store/index``).
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .files import path_glob
from .ids import new_id

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS datasets (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS items (
    id TEXT PRIMARY KEY,
    dataset_id TEXT NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    dir TEXT NOT NULL,
    kind TEXT NOT NULL,
    mimetype TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    width INTEGER,
    height INTEGER,
    hidden INTEGER NOT NULL DEFAULT 0,
    metadata TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    UNIQUE (dataset_id, dir, name)
);
CREATE INDEX IF NOT EXISTS items_by_sha ON items(dataset_id, sha256);
CREATE TABLE IF NOT EXISTS annotations (
    id TEXT PRIMARY KEY,
    item_id TEXT NOT NULL REFERENCES items(id) ON DELETE CASCADE,
    label TEXT NOT NULL,
    type TEXT NOT NULL,
    coordinates TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS annotations_by_item ON annotations(item_id);
CREATE TABLE IF NOT EXISTS feature_sets (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    set_type TEXT NOT NULL,
    entity_type TEXT NOT NULL,
    model TEXT,
    metric TEXT NOT NULL,
    created_at REAL NOT NULL,
    version INTEGER NOT NULL DEFAULT 0,
    indexed_rid INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS features (
    rid INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    feature_set_id TEXT NOT NULL REFERENCES feature_sets(id) ON DELETE CASCADE,
    entity_id TEXT NOT NULL,
    dataset_id TEXT,
    value BLOB NOT NULL,
    created_at REAL NOT NULL,
    UNIQUE (feature_set_id, entity_id)
);
CREATE INDEX IF NOT EXISTS features_by_entity ON features(entity_id);
CREATE INDEX IF NOT EXISTS features_by_set_rid ON features(feature_set_id, rid);
CREATE TABLE IF NOT EXISTS index_tombstones (
    rowid INTEGER PRIMARY KEY AUTOINCREMENT,
    feature_set_id TEXT NOT NULL,
    entity_id TEXT NOT NULL
);
-- What each hide action of store.analysis.duplicates hid (JSON list of item ids), so undo restores exactly that.
CREATE TABLE IF NOT EXISTS hide_actions (
    id TEXT PRIMARY KEY,
    feature_set_id TEXT,
    item_ids TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    undone_at REAL
);
"""


class Catalog:
    """One SQLite connection per workspace object, serialised by a lock.

    Streamlit runs each session in its own thread, so the connection is shared across
    threads (``check_same_thread=False``) and every use goes through ``self.lock``.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.RLock()
        fresh = not path.exists()
        self.conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self.conn.row_factory = sqlite3.Row
        # The filter language's folder globs ("/folder/**") compile to this function.
        self.conn.create_function("path_glob", 2, path_glob, deterministic=True)
        if fresh:
            # 16 KiB pages hold seven 512-d float32 vectors with little waste.
            self.conn.execute("PRAGMA page_size=16384")
        self.conn.execute("PRAGMA journal_mode=WAL")
        # FULL: a call that returned is on disk, even after a power loss.
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        with self.transaction():
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    self.conn.execute(statement)
            self.conn.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE .. COMMIT, rolled back on any exception (nothing half written)."""
        with self.lock:
            if self.conn.in_transaction:  # nested: the outer transaction owns commit
                yield self.conn
                return
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    def one(self, sql: str, params: tuple | list = ()) -> sqlite3.Row | None:
        with self.lock:
            return self.conn.execute(sql, params).fetchone()

    def all(self, sql: str, params: tuple | list = ()) -> list[sqlite3.Row]:
        with self.lock:
            return self.conn.execute(sql, params).fetchall()

    def change_stamp(self) -> tuple[int, int]:
        """Changes whenever the catalog does: rows this connection wrote, and SQLite's counter
        of commits by other connections. Keys caches of things derived from the catalog."""
        with self.lock:
            return self.conn.total_changes, self.conn.execute("PRAGMA data_version").fetchone()[0]

    def scalar(self, sql: str, params: tuple | list = ()) -> Any:
        row = self.one(sql, params)
        return None if row is None else row[0]

    def meta(self, key: str) -> str | None:
        return self.scalar("SELECT value FROM meta WHERE key=?", (key,))

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as c:
            c.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def close(self) -> None:
        with self.lock:
            self.conn.close()


def free_item_name(c, dataset_id: str, folder: str, name: str) -> str:
    """``name``, or the first of ``name (1).ext``, ``name (2).ext``... not taken in ``folder``
    (inside the transaction ``c``): the one renaming rule of uploads and copies."""
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    candidate, n = name, 1
    while c.execute(
        "SELECT 1 FROM items WHERE dataset_id=? AND dir=? AND name=?", (dataset_id, folder, candidate)
    ).fetchone():
        candidate = f"{stem} ({n}){dot}{ext}"
        n += 1
    return candidate


def hide_items(c, item_ids: list[str], detail: dict, feature_set_id: str | None = None) -> tuple[str | None, list[str]]:
    """Inside the transaction ``c``: hide the items of ``item_ids`` that are visible, as one
    undoable action (see ``store.analysis.duplicates.undo``). Returns the action's id (None
    when nothing was visible) and the items it hid; those hidden before are left out, so an
    undo leaves them hidden."""
    visible: list[str] = []
    for start in range(0, len(item_ids), 900):
        chunk = list(item_ids[start : start + 900])
        marks = ",".join("?" * len(chunk))
        visible += [r[0] for r in c.execute(f"SELECT id FROM items WHERE hidden = 0 AND id IN ({marks})", chunk)]
        c.execute(f"UPDATE items SET hidden = 1 WHERE id IN ({marks})", chunk)
    if not visible:
        return None, []
    action_id = new_id()
    c.execute("INSERT INTO hide_actions (id, feature_set_id, item_ids, detail, created_at) VALUES (?,?,?,?,?)",
              (action_id, feature_set_id, json.dumps(visible), json.dumps(detail), time.time()))
    return action_id, visible
