"""Ids: 24 hex characters, like Dataloop's."""
import uuid


def new_id() -> str:
    return uuid.uuid4().hex[:24]
