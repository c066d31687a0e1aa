"""A small builder for the filter JSON, after dtlpy's ``Filters``.

    f = Filters()
    f.add(field="hidden", values=False)
    f.add_euclid(feature_set, input=vector, k=10)          # kNN, nearest first
    f.add_euclid(feature_set, input=vector, max_distance=0.8)  # threshold
    f.prepare()  # -> the same JSON as the seed's custom_filter
"""
from __future__ import annotations

import copy
from typing import Any

import numpy as np

from ..errors import InvalidInput
from .language import DEFAULT_PAGE_SIZE

_OPERATORS = {"eq", "ne", "gt", "gte", "lt", "lte", "in", "nin", "exists"}


class Filters:
    def __init__(
        self,
        custom_filter: dict | None = None,
        resource: str = "items",
        field: str | None = None,
        values: Any = None,
        operator: str | None = None,
    ) -> None:
        self.custom_filter = copy.deepcopy(custom_filter) if custom_filter is not None else None
        self.resource = getattr(resource, "value", resource)
        self.conditions: list[dict] = []
        self.join: dict | None = None
        self.page = 0
        self.page_size = DEFAULT_PAGE_SIZE
        if field is not None:
            self.add(field, values, operator)

    def add(self, field: str, values: Any, operator: str | None = None) -> "Filters":
        """``{field: values}``, or ``{field: {"$op": values}}`` with ``operator`` such as ``"gt"``."""
        if operator is None:
            self.conditions.append({field: values})
        else:
            op = operator.lstrip("$")
            if op not in _OPERATORS:
                raise InvalidInput(f"unknown operator {operator!r}; use one of {sorted(_OPERATORS)}")
            self.conditions.append({field: {f"${op}": values}})
        return self

    def add_euclid(
        self,
        feature_set: Any,
        input: Any,
        *,
        k: int | None = None,
        max_distance: float | None = None,
        distance: dict[str, float] | None = None,
        sort: str = "ascending",
        approximate: bool = False,
    ) -> "Filters":
        """Join on a feature set's vectors: nearest ``k`` (sets the page size) and/or those
        within ``max_distance`` (``$lte``); ``distance`` takes any of ``$eq $lt $lte $gt $gte``."""
        set_id = getattr(feature_set, "id", feature_set)
        vec = input.tolist() if isinstance(input, np.ndarray) else input
        euclid: dict[str, Any] = {"input": vec, "$euclidSort": {"eu_dist": sort}}
        ops = dict(distance or {})
        if max_distance is not None:
            ops["$lte"] = float(max_distance)
        if ops:
            euclid["$euclidFilter"] = ops
        if approximate:
            euclid["$approximate"] = True
        self.join = {
            "on": {"resource": "feature_vectors", "local": "entityId", "forigen": "id"},
            "filter": {"value": {"$euclid": euclid}, "featureSetId": set_id},
        }
        if k is not None:
            self.page_size = int(k)
        return self

    def prepare(self) -> dict:
        """The JSON this builder stands for (a custom filter is returned as given)."""
        if self.custom_filter is not None:
            doc = copy.deepcopy(self.custom_filter)
            if "filter" not in doc and "join" not in doc:
                doc = {"filter": doc}
            doc.setdefault("resource", self.resource)
            return doc
        doc: dict[str, Any] = {"filter": {"$and": copy.deepcopy(self.conditions)} if self.conditions else {},
                               "page": self.page, "pageSize": self.page_size, "resource": self.resource}
        if self.join is not None:
            # The query vector can be long: share the list rather than deep-copying it (parsing never mutates it).
            euclid = self.join["filter"]["value"]["$euclid"]
            doc["join"] = {
                "on": dict(self.join["on"]),
                "filter": {"value": {"$euclid": {"input": euclid["input"],
                                                 **copy.deepcopy({k: v for k, v in euclid.items() if k != "input"})}},
                           "featureSetId": self.join["filter"]["featureSetId"]},
            }
        return doc
