"""Cross-process locks on files in the workspace (POSIX flock).

Embedded Chroma is not safe for two processes: featurelab lets exactly one process own a
workspace's Chroma folder (the first to open it, usually the app). Every other process
writes to the catalog only, which is the source of truth, and the owner brings the index
up to date from it before any approximate search.
"""
from __future__ import annotations

import fcntl
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


class OwnerLock:
    """Held for the life of a process; records who holds it, for the message to others."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def try_acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}: {' '.join(sys.argv)[:200]}".encode())
        self.fd = fd
        return True

    def holder(self) -> str:
        try:
            return self.path.read_text(errors="replace").strip() or "another process"
        except OSError:
            return "another process"

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


@contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Block until this process alone holds ``path``'s lock."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
