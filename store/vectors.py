"""Each feature set's vectors in files that can be memory-mapped: a cache of the catalog.

The catalog stays the source of truth; these files let a process read a set of a million
vectors without decoding a million SQLite blobs. One folder per set,
``cache/vectors/<set id>/``: ``meta.json`` names a generation ``g`` and how many rows of it
are valid, and ``g.rid`` (int64), ``g.eid`` / ``g.fid`` (fixed-width str), ``g.sq``
(float32 squared norms) and ``g.f32`` (float32, n x size) hold the rows in rid order.

Why the files never disagree with the catalog: a feature row is never changed in place (a
new vector for an entity is a new row), and its ``rid`` comes from AUTOINCREMENT, so it is
never reused. A set's rows are therefore named by ``(COUNT(*), MAX(rid))``: any insert
raises the maximum, a delete alone lowers the count. ``load`` reads that stamp and the rows
it needs in one SQLite read transaction (a snapshot), maps the files when their stamp is
the catalog's, and otherwise brings them up to date first: rows past the files' maximum are
appended (only those blobs are decoded), and when rows were deleted the survivors are
copied into a new generation. Appends go past the valid rows and ``meta.json`` is replaced
last (after fsync), so a crash at any point leaves the last good state, which the next
``load`` extends. A damaged or unreadable folder is rebuilt from the catalog.
"""
from __future__ import annotations

import json
import logging
import mmap
import os
import shutil
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .locks import exclusive

log = logging.getLogger(__name__)

_BATCH = 50_000  # rows decoded from SQLite at a time (bounded memory)
_PARTS = ("rid", "eid", "fid", "sq", "f32")


@dataclass
class SetVectors:
    """A set's rows as one snapshot: arrays that may be memory-mapped (read-only)."""

    rids: np.ndarray  # (n,) int64, ascending
    entity_ids: np.ndarray  # (n,) str
    feature_ids: np.ndarray  # (n,) str
    sq_norms: np.ndarray  # (n,) float32: einsum("ij,ij->i") of the values, as exact.VectorMatrix computes it
    values: np.ndarray  # (n, dim) float32
    version: int  # the set's catalog version in the same snapshot


