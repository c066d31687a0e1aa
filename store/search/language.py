"""The filter language: Dataloop-style JSON -> a checked plan.

Accepts the seed's ``custom_filter`` as written (``forigen`` included), and what the
Dataloop SDK's ``Filters.prepare()`` sends (or the ``Filters`` object itself): ``sort`` on
any fields, the SDK's key paging (``sort: {id: ...}`` with ``{"id": {"$gt": last}}``),
folder globs (``/folder/**``), ISO-8601 dates, ``context``, ``$and`` / ``$or`` inside
joins, joins to annotations or items, ``annotated``, ``$match``, and the bulk ``delete`` /
``update`` operations. Item fields and operators compile to SQL with bound parameters; the
``$euclid`` join becomes a ``VectorClause``. Every error names the bad part by its path.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

from ..errors import FilterError
from .metric import DISTANCE_OPS

RESOURCES = ("items", "annotations", "feature_vectors", "datasets", "feature_sets")
COMPARE_OPS = {"$eq": "=", "$ne": "!=", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
DEFAULT_PAGE_SIZE = 1000
MAX_PAGE_SIZE = 100_000
MAX_DEPTH = 32  # nesting of $and / $or

_FILENAME_SQL = "(CASE WHEN {t}.dir = '/' THEN '/' || {t}.name ELSE {t}.dir || '/' || {t}.name END)"
ITEM_FIELDS = {
    "id": "items.id",
    "name": "items.name",
    "filename": _FILENAME_SQL.format(t="items"),
    "dir": "items.dir",
    "type": "'file'",
    "kind": "items.kind",
    "mimetype": "items.mimetype",
    "size": "items.size",
    "width": "items.width",
    "height": "items.height",
    "hidden": "items.hidden",
    "datasetId": "items.dataset_id",
    "createdAt": "items.created_at",
    "annotated": "EXISTS (SELECT 1 FROM annotations AS a WHERE a.item_id = items.id)",
}
ANNOTATION_FIELDS = {
    "id": "annotations.id",
    "label": "annotations.label",
    "type": "annotations.type",
    "itemId": "annotations.item_id",
    "datasetId": "items.dataset_id",
    "createdAt": "annotations.created_at",
}
FEATURE_FIELDS = {
    "id": "features.id",
    "entityId": "features.entity_id",
    "featureSetId": "features.feature_set_id",
    "datasetId": "features.dataset_id",
    "createdAt": "features.created_at",
}
DATASET_FIELDS = {"id": "datasets.id", "name": "datasets.name", "createdAt": "datasets.created_at"}
FEATURE_SET_FIELDS = {
    "id": "feature_sets.id",
    "name": "feature_sets.name",
    "size": "feature_sets.size",
    "type": "feature_sets.set_type",
    "entityType": "feature_sets.entity_type",
    "createdAt": "feature_sets.created_at",
}
FIELDS_BY_RESOURCE = {"items": ITEM_FIELDS, "annotations": ANNOTATION_FIELDS, "feature_vectors": FEATURE_FIELDS,
                      "datasets": DATASET_FIELDS, "feature_sets": FEATURE_SET_FIELDS}
METADATA_TABLE = {"items": "items", "annotations": "annotations"}
GLOB_FIELDS = ("dir", "filename", "name")  # a value with '*' in these fields is a folder glob
DATE_FIELDS = ("createdAt",)  # stored as epoch seconds; filters may give ISO-8601 strings
CONTROL_KEYS = {"filter", "join", "page", "pageSize", "resource", "sort", "context", "systemSpace", "update",
                "delete"}
DIRECTIONS = {"ascending": False, "asc": False, 1: False, "descending": True, "desc": True, -1: True}
# What a join may link, per resource: (the joined resource, the outer column, the joined column).
JOINS = {
    ("items", "annotations"): ("items.id", "annotations.item_id"),
    ("annotations", "items"): ("annotations.item_id", "items.id"),
    ("items", "feature_vectors"): ("items.id", "features.entity_id"),
    ("annotations", "feature_vectors"): ("annotations.id", "features.entity_id"),
    ("feature_vectors", "feature_vectors"): ("features.id", "features.id"),  # the builder's add_euclid
}
_KEY = re.compile(r"^[A-Za-z0-9_\- ]+$")


@dataclass
class VectorClause:
    feature_set_id: str
    input: list[float] | str  # a vector, or the id of a stored feature
    distance_ops: dict[str, float] = field(default_factory=dict)
    descending: bool = False
    approximate: bool = False


@dataclass
class Join:
    """Keep only the records with a related record (annotation, item, feature vector) that
    passes ``filter``."""

    resource: str
    filter: dict


@dataclass
class Operation:
    """A bulk operation over every record the filter passes: ``delete``, or ``update`` with
    the values to merge."""

    kind: str  # "delete" | "update"
    values: dict = field(default_factory=dict)


@dataclass
class Query:
    resource: str = "items"
    filter: dict | None = None  # on the resource's own fields
    vector: VectorClause | None = None
    page: int = 0
    page_size: int = DEFAULT_PAGE_SIZE
    sort: list[tuple[str, bool]] = field(default_factory=list)  # (field, descending), applied before paging
    join: Join | None = None
    operation: Operation | None = None

    @property
    def offset(self) -> int:
        return self.page * self.page_size


def _fail(path: str, message: str) -> FilterError:
    return FilterError(f"filter error at {path or 'top level'}: {message}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _int_field(doc: dict, key: str, default: int, low: int, high: int) -> int:
    value = doc.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise _fail(key, f"must be an integer from {low} to {high}, got {value!r}")
    return value


def as_filter_json(custom_filter: Any) -> Any:
    """What a ``Filters``-like object (featurelab's, or the Dataloop SDK's) would post: its
    ``prepare()``; anything else as it is."""
    prepare = getattr(custom_filter, "prepare", None)
    return prepare() if callable(prepare) and not isinstance(custom_filter, dict) else custom_filter


def parse(custom_filter: Any, resource: str | None = None) -> Query:
    """Check a filter JSON (dict, string or ``Filters``-like object) and turn it into a ``Query``."""
    custom_filter = as_filter_json(custom_filter)
    if isinstance(custom_filter, str):
        try:
            custom_filter = json.loads(custom_filter)
        except json.JSONDecodeError as exc:
            raise FilterError(f"filter is not valid JSON: {exc}") from exc
        except RecursionError as exc:
            raise FilterError(f"filter is nested too deeply (at most {MAX_DEPTH} levels)") from exc
    if not isinstance(custom_filter, dict):
        raise _fail("", f"expected a JSON object, got {type(custom_filter).__name__}")
    doc = dict(custom_filter)
    if not set(doc) & CONTROL_KEYS:
        doc = {"filter": doc}  # like dtlpy: a bare condition is the filter
    unknown = set(doc) - CONTROL_KEYS
    if unknown:
        raise _fail("", f"unknown key(s) {sorted(unknown)}; expected some of {sorted(CONTROL_KEYS)}")
    if doc.get("context") is not None and not isinstance(doc["context"], dict):
        raise _fail("context", "must be an object such as {\"projects\": [...]}")  # one local project: no scope
    res = doc.get("resource", resource or "items")
    if res not in RESOURCES:
        raise _fail("resource", f"unknown resource {res!r}; use one of {list(RESOURCES)}")
    query = Query(
        resource=res,
        page=_int_field(doc, "page", 0, 0, 10**9),
        page_size=_int_field(doc, "pageSize", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE),
        sort=_parse_sort(doc.get("sort"), res),
        operation=_parse_operation(doc, res),
    )
    item_filter = doc.get("filter")
    if item_filter is not None and not isinstance(item_filter, dict):
        raise _fail("filter", "must be an object such as {\"hidden\": false}")
    if res == "feature_vectors":
        item_filter = dict(item_filter or {})
        query.vector = _hoist_vector_clause(item_filter, "filter")
    if "join" in doc:
        _parse_join(doc["join"], query)
    query.filter = item_filter or None
    if query.filter:
        compile_where(query.filter, res)  # validate now: fail before any work
    if query.join is not None:
        compile_where(query.join.filter, query.join.resource, "join.filter")
    return query


def _parse_sort(sort: Any, resource: str) -> list[tuple[str, bool]]:
    """``{"name": "ascending", "createdAt": "descending"}`` -> [(field, descending), ...]."""
    if sort is None or sort == {}:
        return []
    if not isinstance(sort, dict):
        raise _fail("sort", "must be an object such as {\"name\": \"ascending\"}")
    keys = []
    for name, direction in sort.items():
        _field_sql(name, resource, f"sort.{name}")
        key = direction.lower() if isinstance(direction, str) else direction
        if isinstance(key, bool) or key not in DIRECTIONS:
            raise _fail(f"sort.{name}", f"must be 'ascending' or 'descending', got {direction!r}")
        keys.append((name, DIRECTIONS[key]))
    return keys


def _parse_operation(doc: dict, resource: str) -> Operation | None:
    if "delete" in doc and "update" in doc:
        raise _fail("", "a query may delete or update, not both")
    if "delete" in doc:
        if doc["delete"] is not True:
            raise _fail("delete", "must be true")
        if resource == "feature_vectors":
            raise _fail("delete", "bulk delete works on items and annotations; delete features by id")
        return Operation("delete")
    if "update" not in doc:
        return None
    values = doc["update"]
    if resource != "items":
        raise _fail("update", f"bulk update works on items, not {resource}")
    if not isinstance(values, dict) or not values:
        raise _fail("update", "must be an object such as {\"metadata\": {\"user\": {...}}}")
    if set(values) - {"metadata", "hidden"}:
        raise _fail("update", f"can set 'metadata' and 'hidden', not {sorted(set(values) - {'metadata', 'hidden'})}")
    meta = values.get("metadata", {})
    if not isinstance(meta, dict):
        raise _fail("update.metadata", "must be an object")
    if "system" in meta:
        raise _fail("update.metadata.system", "metadata.system holds featurelab's own facts and cannot be set; "
                    "put your fields under metadata.user")
    if "hidden" in values and not isinstance(values["hidden"], bool):
        raise _fail("update.hidden", "must be true or false")
    return Operation("update", values)


def _hoist_vector_clause(node: dict, path: str) -> VectorClause | None:
    """Take the ``$euclid`` clause out of a feature-vector filter: at its top, or (as the SDK
    and ``add_join`` build it) spread over the elements of its ``$and``."""
    clause = _take_vector_clause(node, path)
    parts = node.get("$and")
    if clause is not None or not isinstance(parts, list):
        return clause
    if not any(isinstance(p, dict) and "value" in p for p in parts):
        return None
    gathered: dict = {}  # the vector's keys, from the elements that hold them (the first set id)
    for p in parts:
        if isinstance(p, dict) and ("value" in p or (set(p) == {"featureSetId"} and "featureSetId" not in gathered)):
            gathered.update(p)
    set_id = gathered.get("featureSetId")
    if isinstance(set_id, dict) and set(set_id) == {"$eq"}:
        gathered["featureSetId"] = set_id["$eq"]
    clause = _take_vector_clause({k: gathered[k] for k in ("value", "featureSetId") if k in gathered}, f"{path}.$and")
    rest = [p for p in parts if not (isinstance(p, dict) and ("value" in p or p.get("featureSetId") == set_id))]
    if rest:
        node["$and"] = rest
    else:
        node.pop("$and")
    return clause


def _parse_join(join: Any, query: Query) -> None:
    """A join to feature vectors (the ``$euclid`` search, and any other condition on the
    vectors), or, as the SDK's ``add_join`` makes, to an item's annotations / an
    annotation's item."""
    if not isinstance(join, dict):
        raise _fail("join", "must be an object with 'on' and 'filter'")
    on = join.get("on", {})
    if not isinstance(on, dict):
        raise _fail("join.on", "must be an object")
    other = on.get("resource", "feature_vectors")
    if (query.resource, other) not in JOINS:
        can = [b for a, b in JOINS if a == query.resource]
        raise _fail("join.on.resource", f"{query.resource} can be joined with {can}, got {other!r}")
    jf = join.get("filter")
    if not isinstance(jf, dict):
        raise _fail("join.filter", "must be an object such as {'value': {'$euclid': ...}, 'featureSetId': ...}")
    jf = dict(jf)
    if other == "feature_vectors":
        _check_join_keys(on, "entityId", "id")
        query.vector = _hoist_vector_clause(jf, "join.filter")
        if query.vector is not None:
            jf.pop("featureSetId", None)
    else:
        local, foreign = ("itemId", "id") if other == "annotations" else ("id", "itemId")
        _check_join_keys(on, local, foreign)
    if jf:
        query.join = Join(other, jf)


