"""The search engine: answers a parsed plan (``language.Query``) with a page of records.

Three rankers answer, each behind the same small interface (``Ranker``):

- ``CatalogListing``: no vector clause, a listing in SQL from the catalog;
- ``HnswRanker``: an approximate, nearest-first vector search in the Chroma index;
- ``ExactRanker``: every other vector search, an exact scan of the set held in memory.

``SearchEngine.choose`` holds the one rule: the first registered ranker, in order, that
can answer the plan. Another way (a GPU scan, another index) joins with ``register``.
The engine also keeps each set's vectors in memory (``matrix``), cached by version.
"""
from __future__ import annotations

import dataclasses
import json
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, Sequence

import numpy as np

from ..errors import InvalidInput, NotFound
from ..records import FeatureSet, Pages
from . import exact, language as q, metric

if TYPE_CHECKING:
    from ..workspace import Workspace

_FROM = {
    "items": "items",
    "annotations": "annotations JOIN items ON items.id = annotations.item_id",
    "feature_vectors": "features",
    "datasets": "datasets",
    "feature_sets": "feature_sets",
}
_ORDER = {"items": "items.dir, items.name, items.id", "annotations": "annotations.created_at, annotations.id",
          "feature_vectors": "features.rid", "datasets": "datasets.created_at, datasets.name",
          "feature_sets": "feature_sets.created_at, feature_sets.name"}
_SELECT = {"items": "items.*", "annotations": "annotations.*", "feature_vectors": "features.*",
           "datasets": "datasets.*", "feature_sets": "feature_sets.*"}
_ID_COLUMN = {"items": "items.id", "annotations": "annotations.id", "feature_vectors": "features.entity_id",
              "datasets": "datasets.id", "feature_sets": "feature_sets.id"}
# A search inside one dataset; a dataset's feature sets are those with vectors in it (as in Dataloop).
_IN_DATASET = {"items": "items.dataset_id = ?", "annotations": "items.dataset_id = ?",
               "feature_vectors": "features.dataset_id = ?", "datasets": "datasets.id = ?",
               "feature_sets": "feature_sets.id IN (SELECT feature_set_id FROM features WHERE features.dataset_id = ?)"}
_ALWAYS = {"datasets": "datasets.name NOT LIKE '.importing-%'"}  # imports in progress are not datasets yet


@dataclass
class Plan:
    """One query as a ranker sees it: the parsed query, the dataset it is limited to and,
    for a vector search, the feature set and the query vector (checked against the set)."""

    query: q.Query
    dataset_id: str | None
    fs: FeatureSet | None = None
    query_vector: np.ndarray | None = None

    @property
    def filtered(self) -> bool:
        return bool(self.query.filter) or self.dataset_id is not None

    @property
    def limit(self) -> int:
        """How many results the page needs ranked (offset + page size)."""
        return self.query.offset + self.query.page_size


@dataclass
class Answer:
    records: list  # the page's records, in result order
    total: int  # how many results there are in all (before paging)


class Ranker(Protocol):
    """One way to answer a plan."""

    name: str

    def can_answer(self, plan: Plan) -> bool:
        """Whether this ranker gives the answer the plan asks for (exact or approximate)."""
        ...

    def rank(self, plan: Plan) -> Answer: ...


class CatalogListing:
    """No vector clause: the resource's rows that pass the filter, in the catalog's order."""

    name = "catalog"

    def __init__(self, engine: "SearchEngine") -> None:
        self.engine = engine

    def can_answer(self, plan: Plan) -> bool:
        return plan.query.vector is None

    def rank(self, plan: Plan) -> Answer:
        query, ws = plan.query, self.engine.ws
        where, params = self.engine.where(query, plan.dataset_id)
        table = _FROM[query.resource]
        total = ws.catalog.scalar(f"SELECT COUNT(*) FROM {table} WHERE {where}", params)
        order, order_params = q.order_sql(query, _ORDER[query.resource])
        rows = ws.catalog.all(
            f"SELECT {_SELECT[query.resource]} FROM {table} WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?",
            [*params, *order_params, query.page_size, query.offset],
        )
        make = {"items": ws.item_from_row, "annotations": ws.annotation_from_row,
                "feature_vectors": ws.feature_from_row, "datasets": ws.datasets.from_row,
                "feature_sets": ws.feature_sets.from_row}[query.resource]
        return Answer([make(r) for r in rows], total)


