"""The vector index: Chroma collections (``chroma``), their upkeep from the catalog
(``sync``) and the guard against a damaged embedded folder (``guard``). Chroma itself is
imported only when a client is made."""
from .chroma import HNSW, VectorIndex, chroma_url_from_env, connect, settings
from .sync import IndexSync

__all__ = ["HNSW", "IndexSync", "VectorIndex", "chroma_url_from_env", "connect", "settings"]