def _check_join_keys(on: dict, local: str, foreign: str) -> None:
    if on.get("local", local) != local:
        raise _fail("join.on.local", f"must be {local!r}, got {on.get('local')!r}")
    got = on.get("forigen", on.get("foreign", foreign))
    if got != foreign:
        raise _fail("join.on.forigen", f"must be {foreign!r}, got {got!r}")


def _take_vector_clause(jf: dict, path: str) -> VectorClause | None:
    """Pop ``value``/``featureSetId`` from ``jf`` and check them."""
    value = jf.pop("value", None)
    set_id = jf.pop("featureSetId", None)
    if value is None:
        if set_id is not None:
            jf["featureSetId"] = set_id  # a plain field filter on feature_vectors
        return None
    if not isinstance(set_id, str) or not set_id:
        raise _fail(f"{path}.featureSetId", "missing: give the id of the feature set to search")
    if not isinstance(value, dict) or set(value) != {"$euclid"}:
        raise _fail(f"{path}.value", "must be {'$euclid': {'input': ..., ...}}")
    eu = value["$euclid"]
    p = f"{path}.value.$euclid"
    if not isinstance(eu, dict):
        raise _fail(p, "must be an object with 'input'")
    allowed = {"input", "$euclidFilter", "$euclidSort", "$approximate"}
    if set(eu) - allowed:
        raise _fail(p, f"unknown key(s) {sorted(set(eu) - allowed)}; expected some of {sorted(allowed)}")
    if "input" not in eu:
        raise _fail(f"{p}.input", "missing: give a vector (list of numbers) or a feature id")
    vec = eu["input"]
    if isinstance(vec, str):
        if not vec:
            raise _fail(f"{p}.input", "an empty string is not a feature id")
    elif isinstance(vec, (list, tuple)):
        if not vec:
            raise _fail(f"{p}.input", "the vector is empty")
        if not set(map(type, vec)) <= {int, float}:  # fast path for long vectors; bool is not int here
            i, x = next((i, x) for i, x in enumerate(vec) if not _is_number(x))
            raise _fail(f"{p}.input[{i}]", f"must be a number, got {x!r}")
        try:
            arr = np.asarray(vec, dtype=np.float64)
        except OverflowError as exc:
            raise _fail(f"{p}.input", f"a number is too large: {exc}") from exc
        if not np.isfinite(arr).all():
            i = int(np.flatnonzero(~np.isfinite(arr))[0])
            raise _fail(f"{p}.input[{i}]", f"must be finite, got {vec[i]!r}")
        vec = arr.tolist()
    else:
        raise _fail(f"{p}.input", f"must be a list of numbers or a feature id string, got {type(vec).__name__}")
    ops: dict[str, float] = {}
    if "$euclidFilter" in eu:
        ef = eu["$euclidFilter"]
        if not isinstance(ef, dict) or not ef:
            raise _fail(f"{p}.$euclidFilter", "must be an object like {'$lte': 0.8}")
        for op, bound in ef.items():
            if op not in DISTANCE_OPS:
                raise _fail(f"{p}.$euclidFilter", f"unknown operator {op!r}; use one of {list(DISTANCE_OPS)}")
            if not _is_number(bound) or not math.isfinite(bound):
                raise _fail(f"{p}.$euclidFilter.{op}", f"must be a finite number, got {bound!r}")
            ops[op] = float(bound)
    descending = False
    if "$euclidSort" in eu:
        es = eu["$euclidSort"]
        if not isinstance(es, dict) or set(es) != {"eu_dist"} or es["eu_dist"] not in ("ascending", "descending"):
            raise _fail(f"{p}.$euclidSort", "must be {'eu_dist': 'ascending'} or {'eu_dist': 'descending'}")
        descending = es["eu_dist"] == "descending"
    approximate = eu.get("$approximate", False)
    if not isinstance(approximate, bool):
        raise _fail(f"{p}.$approximate", "must be true or false")
    return VectorClause(set_id, vec, ops, descending, approximate)


