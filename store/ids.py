"""Ids: 24 hex characters, like Dataloop's."""
import os
import re
import time
import uuid

SAFE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # ids that may name a Chroma collection or a cache folder


def new_id() -> str:
    return uuid.uuid4().hex[:24]


def new_ids(count: int) -> list[str]:
    """``count`` new ids for one bulk write, shaped like MongoDB's ObjectIds (as Dataloop's
    are): the time, a random part drawn once per call, then a counter. They ascend within
    the call, so SQLite's unique index on them grows at its end instead of at a million
    random places (at 1M rows that index no longer fits SQLite's cache)."""
    out: list[str] = []
    for start in range(0, count, 1 << 24):  # the counter's 6 hex digits
        prefix = f"{int(time.time()) & 0xFFFFFFFF:08x}{os.urandom(5).hex()}"
        out += [f"{prefix}{i:06x}" for i in range(min(count - start, 1 << 24))]
    return out
