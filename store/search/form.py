"""What a person types into a search form, read as plain data, and a search kept in a link.

    parse_vector_or_id("0.1, 0.2 0.3")    # -> [0.1, 0.2, 0.3]
    parse_vector_or_id("1,2,,3,nan")      # -> InvalidInput: entry 3 is empty ...
    parse_vector_or_id("5f0c...24 hex")   # -> the feature id, as given
    typed_value("3") -> 3, typed_value("cat") -> "cat"
    window = result_window(total=1000, page=2, page_size=100)   # window.label: "101–200 of 1,000"
    state, problems = SearchState.from_params({"set": "photos", "k": "500", "page": "3"})
    state.to_params()                     # -> the URL's query parameters (defaults left out)

Nothing here touches a workspace: the page resolves names to records and reports what a
link asked for that is not there.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, replace
from typing import Any, Mapping

from ..errors import InvalidInput

# ---- a pasted vector or feature id ------------------------------------------------------------------
_FEATURE_ID = re.compile(r"^[0-9a-fA-F]{24}$")  # store.ids: 24 hex characters
_SEPARATORS = re.compile(r"[\s,;\[\]]")
_SPLIT = re.compile(r"\s*[,;]\s*|\s+")


def _number(token: str, position: int) -> float:
    try:
        value = float(token)
    except ValueError:
        raise InvalidInput(f"entry {position} of the vector is {token!r}, not a number; "
                           "paste numbers only, e.g. 0.1, 0.2, 0.3") from None
    if not math.isfinite(value):
        raise InvalidInput(f"entry {position} of the vector is {token!r}; a query vector holds finite numbers "
                           "only: replace it with a number")
    return value


def parse_vector_text(text: str) -> list[float]:
    """Numbers separated by commas, semicolons or spaces, or a JSON list of numbers. Every
    entry must be a finite number: an empty entry ("1,,2") or NaN is refused, never dropped."""
    text = text.strip()
    if text.startswith("["):
        if not text.endswith("]"):
            raise InvalidInput("the vector starts with [ but does not end with ]; close the list, e.g. [0.1, 0.2]")
        inner = text[1:-1].strip()
        if "[" in inner or "]" in inner:
            raise InvalidInput("the vector must be a flat list of numbers, e.g. [0.1, 0.2, 0.3], not a nested one")
        text = inner
    if not text:
        raise InvalidInput("the vector is empty; paste numbers, e.g. 0.1, 0.2, 0.3")
    tokens = _SPLIT.split(text)
    if tokens and tokens[-1] == "" and text[-1] in ",;":  # one trailing separator, as in "1, 2, 3,"
        tokens = tokens[:-1]
    values = []
    for position, token in enumerate(tokens, 1):
        if token == "":
            raise InvalidInput(f"entry {position} of the vector is empty (two separators in a row); "
                               "remove the extra comma or put the missing number in")
        values.append(_number(token, position))
    return values


def parse_vector_or_id(text: str | None) -> list[float] | str | None:
    """What the search page's vector box holds: None (empty), a feature id (24 hex
    characters, or one word that is not a number) or a vector (anything with separators, or
    one number). A vector that is not all finite numbers is refused with a message that
    says which entry is wrong; it is never taken for a feature id."""
    text = (text or "").strip()
    if not text:
        return None
    if _FEATURE_ID.match(text):
        return text
    if _SEPARATORS.search(text):
        return parse_vector_text(text)
    try:
        float(text)
    except ValueError:
        return text  # one word, not a number: a feature id (the search says when there is none)
    return parse_vector_text(text)


def typed_value(text: str) -> Any:
    """A filter value as typed: '3' -> 3, 'true' -> True, '["a","b"]' -> a list; anything
    that is not JSON stays the string it is ('cat'). NaN and infinity stay strings."""
    try:
        return json.loads(text, parse_constant=lambda name: text)
    except json.JSONDecodeError:
        return text


# ---- paging ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ResultWindow:
    """One page of ``total`` results: rows ``start`` (inclusive) to ``stop`` (exclusive)."""

    total: int
    page: int  # 1-based, within 1..pages
    page_size: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.page_size))

    @property
    def start(self) -> int:
        return min((self.page - 1) * self.page_size, self.total)

    @property
    def stop(self) -> int:
        return min(self.page * self.page_size, self.total)

    @property
    def has_previous(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page < self.pages

    @property
    def label(self) -> str:
        """'101–200 of 1,000' (empty when there is nothing)."""
        return f"{self.start + 1:,}–{self.stop:,} of {self.total:,}" if self.total else ""


def result_window(total: int, page: int, page_size: int) -> ResultWindow:
    """The window of page ``page`` (1-based; clamped into range, so a shrunken result shows
    its last page rather than nothing) of ``total`` results, ``page_size`` a page."""
    if page_size < 1:
        raise InvalidInput(f"the page size must be at least 1, got {page_size}")
    total = max(0, int(total))
    pages = max(1, math.ceil(total / page_size))
    return ResultWindow(total, min(max(1, int(page)), pages), int(page_size))


# ---- a search in a link ---------------------------------------------------------------------------
MODES = ("text", "image", "item", "vector")
HIDDEN_CHOICES = ("visible", "hidden", "both")
OPERATORS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "nin", "exists")
MAX_K = 10_000
PAGE_SIZES = (24, 48, 100, 200)


@dataclass
class SearchState:
    """The search form as a link carries it. ``set`` and ``scope`` are names (or ids) as the
    person sees them; ``query`` is the text, the pasted vector or feature id, or the item
    id (by ``mode``); ``max_distance`` None is no limit; ``page`` is 1-based. A dropped
    image cannot travel in a link: ``mode`` "image" comes back without it."""

    set: str | None = None
    scope: str | None = None  # a dataset name, "all" (every dataset), or None (the page's default)
    mode: str = "text"
    query: str = ""
    k: int = 12
    max_distance: float | None = None
    dataset: str | None = None  # the item filter's dataset (a name); None: any
    folder: str = ""
    hidden: str = "visible"
    field: str = ""
    op: str = "eq"
    value: str = ""
    page: int = 1
    page_size: int = 48

    # query parameter -> attribute; the defaults are left out of a link
    PARAMS = {"set": "set", "in": "scope", "by": "mode", "q": "query", "k": "k", "max": "max_distance",
              "ds": "dataset", "dir": "folder", "hidden": "hidden", "field": "field", "op": "op", "value": "value",
              "page": "page", "per": "page_size"}

    def to_params(self) -> dict[str, str]:
        """The URL's query parameters: every field that differs from the default, as text."""
        default = SearchState()
        out = {}
        for param, name in self.PARAMS.items():
            value = getattr(self, name)
            if value != getattr(default, name) and value is not None:
                out[param] = f"{value:.10g}" if isinstance(value, float) else str(value)
        return out

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> tuple["SearchState", list[str]]:
        """The state a link asks for, and a plain sentence for each part of it that is not
        usable (that part keeps its default). Unknown parameters are ignored."""
        state, problems = cls(), []
        for param, name in cls.PARAMS.items():
            raw = params.get(param)
            if raw is None:
                continue
            try:
                state = replace(state, **{name: _read(name, str(raw))})
            except ValueError as exc:
                problems.append(f"the link's {param}={raw!r} {exc}; using the default instead")
        return state, problems