def squared_norms(values: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", values, values, dtype=np.float32)


def _map(path: Path, dtype: np.dtype, count: int, width: int | None = None) -> np.ndarray:
    """The first ``count`` rows of a file as a read-only array (no copy); rows of ``width``
    values when given, else single values."""
    shape = (count,) if width is None else (count, width)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    if count == 0:
        return np.zeros(shape, dtype=dtype)
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size < nbytes:
            raise ValueError(f"{path.name} is shorter than its meta.json says")
        mm = mmap.mmap(f.fileno(), nbytes, access=mmap.ACCESS_READ)
    mm.madvise(mmap.MADV_WILLNEED)  # start reading ahead now: the first scan then finds the pages in memory
    return np.frombuffer(mm, dtype=dtype, count=int(np.prod(shape))).reshape(shape)


class VectorFiles:
    """The vector files of one workspace; ``load`` is safe from any thread and process."""

    def __init__(self, root: Path, catalog_path: Path) -> None:
        self.root = root
        self.catalog_path = catalog_path
        self._lock = threading.Lock()  # one reader connection, one refresh at a time in this process
        self._conn: sqlite3.Connection | None = None

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def folder(self, set_id: str) -> Path:
        return self.root / set_id

    def drop(self, set_id: str) -> None:
        """Forget a deleted set's files (a reader that mapped them keeps its mapping)."""
        with self._lock:  # not while a refresh in this process writes them
            shutil.rmtree(self.folder(set_id), ignore_errors=True)

    def stamp(self, set_id: str) -> tuple[int, int] | None:
        """(count, max rid) of the set's files, or None when there are none."""
        meta = self._meta(self.folder(set_id))
        return None if meta is None else (meta["count"], meta["max_rid"])

    # ---- reading ------------------------------------------------------------------------
    def load(self, set_id: str, dim: int) -> SetVectors | None:
        """The set's rows as the catalog holds them now (None when the set is gone), from the
        files, brought up to date first when the catalog moved past them."""
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN")  # one snapshot for the stamp and every row read below
            try:
                head = conn.execute(
                    "SELECT version, (SELECT COUNT(*) FROM features WHERE feature_set_id=?1),"
                    " (SELECT COALESCE(MAX(rid), 0) FROM features WHERE feature_set_id=?1)"
                    " FROM feature_sets WHERE id=?1", (set_id,)).fetchone()
                if head is None:
                    return None
                version, count, max_rid = head
                folder = self.folder(set_id)
                meta = self._meta(folder)
                if meta is None or (meta["count"], meta["max_rid"], meta["dim"]) != (count, max_rid, dim):
                    with exclusive(self._lock_path(folder)):  # another process may be refreshing it too
                        meta = self._refresh(conn, set_id, dim, folder, count, max_rid)
                for attempt in range(3):
                    try:
                        return self._open(folder, meta, version)
                    except (OSError, ValueError) as exc:  # a generation replaced under us, or a damaged file
                        if attempt == 2:
                            raise
                        if attempt:
                            log.warning("vector files of %s unreadable (%s); rebuilding them from the catalog",
                                        set_id, exc)
                        with exclusive(self._lock_path(folder)):
                            meta = self._refresh(conn, set_id, dim, folder, count, max_rid, rebuild=attempt > 0)
            finally:
                conn.execute("COMMIT")

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = sqlite3.connect(self.catalog_path, check_same_thread=False, isolation_level=None, timeout=30)
        return self._conn

    @staticmethod
    def _lock_path(folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        return folder / "lock"

    @staticmethod
    def _meta(folder: Path) -> dict | None:
        try:
            meta = json.loads((folder / "meta.json").read_text())
            return meta if {"gen", "count", "max_rid", "dim", "width"} <= set(meta) else None
        except (OSError, ValueError):
            return None

    @staticmethod
    def _open(folder: Path, meta: dict, version: int) -> SetVectors:
        g, n, width = meta["gen"], meta["count"], meta["width"]
        ids = np.dtype(f"<U{width}")
        return SetVectors(
            rids=_map(folder / f"{g}.rid", np.dtype(np.int64), n),
            entity_ids=_map(folder / f"{g}.eid", ids, n),
            feature_ids=_map(folder / f"{g}.fid", ids, n),
            sq_norms=_map(folder / f"{g}.sq", np.dtype(np.float32), n),
            values=_map(folder / f"{g}.f32", np.dtype(np.float32), n, meta["dim"]),
            version=version,
        )

    # ---- bringing the files up to date ---------------------------------------------------
    def _refresh(self, conn, set_id: str, dim: int, folder: Path, count: int, max_rid: int,
                 rebuild: bool = False) -> dict:
        """Make the files hold exactly the snapshot's rows (``count`` of them, up to ``max_rid``)."""
        meta = None if rebuild else self._meta(folder)
        if meta is not None and (meta["count"], meta["max_rid"], meta["dim"]) == (count, max_rid, dim):
            return meta  # another process did it while we waited for the lock
        if meta is not None and meta["dim"] != dim:
            meta = None
        kept = 0
        if meta is not None:
            kept = conn.execute("SELECT COUNT(*) FROM features WHERE feature_set_id=? AND rid<=?",
                                (set_id, meta["max_rid"])).fetchone()[0]
        if meta is not None and kept == meta["count"]:
            start_rid, gen, base = meta["max_rid"], meta["gen"], meta  # only appends since: extend in place
        else:
            start_rid, gen, base = 0, self._next_gen(folder), None
            if meta is not None and kept:  # some rows deleted: copy the survivors into a new generation
                base = self._compact(conn, set_id, folder, meta, gen)
                start_rid = meta["max_rid"]
        width = self._width(conn, set_id, start_rid, base)
        if base is not None and width > base["width"]:  # longer ids than the files hold: start again, wider
            return self._refresh_from_zero(conn, set_id, dim, folder, count, max_rid, self._next_gen(folder), width)
        n = base["count"] if base is not None else 0
        written = self._append(conn, set_id, dim, folder, gen, width, n, start_rid)
        return self._commit(folder, {"gen": gen, "count": n + written, "max_rid": max_rid, "dim": dim,
                                     "width": width}, count)

    def _refresh_from_zero(self, conn, set_id, dim, folder, count, max_rid, gen, width) -> dict:
        written = self._append(conn, set_id, dim, folder, gen, width, 0, 0)
        return self._commit(folder, {"gen": gen, "count": written, "max_rid": max_rid, "dim": dim, "width": width},
                            count)

    @staticmethod
    def _next_gen(folder: Path) -> int:
        """A generation no file uses yet: files in use are never truncated, since another
        process may have them mapped."""
        used = [int(p.name.partition(".")[0]) for p in folder.iterdir() if p.name.partition(".")[0].isdigit()]
        return max(used, default=0) + 1

    @staticmethod
    def _width(conn, set_id: str, after_rid: int, base: dict | None) -> int:
        longest = conn.execute("SELECT MAX(MAX(LENGTH(entity_id)), MAX(LENGTH(id))) FROM features"
                               " WHERE feature_set_id=? AND rid>?", (set_id, after_rid)).fetchone()[0] or 0
        return max(24, longest, base["width"] if base else 0)

    def _compact(self, conn, set_id: str, folder: Path, meta: dict, gen: int) -> dict:
        """The surviving rows of the current generation, copied into generation ``gen``."""
        old = self._open(folder, meta, 0)
        alive = np.fromiter((r[0] for r in conn.execute(
            "SELECT rid FROM features WHERE feature_set_id=? AND rid<=? ORDER BY rid", (set_id, meta["max_rid"]))),
            dtype=np.int64)
        rows = np.searchsorted(old.rids, alive)
        if len(rows) and (rows.max() >= len(old.rids) or not np.array_equal(old.rids[rows], alive)):
            raise ValueError("the files lack rows the catalog has below their maximum")
        parts = {"rid": old.rids[rows], "eid": old.entity_ids[rows], "fid": old.feature_ids[rows],
                 "sq": old.sq_norms[rows], "f32": old.values[rows]}
        width = meta["width"]
        for part in _PARTS:
            with open(folder / f"{gen}.{part}", "wb") as f:
                _write(f, parts[part].astype(f"<U{width}") if part in ("eid", "fid") else parts[part])
        return {**meta, "gen": gen, "count": len(rows)}

    @staticmethod
    def _append(conn, set_id: str, dim: int, folder: Path, gen: int, width: int, valid: int, after_rid: int) -> int:
        """Append the rows past ``after_rid`` to generation ``gen`` (after its ``valid`` rows,
        dropping any tail a crash left); return how many."""
        sizes = {"rid": 8, "eid": 4 * width, "fid": 4 * width, "sq": 4, "f32": 4 * dim}
        files = {}
        for part in _PARTS:
            path = folder / f"{gen}.{part}"
            f = open(path, "r+b" if path.exists() else "w+b")
            f.truncate(valid * sizes[part])
            f.seek(valid * sizes[part])
            files[part] = f
        written, mark = 0, after_rid
        try:
            while True:
                rows = conn.execute("SELECT rid, entity_id, id, value FROM features WHERE feature_set_id=? AND rid>?"
                                    " ORDER BY rid LIMIT ?", (set_id, mark, _BATCH)).fetchall()
                if not rows:
                    break
                values = np.frombuffer(b"".join(r[3] for r in rows), dtype=np.float32).reshape(len(rows), dim)
                _write(files["rid"], np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)))
                _write(files["eid"], np.array([r[1] for r in rows], dtype=f"<U{width}"))
                _write(files["fid"], np.array([r[2] for r in rows], dtype=f"<U{width}"))
                _write(files["sq"], squared_norms(values))
                _write(files["f32"], values)
                written += len(rows)
                mark = rows[-1][0]
            for f in files.values():
                f.flush()
                os.fsync(f.fileno())  # the data is on disk before meta.json says it is there
        finally:
            for f in files.values():
                f.close()
        return written

    @staticmethod
    def _commit(folder: Path, meta: dict, expected: int) -> dict:
        if meta["count"] != expected:
            raise ValueError(f"vector files hold {meta['count']} rows where the catalog has {expected}")
        tmp = folder / "meta.json.tmp"
        tmp.write_text(json.dumps(meta))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, folder / "meta.json")
        for path in folder.iterdir():  # generations no longer named (a reader's mapping outlives the unlink)
            stem, dot, part = path.name.partition(".")
            if dot and part in _PARTS and stem != str(meta["gen"]):
                path.unlink(missing_ok=True)
        return meta


def _write(f, arr: np.ndarray) -> None:
    f.write(np.ascontiguousarray(arr).data)