def _field_sql(name: str, resource: str, path: str) -> tuple[str, list]:
    fields = FIELDS_BY_RESOURCE[resource]
    if name in fields:
        return fields[name], []
    if name.startswith("metadata.") and resource in METADATA_TABLE:
        keys = name.split(".")[1:]
        if not keys or not all(_KEY.match(k) for k in keys):
            raise _fail(path, f"bad metadata field {name!r}: use dotted keys of letters, digits, '_', '-'")
        json_path = "$" + "".join(f'."{k}"' for k in keys)
        return f"json_extract({METADATA_TABLE[resource]}.metadata, ?)", [json_path]
    known = sorted(fields) + (["metadata.<key>"] if resource in METADATA_TABLE else [])
    raise _fail(path, f"unknown field {name!r} for {resource}; known fields: {known}")


def _sql_value(value: Any, path: str) -> Any:
    if isinstance(value, bool):
        return int(value)
    if value is None or isinstance(value, str) or _is_number(value):
        if isinstance(value, float) and not math.isfinite(value):
            raise _fail(path, f"must be a finite number, got {value!r}")
        return value
    raise _fail(path, f"must be a string, number, boolean or null, got {type(value).__name__}")


def _date_value(value: Any, path: str) -> Any:
    """A date as epoch seconds: the number itself, or an ISO-8601 string (the SDK's shape;
    without a zone, UTC)."""
    if not isinstance(value, str):
        return value
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise _fail(path, f"{value!r} is not a date; use ISO-8601 (2024-05-01T12:00:00Z) or epoch seconds") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _condition(column: str, col_params: list, op: str, value: Any, path: str, name: str = "") -> tuple[str, list]:
    """One ``field op value`` as SQL; ``name`` (the field) decides globs and dates."""
    if name in DATE_FIELDS:
        value = [_date_value(v, path) for v in value] if isinstance(value, list) else _date_value(value, path)
    if name in GLOB_FIELDS and op in ("$eq", "$ne", "$in", "$nin"):
        globbed = _glob_condition(column, col_params, op, value, path)
        if globbed is not None:
            return globbed
    if op in ("$eq", "$ne"):
        v = _sql_value(value, path)
        if v is None:
            return f"{column} IS {'NOT ' if op == '$ne' else ''}NULL", list(col_params)
        if op == "$eq":
            return f"{column} = ?", [*col_params, v]
        return f"({column} IS NULL OR {column} != ?)", [*col_params, *col_params, v]
    if op in COMPARE_OPS:
        v = _sql_value(value, path)
        if v is None:
            raise _fail(path, f"{op} needs a value, not null")
        return f"{column} {COMPARE_OPS[op]} ?", [*col_params, v]
    if op in ("$in", "$nin"):
        if not isinstance(value, list):
            raise _fail(path, f"{op} needs a list, got {type(value).__name__}")
        vals = [_sql_value(v, f"{path}[{i}]") for i, v in enumerate(value)]
        if not vals:
            return ("0" if op == "$in" else "1"), []
        marks = ",".join("?" * len(vals))
        if op == "$in":
            return f"{column} IN ({marks})", [*col_params, *vals]
        return f"({column} IS NULL OR {column} NOT IN ({marks}))", [*col_params, *col_params, *vals]
    if op == "$exists":
        if not isinstance(value, bool):
            raise _fail(path, "$exists needs true or false")
        return f"{column} IS {'NOT ' if value else ''}NULL", list(col_params)
    if op == "$match":
        return _match_condition(column, col_params, value, path)
    raise _fail(path, f"unknown operator {op!r}; use one of {sorted([*COMPARE_OPS, '$in', '$nin', '$exists', '$match'])}")


