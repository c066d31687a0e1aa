"""The filter language: Dataloop-style JSON -> a checked plan.

Accepts the seed's ``custom_filter`` as written (``forigen`` included). Item fields and
operators compile to SQL with bound parameters; the ``$euclid`` join becomes a
``VectorClause``. Every error names the bad part by its path in the JSON.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import FilterError
from .metric import DISTANCE_OPS

RESOURCES = ("items", "annotations", "feature_vectors")
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
FIELDS_BY_RESOURCE = {"items": ITEM_FIELDS, "annotations": ANNOTATION_FIELDS, "feature_vectors": FEATURE_FIELDS}
METADATA_TABLE = {"items": "items", "annotations": "annotations"}
_KEY = re.compile(r"^[A-Za-z0-9_\- ]+$")


@dataclass
class VectorClause:
    feature_set_id: str
    input: list[float] | str  # a vector, or the id of a stored feature
    distance_ops: dict[str, float] = field(default_factory=dict)
    descending: bool = False
    approximate: bool = False


@dataclass
class Query:
    resource: str = "items"
    filter: dict | None = None  # on the resource's own fields
    vector: VectorClause | None = None
    page: int = 0
    page_size: int = DEFAULT_PAGE_SIZE

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


def parse(custom_filter: dict | str, resource: str | None = None) -> Query:
    """Check a filter JSON (dict or string) and turn it into a ``Query``."""
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
    if "filter" not in doc and "join" not in doc and not set(doc) & {"resource", "page", "pageSize"}:
        doc = {"filter": doc}  # like dtlpy: a bare condition is the filter
    known = {"filter", "join", "page", "pageSize", "resource", "sort"}
    unknown = set(doc) - known
    if unknown:
        raise _fail("", f"unknown key(s) {sorted(unknown)}; expected some of {sorted(known)}")
    res = doc.get("resource", resource or "items")
    if res not in RESOURCES:
        raise _fail("resource", f"unknown resource {res!r}; use one of {list(RESOURCES)}")
    query = Query(
        resource=res,
        page=_int_field(doc, "page", 0, 0, 10**9),
        page_size=_int_field(doc, "pageSize", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE),
    )
    item_filter = doc.get("filter")
    if item_filter is not None and not isinstance(item_filter, dict):
        raise _fail("filter", "must be an object such as {\"hidden\": false}")
    if res == "feature_vectors":
        item_filter = dict(item_filter or {})
        query.vector = _take_vector_clause(item_filter, "filter")
    if query.vector is None and "join" in doc:
        query.vector = _parse_join(doc["join"])
    query.filter = item_filter or None
    if query.filter:
        compile_where(query.filter, res)  # validate now: fail before any work
    return query


def _parse_join(join: Any) -> VectorClause:
    if not isinstance(join, dict):
        raise _fail("join", "must be an object with 'on' and 'filter'")
    on = join.get("on", {})
    if not isinstance(on, dict):
        raise _fail("join.on", "must be an object")
    if on.get("resource", "feature_vectors") != "feature_vectors":
        raise _fail("join.on.resource", f"only 'feature_vectors' can be joined, got {on.get('resource')!r}")
    if on.get("local", "entityId") != "entityId":
        raise _fail("join.on.local", f"must be 'entityId', got {on.get('local')!r}")
    foreign = on.get("forigen", on.get("foreign", "id"))
    if foreign != "id":
        raise _fail("join.on.forigen", f"must be 'id', got {foreign!r}")
    jf = join.get("filter")
    if not isinstance(jf, dict):
        raise _fail("join.filter", "must be an object with 'value' and 'featureSetId'")
    jf = dict(jf)
    clause = _take_vector_clause(jf, "join.filter")
    if clause is None:
        raise _fail("join.filter.value", "missing {'$euclid': {...}}")
    if jf:
        raise _fail("join.filter", f"unsupported key(s) {sorted(jf)}; use 'value' and 'featureSetId'")
    return clause


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


def _condition(column: str, col_params: list, op: str, value: Any, path: str) -> tuple[str, list]:
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
    raise _fail(path, f"unknown operator {op!r}; use one of {sorted([*COMPARE_OPS, '$in', '$nin', '$exists'])}")


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
                s, p = _condition(column, col_params, op, operand, f"{sub}.{op}")
                parts.append(s)
                params.extend(p)
        else:
            s, p = _condition(column, col_params, "$eq", value, sub)
            parts.append(s)
            params.extend(p)
    if not parts:
        return "1", []
    return " AND ".join(parts), params