class HnswRanker:
    """Approximate nearest-first search in the Chroma index."""

    name = "hnsw"

    def __init__(self, engine: "SearchEngine") -> None:
        self.engine = engine

    def can_answer(self, plan: Plan) -> bool:
        # HNSW cannot rank farthest-first nor by other fields; a process that does not own the
        # index uses exact search, and
        clause = plan.query.vector
        # the index while it is still being built (``IndexSync.ready``) neither.
        return (clause is not None and clause.approximate and not clause.descending and not plan.query.sort
                and self.engine.ws.index_sync.ready(plan.fs.id))

    def rank(self, plan: Plan) -> Answer:
        engine, clause, query = self.engine, plan.query.vector, plan.query
        allowed = engine.allowed_ids(query, plan.dataset_id) if plan.filtered else None
        entity_ids, dists = engine.ws.index.query(plan.fs.id, plan.query_vector, plan.limit, allowed)
        if clause.distance_ops:
            keep = exact.passes(dists, clause.distance_ops)
            entity_ids, dists = [e for e, k in zip(entity_ids, keep) if k], dists[keep]
        total = len(entity_ids)
        page_ids, page_d = entity_ids[query.offset :], dists[query.offset :]
        return Answer(engine.records_with_distance(query.resource, plan.fs, page_ids, page_d), total)


class ExactRanker:
    """Exact search (either order, any distance filter) over the set's vectors in memory."""

    name = "exact"

    def __init__(self, engine: "SearchEngine") -> None:
        self.engine = engine

    def can_answer(self, plan: Plan) -> bool:
        return plan.query.vector is not None

    def rank(self, plan: Plan) -> Answer:
        engine, clause, query = self.engine, plan.query.vector, plan.query
        m = engine.matrix(plan.fs)
        rows = engine.allowed_rows(query, plan.dataset_id, m) if plan.filtered else None
        # With a sort, every passing vector is ranked first, then the sort orders them all.
        limit = None if query.sort else plan.limit
        hits = exact.search(m, plan.query_vector, rows, clause.distance_ops, clause.descending, limit)
        ids, dists = m.entity_ids[hits.rows].tolist(), hits.distances
        if query.sort:
            ids, dists = engine.in_sort_order(query, plan.fs, ids, dists)
        page_ids, page_d = ids[query.offset : plan.limit], dists[query.offset : plan.limit]
        return Answer(engine.records_with_distance(query.resource, plan.fs, page_ids, page_d), hits.total)


def _sql_order(value: Any) -> tuple:
    """A sort key that orders Python values as SQLite does: null, numbers, text, blobs."""
    if value is None:
        return (0, 0)
    if isinstance(value, (int, float)):
        return (1, value)
    return (2, value) if isinstance(value, str) else (3, value)


