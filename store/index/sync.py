"""Index upkeep: keep Chroma in step with the catalog (the vectors' source of truth).

Writers change only the catalog (features, plus a tombstone per deleted vector) and return:
a write never waits for Chroma. A worker thread in the process that owns the index (see
``store.locks``) then carries the changes to Chroma in steps, each under ``index-sync.lock``
(one step at a time across processes sharing a Chroma server): apply the set's tombstones,
or upsert the next batch of features past the set's high-water mark (``indexed_rid``) and
move the mark. A crash anywhere leaves work that the next step redoes, at the next open.
The worker waits for writes to pause before each step (none under way, the last ended
``QUIET_S`` ago), so a bulk load keeps both cores.

The worker also brings each written set's memory-mapped vector files (``store.vectors``) up
to date, before the index, so that the next search maps them instead of decoding blobs.
"""
from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..locks import exclusive
from ..warmup import until_idle
from . import guard

if TYPE_CHECKING:
    from ..workspace import Workspace

log = logging.getLogger(__name__)

# chromadb's embedded client holds the GIL while it inserts (measured: a 3,000-vector upsert
# stopped every other thread of the process for its whole 1 to 46 s). So the worker inserts
# in small steps and rests as long as each step took: every other thread of the process
# (a write, a search, the app's sessions) waits at most one small step, and gets at least
# half the time while the index builds.
STEP = 500  # vectors per Chroma upsert step: about 0.2 s here when the machine is quiet
REST = 1.0  # the worker rests this many times the length of each Chroma step
INLINE_BACKLOG = 2_000  # an approximate search catches up itself when this few are missing (about a second)
QUIET_S = 0.5  # the worker starts a step only after writes paused this long
APP_QUIET_S = 0.3  # and, in the app, after its last run ended this long ago (``IndexSync.idle``)
POLL_S = 10.0  # and looks for work written by other processes this often

_running: "weakref.WeakSet[IndexSync]" = weakref.WeakSet()
_exit_hook: list[bool] = []


def _stop_all() -> None:  # a process that exits without close(): end the current step, then stop
    for syncer in list(_running):
        syncer.stop()


@dataclass(frozen=True)
class IndexState:
    """How far one set's index is behind the catalog."""

    vectors: int  # in the catalog
    pending: int  # written after the high-water mark: not in the index yet
    tombstones: int  # deleted from the catalog, still to delete from the index
    owned: bool  # whether this process keeps the index (else another process does)

    @property
    def caught_up(self) -> bool:
        return self.pending == 0 and self.tombstones == 0

    @property
    def indexed(self) -> int:
        return self.vectors - self.pending

    def describe(self) -> str:
        """One line for `info` and the Feature sets page."""
        if self.caught_up:
            return "up to date"
        share = f"{self.indexed:,} of {self.vectors:,} vectors indexed"
        if self.pending == 0:
            share = f"{self.tombstones:,} deletions to apply"
        who = "building in the background" if self.owned else "the process that owns the index builds it"
        return f"{who}: {share}"


