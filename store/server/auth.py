"""The server's one token: minted once, kept in the workspace (``server-token``, mode 0600).

It is shaped as a JWT because dtlpy decodes it (without checking the signature) to read
``exp`` and ``email``; the server itself only compares the whole string, in constant time."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from pathlib import Path

TOKEN_FILE = "server-token"
EMAIL = "local@featurelab"
LIFETIME_S = 10 * 365 * 24 * 3600  # far ahead: dtlpy would try auth0 to refresh an expiring token


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def mint_token(email: str = EMAIL, lifetime_s: int = LIFETIME_S) -> str:
    """A fresh HS256 JWT signed with a random key that is thrown away (the token is the secret)."""
    now = int(time.time())
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64(json.dumps({"email": email, "sub": email, "iat": now, "exp": now + lifetime_s,
                               "jti": secrets.token_hex(16)}).encode())
    signature = hmac.new(secrets.token_bytes(32), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(signature)}"


def token_expiry(token: str) -> float | None:
    """The ``exp`` claim of a token, or None when it is not a readable JWT."""
    try:
        part = token.split(".")[1]
        return float(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))["exp"])
    except (IndexError, ValueError, KeyError, TypeError):
        return None


def load_or_mint_token(workspace: Path) -> str:
    """The workspace's token, minting (and keeping, owner-only) a new one when there is none
    or the kept one is about to expire."""
    path = Path(workspace) / TOKEN_FILE
    if path.is_file():
        token = path.read_text(encoding="ascii").strip()
        exp = token_expiry(token)
        if exp is not None and exp > time.time() + 24 * 3600:
            return token
    token = mint_token()
    tmp = path.with_name(f".{TOKEN_FILE}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(token + "\n")
    os.replace(tmp, path)
    return token


def token_matches(header: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header carries exactly ``token`` as a bearer token."""
    if not header or not header[:7].lower() == "bearer ":
        return False
    return hmac.compare_digest(header[7:].strip().encode(), token.encode())
