"""Content-addressed item files: ``blobs/ab/abcdef...`` named by their SHA-256."""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def put(self, data: bytes) -> str:
        """Store ``data`` once; return its SHA-256. Written to a temp file, fsynced, renamed:
        a crash leaves either the whole file or nothing under its final name."""
        sha = hashlib.sha256(data).hexdigest()
        target = self.path(sha)
        if target.exists():
            return sha
        target.parent.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".tmp-{os.getpid()}-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return sha

    def read(self, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()

    def delete(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)

    def remove_stale_temp_files(self) -> int:
        """Temp files left by a killed writer. Another live process may be writing one right
        now, so only those whose writer process is gone are removed."""
        removed = 0
        for tmp in self.root.glob("*/.tmp-*"):
            pid = tmp.name.split("-")[1]
            if pid.isdigit() and process_alive(int(pid)):
                continue
            tmp.unlink(missing_ok=True)
            removed += 1
        return removed


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
