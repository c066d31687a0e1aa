"""Ids: 24 hex characters, like Dataloop's."""
import re
import uuid

SAFE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # ids that may name a Chroma collection or a cache folder


def new_id() -> str:
    return uuid.uuid4().hex[:24]
