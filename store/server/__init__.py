"""``python -m store serve``: a Dataloop-compatible REST API over a workspace, for the
unmodified ``dtlpy`` SDK. ``create_app(ws, token)`` builds the FastAPI app; the token is
minted once and kept in the workspace (``load_or_mint_token``)."""
from .app import create_app
from .auth import EMAIL, TOKEN_FILE, load_or_mint_token, mint_token, token_matches

__all__ = ["EMAIL", "TOKEN_FILE", "create_app", "load_or_mint_token", "mint_token", "token_matches"]