class SearchEngine:
    """Answers queries for one workspace; owns the in-memory vectors of its sets."""

    RANKERS = (CatalogListing, HnswRanker, ExactRanker)  # in the order ``choose`` asks them

    def __init__(self, ws: "Workspace") -> None:
        self.ws = ws
        self.rankers: list[Ranker] = [make(self) for make in self.RANKERS]
        self._matrices: dict[str, exact.VectorMatrix] = {}
        self._matrix_lock = threading.Lock()
        self._allowed_cache: dict[tuple, np.ndarray] = {}  # filter -> matrix rows, see allowed_rows

    # ---- choosing a ranker -------------------------------------------------------------
    def register(self, ranker: Ranker, *, before: str | None = None) -> None:
        """Add a ranker, asked before the one named ``before`` (last when None)."""
        names = [r.name for r in self.rankers]
        self.rankers.insert(names.index(before) if before in names else len(names), ranker)

    def choose(self, plan: Plan) -> Ranker:
        """The one rule: the first ranker, in order, that can answer the plan."""
        for ranker in self.rankers:
            if ranker.can_answer(plan):
                return ranker
        raise InvalidInput("no search method can answer this query")

    # ---- answering ---------------------------------------------------------------------
    def search(self, filters: Any, *, dataset_id: str | None = None) -> Pages:
        """Run a filter (the seed's custom_filter JSON, a ``Filters`` or the SDK's, or a ``Query``)."""
        query = filters if isinstance(filters, q.Query) else q.parse(filters)
        if query.operation is not None:
            raise InvalidInput(
                f"this filter {query.operation.kind}s what it matches; run it with ws.bulk(...) "
                f"(or dataset.items.{query.operation.kind}(filters=...)), not as a search"
            )
        return self.answer(query, dataset_id)

    def answer(self, query: q.Query, dataset_id: str | None) -> Pages:
        """One page of the answer to ``query``, able to fetch the pages after it."""
        def fetch(page: int) -> Pages:
            return self.answer(dataclasses.replace(query, page=page), dataset_id)

        plan = self.plan(query, dataset_id)
        ranker = self.choose(plan)
        found = ranker.rank(plan)
        return Pages(found.records, found.total, query.page, query.page_size, fetch, self.fallback_note(plan, ranker))

    def fallback_note(self, plan: Plan, ranker: Ranker) -> str:
        """What to tell the user when an approximate search was answered exactly instead."""
        clause = plan.query.vector
        if clause is None or not clause.approximate or ranker.name == "hnsw":
            return ""
        if clause.descending or plan.query.sort:
            return "approximate search ranks nearest first only: answered by exact search"
        if not self.ws.owns_index:
            return (f"the approximate index is kept by another process ({self.ws.index_location}): "
                    "answered by exact search")
        return (f"the approximate index of {plan.fs.name!r} is not ready "
                f"({self.ws.index_state(plan.fs.id).describe()}): answered by exact search")

    def plan(self, query: q.Query, dataset_id: str | None) -> Plan:
        """The query with its feature set and query vector looked up and checked."""
        clause = query.vector
        if clause is None:
            return Plan(query, dataset_id)
        fs = self.ws.feature_sets.resolve(clause.feature_set_id)  # an id, or (for hand-written files) a name
        wanted = {"items": "item", "annotations": "annotation"}.get(query.resource)
        if wanted and fs.entity_type != wanted:
            raise InvalidInput(
                f"feature set {fs.name!r} holds {fs.entity_type} vectors; search it with resource "
                f"'{'items' if fs.entity_type == 'item' else 'annotations'}' or 'feature_vectors'"
            )
        return Plan(query, dataset_id, fs, self.ws.query_vector(fs, clause.input))

    # ---- what the rankers share --------------------------------------------------------
    def where(self, query: q.Query, dataset_id: str | None) -> tuple[str, list]:
        """The query's filter (and dataset) as an SQL condition with its parameters."""
        where, params = q.where_sql(query)
        if dataset_id is not None:
            where, params = f"({where}) AND {_IN_DATASET[query.resource]}", [*params, dataset_id]
        if query.resource in _ALWAYS:
            where = f"({where}) AND {_ALWAYS[query.resource]}"
        return where, params

    def allowed_ids(self, query: q.Query, dataset_id: str | None) -> list[str]:
        """The entity ids that the query's item / annotation filter lets through."""
        where, params = self.where(query, dataset_id)
        sql = f"SELECT {_ID_COLUMN[query.resource]} FROM {_FROM[query.resource]} WHERE {where}"
        return [r[0] for r in self.ws.catalog.all(sql, params)]

    def allowed_rows(self, query: q.Query, dataset_id: str | None, m: exact.VectorMatrix) -> np.ndarray:
        """The matrix rows the filter lets through, kept until the catalog changes: the seed's
        own filter ({"hidden": false}, ...) passes most of a set, and reading 100k ids from
        SQLite costs ten times the search itself, while a user runs query after query with
        the same filter."""
        where, params = self.where(query, dataset_id)
        key = (m.version, id(m), query.resource, where, json.dumps(params, default=str), self.ws.catalog.change_stamp())
        with self._matrix_lock:
            rows = self._allowed_cache.get(key)
        if rows is None:
            rows = m.rows_for(self.allowed_ids(query, dataset_id))
            with self._matrix_lock:
                self._allowed_cache[key] = rows
                while len(self._allowed_cache) > 16:
                    self._allowed_cache.pop(next(iter(self._allowed_cache)))
        return rows

    def in_sort_order(self, query: q.Query, fs: FeatureSet, entity_ids: list[str],
                      distances: np.ndarray) -> tuple[list, np.ndarray]:
        """Ranked entities reordered by the query's ``sort`` (SQLite's order: null, numbers,
        text), ties by id."""
        keys = q.sort_columns(query)
        exprs = ", ".join(sql for sql, _, _ in keys)
        params = tuple(p for _, ps, _ in keys for p in ps)
        if query.resource == "feature_vectors":  # the entity's vector in this set
            sql = f"SELECT features.entity_id, {exprs} FROM features WHERE features.feature_set_id = ? AND "
            params = (*params, fs.id)
        else:
            sql = f"SELECT {_ID_COLUMN[query.resource]}, {exprs} FROM {_FROM[query.resource]} WHERE "
        sql += f"{_ID_COLUMN[query.resource]} IN ({{}})"
        values = {r[0]: tuple(r[1:]) for r in self.ws.rows_by_ids(sql, entity_ids, params)}
        missing = (None,) * len(keys)
        order = list(range(len(entity_ids)))
        for k in reversed(range(len(keys))):  # stable sorts, last key first
            order.sort(key=lambda i: _sql_order(values.get(entity_ids[i], missing)[k]), reverse=keys[k][2])
        return [entity_ids[i] for i in order], np.asarray(distances)[order]

    def records_with_distance(self, resource: str, fs: FeatureSet, entity_ids: Sequence[str], distances) -> list:
        """The records of ranked entities, in rank order, each with its ``distance``."""
        ws = self.ws
        if resource == "items":
            found = ws.items_by_ids(entity_ids)
        elif resource == "annotations":
            rows = ws.rows_by_ids("SELECT * FROM annotations WHERE id IN ({})", entity_ids)
            found = {r["id"]: ws.annotation_from_row(r) for r in rows}
        else:
            rows = ws.rows_by_ids("SELECT * FROM features WHERE feature_set_id=? AND entity_id IN ({})", entity_ids,
                                  (fs.id,))
            found = {r["entity_id"]: ws.feature_from_row(r) for r in rows}
        out = []
        for eid, d in zip(entity_ids, distances):
            rec = found.get(eid)
            if rec is not None:  # deleted between ranking and fetching
                rec.distance = float(d)
                out.append(rec)
        return out

    # ---- the vectors in memory ---------------------------------------------------------
    def matrix(self, fs: FeatureSet) -> exact.VectorMatrix:
        """All vectors of a set, cached in memory until the set's version changes; read from
        the set's memory-mapped files (``store.vectors``), which catch up with the catalog
        first when it moved past them."""
        version = self.ws.catalog.scalar("SELECT version FROM feature_sets WHERE id=?", (fs.id,))
        if version is None:
            raise NotFound(f"feature set {fs.name!r} no longer exists")
        with self._matrix_lock:
            cached = self._matrices.get(fs.id)
            if cached is not None and cached.version == version:
                return cached
            got = self.ws.vectors.load(fs.id, fs.size)
            if got is None:
                raise NotFound(f"feature set {fs.name!r} no longer exists")
            m = exact.VectorMatrix(entity_ids=got.entity_ids, feature_ids=got.feature_ids, values=got.values,
                                   version=got.version, sq_norms=got.sq_norms)
            self._matrices[fs.id] = m
            return m

    def forget(self, set_id: str | None = None) -> None:
        """Drop a set's vectors from memory (every set's when None): a deleted set, or a
        benchmark that wants the next read to come from SQLite."""
        with self._matrix_lock:
            if set_id is None:
                self._matrices.clear()
            else:
                self._matrices.pop(set_id, None)

    def distances_to(self, fs: FeatureSet, value: list[float] | str | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every vector's distance to a query (a vector or a feature id): ``(entity_ids,
        distances)`` in the set's own order. For pictures (a histogram, a map's colours):
        float32 precision, not the exact ranking that ``search`` gives."""
        vec = self.ws.query_vector(fs, value)
        m = self.matrix(fs)
        return m.entity_ids, metric.approx_distances(m.sq_norms, m.values, vec)

    def distance_profile(self, filters: Any, *, dataset_id: str | None = None) -> np.ndarray:
        """The distance to the query of every vector that the search's item filters (and
        dataset) let through, whatever its k or distance limit: what a histogram under the
        results shows. float32 precision, as ``distances_to``."""
        query = filters if isinstance(filters, q.Query) else q.parse(filters)
        if query.vector is None:
            raise InvalidInput("a distance profile needs a search with a $euclid join (a query vector)")
        plan = self.plan(query, dataset_id)
        m = self.matrix(plan.fs)
        rows = self.allowed_rows(query, dataset_id, m) if plan.filtered else None
        sq, values = (m.sq_norms, m.values) if rows is None else (m.sq_norms[rows], m.values[rows])
        return metric.approx_distances(sq, values, plan.query_vector)

    def query_for_entities(self, fs: FeatureSet, entity_ids: Sequence[str]) -> str | list[float]:
        """A query standing for some of a set's entities ("search from here"): the feature id
        of a single entity, or the mean of several entities' vectors."""
        m = self.matrix(fs)
        rows = m.rows_for(list(dict.fromkeys(entity_ids)))
        if len(rows) == 0:
            raise InvalidInput(f"none of the chosen points has a vector in {fs.name!r} any more; select again")
        if len(rows) == 1:
            return str(m.feature_ids[rows[0]])
        return m.values[rows].astype(np.float64).mean(axis=0).astype(np.float32).tolist()
