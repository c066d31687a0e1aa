"""Ids: 24 hex characters, like Dataloop's."""
import os
import re
import uuid

SAFE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # ids that may name a Chroma collection or a cache folder


def new_id() -> str:
    return uuid.uuid4().hex[:24]


def new_ids(count: int) -> list[str]:
    """``count`` new ids from one read of the system's random source (a bulk write's ids)."""
    raw = os.urandom(12 * count).hex()
    return [raw[i : i + 24] for i in range(0, 24 * count, 24)]
