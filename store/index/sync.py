"""Index upkeep: keep Chroma in step with the catalog (the vectors' source of truth).

Writers change only the catalog (features, plus a tombstone per deleted vector); ``sync``
then carries the changes to Chroma under the catalog's lock and ``index-sync.lock``:
tombstones first, then every feature past the set's high-water mark (``indexed_rid``),
moving the mark after each batch. A crash anywhere leaves work that the next sync redoes.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

from ..locks import exclusive
from . import guard

if TYPE_CHECKING:
    from ..workspace import Workspace

log = logging.getLogger(__name__)


class IndexSync:
    """The index upkeep of one workspace; ``known_files`` are the HNSW files last known good."""

    def __init__(self, ws: "Workspace", known_files: dict | None) -> None:
        self.ws = ws
        self._index_files = known_files

    def note_files(self) -> None:
        """Record the embedded index's HNSW files as good (this process wrote them whole)."""
        ws = self.ws
        if ws.index is not None and ws.index.url is None:
            self._index_files = guard.note_files(ws.catalog, ws.path / "chroma", self._index_files)

    def sync(self, set_id: str | None = None, batch: int = 20_000) -> None:
        """Bring Chroma up to date with the catalog: tombstones first, then every feature
        written after the set's high-water mark. Idempotent, so safe to rerun after a crash."""
        index, catalog = self.ws.index, self.ws.catalog
        if index is None:  # another process owns the index and catches up from the catalog
            return
        set_ids = [set_id] if set_id else [r[0] for r in catalog.all("SELECT id FROM feature_sets")]
        wrote = False
        with catalog.lock, exclusive(self.ws.path / "index-sync.lock"):
            if set_id is None:
                index.drop_others(set(set_ids))
            for sid in set_ids:
                wrote |= self._apply_tombstones(sid)
                wrote |= self._upsert_new(sid, batch)
            if wrote:
                self.note_files()

    def _apply_tombstones(self, sid: str) -> bool:
        catalog = self.ws.catalog
        tomb = catalog.all(
            "SELECT rowid, entity_id FROM index_tombstones WHERE feature_set_id=? ORDER BY rowid", (sid,)
        )
        if not tomb:
            return False
        self.ws.index.delete(sid, [r[1] for r in tomb])
        with catalog.transaction() as c:
            c.execute("DELETE FROM index_tombstones WHERE feature_set_id=? AND rowid<=?", (sid, tomb[-1][0]))
        return True

    def _upsert_new(self, sid: str, batch: int) -> bool:
        catalog = self.ws.catalog
        mark = catalog.scalar("SELECT indexed_rid FROM feature_sets WHERE id=?", (sid,))
        if mark is None:
            return False
        wrote = False
        while True:
            rows = catalog.all(
                "SELECT rid, entity_id, value FROM features WHERE feature_set_id=? AND rid>? ORDER BY rid LIMIT ?",
                (sid, mark, batch),
            )
            if not rows:
                return wrote
            values = np.frombuffer(b"".join(r[2] for r in rows), dtype=np.float32).reshape(len(rows), -1)
            wrote = True
            self.ws.index.upsert(sid, [r[1] for r in rows], values)
            mark = rows[-1][0]
            with catalog.transaction() as c:
                c.execute("UPDATE feature_sets SET indexed_rid=? WHERE id=?", (mark, sid))

    def check(self, set_id: str) -> dict:
        """Compare the index with the catalog for one set."""
        index = self.ws.require_index()
        self.sync(set_id)
        in_catalog = self.ws.catalog.scalar("SELECT COUNT(*) FROM features WHERE feature_set_id=?", (set_id,))
        try:
            in_index = index.count(set_id)
        except Exception as exc:
            return {"ok": False, "catalog": in_catalog, "index": None, "error": str(exc)}
        return {"ok": in_catalog == in_index, "catalog": in_catalog, "index": in_index}

    def repair(self, set_id: str | None = None) -> list[str]:
        """Rebuild Chroma collections from the vectors in the catalog; return the set ids rebuilt."""
        index, catalog = self.ws.require_index(), self.ws.catalog
        set_ids = [set_id] if set_id else [r[0] for r in catalog.all("SELECT id FROM feature_sets")]
        with catalog.lock:
            for sid in set_ids:
                index.drop(sid)
                with catalog.transaction() as c:
                    c.execute("UPDATE feature_sets SET indexed_rid=0 WHERE id=?", (sid,))
                    c.execute("DELETE FROM index_tombstones WHERE feature_set_id=?", (sid,))
                self.sync(sid)
        return set_ids

    def rebuild_damaged(self) -> list[str]:
        """Names of the sets whose index disagreed with the catalog at open (a deleted or
        replaced Chroma folder, say) and was rebuilt from the catalog's vectors."""
        if self.ws.index is None:
            return []
        rebuilt = []
        for fs in self.ws.feature_sets.list():
            state = self.check(fs.id)
            if not state["ok"]:
                log.warning("index of %s disagrees with the catalog (%s); rebuilding it", fs.name, state)
                self.repair(fs.id)
                rebuilt.append(fs.name)
        return rebuilt
