"""Numbers read from ``FEATURELAB_*`` environment variables: a value that is not a number is
refused with the variable's name and what to set, not a bare ``ValueError``."""
from __future__ import annotations

import os

from .errors import InvalidInput


def env_number(name: str, default: int | float, what: str) -> int | float:
    """``name``'s value as ``type(default)`` (int or float), or ``default`` when unset or
    blank. ``what`` says what to set, e.g. "a whole number of points, e.g. 200000"."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return type(default)(raw)
    except ValueError:
        kind = "a whole number" if isinstance(default, int) else "a number"
        raise InvalidInput(f"{name}={raw!r} is not {kind}: set it to {what}, or unset it") from None