def _read(name: str, raw: str) -> Any:
    """One query parameter as the field ``name`` holds it; ValueError says what is wrong."""
    if name == "k":
        return _whole(raw, 1, MAX_K)
    if name == "page":
        return _whole(raw, 1, 10**9)
    if name == "page_size":
        size = _whole(raw, 1, max(PAGE_SIZES))
        if size not in PAGE_SIZES:
            raise ValueError(f"is not a page size here (one of {', '.join(map(str, PAGE_SIZES))})")
        return size
    if name == "max_distance":
        try:
            value = float(raw)
        except ValueError:
            raise ValueError("is not a number") from None
        if not math.isfinite(value) or value < 0:
            raise ValueError("must be a finite number >= 0")
        return value
    choices = {"mode": MODES, "hidden": HIDDEN_CHOICES, "op": OPERATORS}.get(name)
    if choices is not None and raw not in choices:
        raise ValueError(f"is not one of {', '.join(choices)}")
    return raw


def _whole(raw: str, low: int, high: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ValueError("is not a whole number") from None
    if not low <= value <= high:
        raise ValueError(f"must be between {low:,} and {high:,}")
    return value


__all__ = ["HIDDEN_CHOICES", "MAX_K", "MODES", "OPERATORS", "PAGE_SIZES", "ResultWindow", "SearchState",
           "parse_vector_or_id", "parse_vector_text", "result_window", "typed_value"]