def _glob_condition(column: str, col_params: list, op: str, value: Any, path: str) -> tuple[str, list] | None:
    """``/folder/**``-style values as ``path_glob`` calls (see ``store.files.path_glob``);
    None when no value holds a '*'."""
    values = value if isinstance(value, list) else [value]
    if not any(isinstance(v, str) and "*" in v for v in values):
        return None
    parts, params = [], []
    for i, v in enumerate(values):
        if not isinstance(v, str):
            raise _fail(f"{path}[{i}]" if isinstance(value, list) else path, f"must be a string, got {v!r}")
        if "*" in v:
            parts.append(f"path_glob(?, {column})")
            params += [v, *col_params]
        else:
            parts.append(f"{column} = ?")
            params += [*col_params, v]
    matched = "(" + " OR ".join(parts) + ")"
    return (matched, params) if op in ("$eq", "$in") else (f"NOT COALESCE({matched}, 0)", params)


def _match_condition(column: str, col_params: list, value: Any, path: str) -> tuple[str, list]:
    """``$match``: some element of a metadata list is ``value`` or, for an object, passes
    every condition it gives on the element's fields (Mongo's ``$elemMatch``)."""
    if not column.startswith("json_extract("):
        raise _fail(path, "$match works on metadata fields that hold lists")
    source = column.replace("json_extract(", "json_each(", 1)
    if not isinstance(value, dict):
        v = _sql_value(value, path)
        return f"EXISTS (SELECT 1 FROM {source} AS e WHERE e.value = ?)", [*col_params, v]
    parts, params = [], list(col_params)
    for key, cond in value.items():
        if not isinstance(key, str) or not _KEY.match(key):
            raise _fail(f"{path}.{key}", "element fields are letters, digits, '_', '-'")
        element = "json_extract(e.value, ?)"
        ops = cond.items() if isinstance(cond, dict) and cond else [("$eq", cond)]
        for op, operand in ops:
            sql, p = _condition(element, [f'$."{key}"'], op, operand, f"{path}.{key}")
            parts.append(sql)
            params += p
    where = " AND ".join(parts) or "1"
    return f"EXISTS (SELECT 1 FROM {source} AS e WHERE {where})", params


