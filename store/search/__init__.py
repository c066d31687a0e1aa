"""Search: the filter language (``language``), its builder (``filters``), the engine that
answers a parsed query (``engine``), the exact scan (``exact``) and the metric (``metric``).
Imports neither Chroma nor torch."""
from .engine import Answer, CatalogListing, ExactRanker, HnswRanker, Plan, Ranker, SearchEngine
from .filters import Filters
from .form import (MAX_K, PAGE_SIZES, ResultWindow, SearchState, parse_vector_or_id, parse_vector_text,
                   result_window, typed_value)
from .language import Query, VectorClause, compile_where, parse
from .metric import EUCLIDEAN, METRICS

__all__ = [
    "Answer", "CatalogListing", "EUCLIDEAN", "ExactRanker", "Filters", "HnswRanker", "MAX_K", "METRICS", "PAGE_SIZES",
    "Plan", "Query", "Ranker", "ResultWindow", "SearchEngine", "SearchState", "VectorClause", "compile_where", "parse",
    "parse_vector_or_id", "parse_vector_text", "result_window", "typed_value",
]