class IndexSync:
    """The index upkeep of one workspace; ``known_files`` are the HNSW files last known good."""

    def __init__(self, ws: "Workspace", known_files: dict | None) -> None:
        self.ws = ws
        self._index_files = known_files
        self._step_lock = threading.RLock()  # one step at a time in this process
        self._wake = threading.Event()
        self._halt = threading.Event()
        self._dirty_files: set[str] = set()  # sets whose vector files the worker refreshes
        self._last_write = 0.0
        self._writers = 0  # writes under way (``writing``): the worker starts no step meanwhile
        self._writers_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.error: str | None = None  # the worker's last failure, shown by `info`
        self.inline_backlog = INLINE_BACKLOG
        # Seconds since the app last served a user (0 while it does), set by the app's warm-up:
        # a Chroma step holds the GIL, so none starts while a page runs (a 1M set's catch-up
        # took 130 of 300 samples of a first map visit). None: no app, no wait.
        self.idle: Callable[[], float] | None = None

    # ---- the worker ---------------------------------------------------------------------
    def start(self) -> None:
        """Start the worker thread (once); it catches up everything left from earlier runs."""
        if not _exit_hook:  # registered after chromadb's own exit hooks, so it runs before them
            atexit.register(_stop_all)
            _exit_hook.append(True)
        if self._thread is None:
            self._halt.clear()
            self._thread = threading.Thread(target=self._work, name=f"index-sync {self.ws.path}", daemon=True)
            _running.add(self)
            self._thread.start()
            self._wake.set()

    def stop(self) -> None:
        """Finish the current step and end the worker (what is left resumes at the next open)."""
        self._halt.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
            self._thread = None
        _running.discard(self)

    @contextmanager
    def writing(self):
        """Around a large write: no step starts while it runs. A 100k-vector batch takes
        seconds, so the pause after the last write alone let the worker decode blobs and open
        Chroma (holding the GIL) in the middle of the next batch of a bulk load."""
        with self._writers_lock:
            self._writers += 1
        try:
            yield
        finally:
            with self._writers_lock:
                self._writers -= 1
            self._last_write = time.monotonic()

    def written(self, set_ids) -> None:
        """Writers call this after their transaction: the worker takes it from there."""
        self._dirty_files.update(set_ids)
        self._last_write = time.monotonic()
        self._wake.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every set's index is caught up (True), or ``timeout`` seconds passed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.ws.owns_index and any(self.behind(s) for s in self._set_ids()):
            if deadline is not None and time.monotonic() > deadline:
                return False
            self._wake.set()
            time.sleep(0.1)
        return True

    def behind(self, set_id: str) -> bool:
        """Whether the set's index misses anything (cheap: no counting)."""
        return bool(self.ws.catalog.scalar(
            "SELECT EXISTS(SELECT 1 FROM features WHERE feature_set_id=?1 AND rid>feature_sets.indexed_rid)"
            " OR EXISTS(SELECT 1 FROM index_tombstones WHERE feature_set_id=?1) FROM feature_sets WHERE id=?1",
            (set_id,)))

    def _work(self) -> None:
        while not self._halt.is_set():
            self._wake.wait(POLL_S)
            self._wake.clear()
            try:
                while not self._halt.is_set() and self._one_step():
                    pass
                self.error = None
            except Exception as exc:  # noqa: BLE001 - the worker outlives one bad step; the next write retries
                if guard.exiting():  # a step cut short by the exit: the next open redoes it
                    return
                self.error = f"{type(exc).__name__}: {exc}"
                log.exception("index upkeep failed; retrying at the next write")
                self._halt.wait(5)

    def _quiet(self) -> bool:
        """Wait for writes to pause; False when stopping."""
        while not self._halt.is_set():
            idle = 0.0 if self._writers else time.monotonic() - self._last_write
            if idle >= QUIET_S:
                return True
            self._halt.wait(QUIET_S - idle)
        return False

    def _one_step(self) -> bool:
        """Do one unit of work (True), or find nothing left to do (False)."""
        if not self._quiet() or guard.exiting():
            return False
        if self._dirty_files:
            set_id = self._dirty_files.pop()
            fs = self._set(set_id)
            if fs is not None:
                self.ws.vectors.load(fs.id, fs.size)
            return True
        if not self.ws.owns_index:
            return False
        for sid in self._set_ids():  # the index opens here only when some set is behind
            if not (self.behind(sid) and until_idle(self.idle, APP_QUIET_S, self._halt)):  # False: halted
                continue
            started = time.monotonic()
            if self.step(sid):
                self._halt.wait(REST * (time.monotonic() - started))
                return True
        return False

    # ---- steps ------------------------------------------------------------------------------
    def step(self, sid: str, batch: int | None = None) -> bool:
        """Apply the set's tombstones, or else index its next ``batch`` features; False when
        it was caught up. Idempotent, so safe to redo after a crash."""
        if self.ws.index is None:
            return False
        with self._step_lock, exclusive(self.ws.path / "index-sync.lock"):
            wrote = self._apply_tombstones(sid) or self._upsert_next(sid, batch or STEP)
            if wrote:
                self.note_files()
            return wrote

    def sync(self, set_id: str | None = None, batch: int | None = None) -> None:
        """Bring Chroma up to date with the catalog now, in this thread: tombstones first,
        then every feature written after the set's high-water mark."""
        if not self.ws.owns_index:  # another process owns the index and catches up from the catalog
            return
        if set_id is None:
            self.drop_orphans()
        for sid in [set_id] if set_id else self._set_ids():
            while self.behind(sid) and self.step(sid, batch):
                pass

    def drop_orphans(self) -> None:
        """Drop collections whose set is gone (deleted by a process that did not own the index)."""
        if self.ws.index is not None:
            with self._step_lock:
                self.ws.index.drop_others(set(self._set_ids()))

    def drop_set(self, set_id: str) -> None:
        """A deleted set's collection, dropped between steps (a step never recreates it)."""
        # Not open: its first open drops it with the other orphans. Asked outside the step
        # lock: an open under way takes that lock for its own chores, and this waits for it.
        index = self.ws.index_if_open
        if index is not None:
            with self._step_lock:
                index.drop(set_id)
                self.note_files()

    def state(self, set_id: str) -> IndexState:
        catalog = self.ws.catalog
        row = catalog.one(
            "SELECT (SELECT COUNT(*) FROM features WHERE feature_set_id=?1),"
            " (SELECT COUNT(*) FROM features WHERE feature_set_id=?1 AND rid>feature_sets.indexed_rid),"
            " (SELECT COUNT(*) FROM index_tombstones WHERE feature_set_id=?1) FROM feature_sets WHERE id=?1",
            (set_id,))
        vectors, pending, tombstones = row if row is not None else (0, 0, 0)
        return IndexState(vectors, pending, tombstones, self.ws.owns_index)

    def ready(self, set_id: str) -> bool:
        """Whether an approximate search of the set may use the index now: it is caught up,
        or so little is missing that catching up here costs about a second."""
        if not self.ws.owns_index:
            return False
        if not self.behind(set_id):
            return self.ws.index is not None  # opens it at the first approximate search
        state = self.state(set_id)
        if state.pending + state.tombstones > self.inline_backlog:
            self._wake.set()
            return False
        self.sync(set_id)
        return True

    def _set_ids(self) -> list[str]:
        return [r[0] for r in self.ws.catalog.all("SELECT id FROM feature_sets ORDER BY created_at")]

    def _set(self, set_id: str):
        row = self.ws.catalog.one("SELECT * FROM feature_sets WHERE id=?", (set_id,))
        return None if row is None else self.ws.feature_sets.from_row(row)

    def note_files(self) -> None:
        """Record the embedded index's HNSW files as good (this process wrote them whole)."""
        ws = self.ws
        index = ws.index_if_open
        if index is not None and index.url is None:
            self._index_files = guard.note_files(ws.catalog, ws.path / "chroma", self._index_files)

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

    def _upsert_next(self, sid: str, batch: int) -> bool:
        catalog = self.ws.catalog
        mark = catalog.scalar("SELECT indexed_rid FROM feature_sets WHERE id=?", (sid,))
        if mark is None:
            return False
        rows = catalog.all(
            "SELECT rid, entity_id, value FROM features WHERE feature_set_id=? AND rid>? ORDER BY rid LIMIT ?",
            (sid, mark, batch),
        )
        if not rows:
            return False
        values = np.frombuffer(b"".join(r[2] for r in rows), dtype=np.float32).reshape(len(rows), -1)
        self.ws.index.upsert(sid, [r[1] for r in rows], values)
        with catalog.transaction() as c:  # the mark moves only once Chroma holds the batch
            c.execute("UPDATE feature_sets SET indexed_rid=? WHERE id=?", (rows[-1][0], sid))
        return True

    # ---- checks and repair ---------------------------------------------------------------
    def check(self, set_id: str) -> dict:
        """Compare the index with the catalog for one set (catching up first, here)."""
        index = self.ws.require_index()
        self.sync(set_id)
        in_catalog = self.ws.catalog.scalar("SELECT COUNT(*) FROM features WHERE feature_set_id=?", (set_id,))
        try:
            in_index = index.count(set_id)
        except Exception as exc:
            return {"ok": False, "catalog": in_catalog, "index": None, "error": str(exc)}
        return {"ok": in_catalog == in_index, "catalog": in_catalog, "index": in_index}

    def repair(self, set_id: str | None = None, *, now: bool = True) -> list[str]:
        """Rebuild Chroma collections from the vectors in the catalog; return the set ids
        rebuilt. ``now=False`` leaves the rebuilding to the worker."""
        index, catalog = self.ws.require_index(), self.ws.catalog
        set_ids = [set_id] if set_id else self._set_ids()
        for sid in set_ids:
            with self._step_lock:
                index.drop(sid)
                with catalog.transaction() as c:
                    c.execute("UPDATE feature_sets SET indexed_rid=0 WHERE id=?", (sid,))
                    c.execute("DELETE FROM index_tombstones WHERE feature_set_id=?", (sid,))
            if now:
                self.sync(sid)
        self._wake.set()
        return set_ids

    def _plausible(self, set_id: str) -> bool:
        """Whether the index's count fits the catalog without catching up first: at least
        every vector indexed so far, at most every vector plus those still to delete."""
        catalog = self.ws.catalog
        indexed, total, tombs = catalog.one(
            "SELECT (SELECT COUNT(*) FROM features WHERE feature_set_id=?1 AND rid<=feature_sets.indexed_rid),"
            " (SELECT COUNT(*) FROM features WHERE feature_set_id=?1),"
            " (SELECT COUNT(*) FROM index_tombstones WHERE feature_set_id=?1) FROM feature_sets WHERE id=?1",
            (set_id,))
        try:
            in_index = self.ws.index.count(set_id)
        except Exception as exc:  # noqa: BLE001 - unreadable is damage
            log.warning("cannot count the index of %s: %s", set_id, exc)
            return False
        return indexed <= in_index <= total + tombs

    def rebuild_damaged(self) -> list[str]:
        """Names of the sets whose index disagreed with the catalog at open (a deleted or
        replaced Chroma folder, say): their index is dropped and rebuilt in the background."""
        if self.ws.index is None:
            return []
        rebuilt = []
        for fs in self.ws.feature_sets.list():
            if not self._plausible(fs.id):
                log.warning("index of %s disagrees with the catalog; rebuilding it", fs.name)
                self.repair(fs.id, now=False)
                rebuilt.append(fs.name)
        return rebuilt