def compile_where(node: Any, resource: str = "items", path: str = "filter", depth: int = 0) -> tuple[str, list]:
    """SQL boolean expression and its parameters for a filter object."""
    if depth > MAX_DEPTH:
        raise _fail(path, f"nested more than {MAX_DEPTH} levels deep; flatten the $and / $or")
    if not isinstance(node, dict):
        raise _fail(path, f"expected an object, got {type(node).__name__}")
    parts: list[str] = []
    params: list = []
    for key, value in node.items():
        sub = f"{path}.{key}"
        if key in ("$and", "$or"):
            if not isinstance(value, list) or not value:
                raise _fail(sub, f"{key} needs a non-empty list of conditions")
            compiled = [compile_where(v, resource, f"{sub}[{i}]", depth + 1) for i, v in enumerate(value)]
            joiner = " AND " if key == "$and" else " OR "
            parts.append("(" + joiner.join(f"({s})" for s, _ in compiled) + ")")
            for _, p in compiled:
                params.extend(p)
            continue
        if key.startswith("$"):
            raise _fail(sub, f"unknown operator {key!r} here; conditions combine with $and / $or")
        column, col_params = _field_sql(key, resource, sub)
        if isinstance(value, dict):
            if not value:
                raise _fail(sub, "empty condition")
            for op, operand in value.items():
                s, p = _condition(column, col_params, op, operand, f"{sub}.{op}", key)
                parts.append(s)
                params.extend(p)
        else:
            s, p = _condition(column, col_params, "$eq", value, sub, key)
            parts.append(s)
            params.extend(p)
    if not parts:
        return "1", []
    return " AND ".join(parts), params


