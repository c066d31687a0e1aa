"""Search: the filter language (``language``), its builder (``filters``), the engine that
answers a parsed query (``engine``), the exact scan (``exact``) and the metric (``metric``).
Imports neither Chroma nor torch."""
from .engine import Answer, CatalogListing, ExactRanker, HnswRanker, Plan, Ranker, SearchEngine
from .filters import Filters
from .language import Query, VectorClause, compile_where, parse
from .metric import EUCLIDEAN, METRICS

__all__ = [
    "Answer", "CatalogListing", "EUCLIDEAN", "ExactRanker", "Filters", "HnswRanker", "METRICS", "Plan", "Query",
    "Ranker", "SearchEngine", "VectorClause", "compile_where", "parse",
]