def where_sql(query: Query) -> tuple[str, list]:
    """The query's whole condition on its resource: its filter and its join (not the vector
    ranking), as SQL with parameters."""
    where, params = compile_where(query.filter, query.resource) if query.filter else ("1", [])
    if query.join is not None:
        outer, inner = JOINS[(query.resource, query.join.resource)]
        joined, joined_params = compile_where(query.join.filter, query.join.resource, "join.filter")
        source = {"annotations": "annotations JOIN items ON items.id = annotations.item_id", "items": "items",
                  "feature_vectors": "features"}[query.join.resource]
        where = f"({where}) AND {outer} IN (SELECT {inner} FROM {source} WHERE {joined})"
        params = [*params, *joined_params]
    return where, params


def order_sql(query: Query, default: str) -> tuple[str, list]:
    """ORDER BY for the query's ``sort`` (ties broken by id), or ``default`` without one."""
    if not query.sort:
        return default, []
    keys = sort_columns(query)
    return ", ".join(f"{sql} {'DESC' if desc else 'ASC'}" for sql, _, desc in keys), [p for _, ps, _ in keys for p in ps]


def sort_columns(query: Query) -> list[tuple[str, list, bool]]:
    """The query's sort keys as (SQL expression, its parameters, descending), id last."""
    keys = [(*_field_sql(name, query.resource, f"sort.{name}"), desc) for name, desc in query.sort]
    if "id" not in [name for name, _ in query.sort]:
        keys.append((FIELDS_BY_RESOURCE[query.resource]["id"], [], False))
    return keys
