"""What an uploaded file is: safe names and folders, kind, mimetype and image size."""
from __future__ import annotations

import io
import functools
import mimetypes
import posixpath
import re
import unicodedata
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from .env import env_number
from .errors import InvalidInput

# Pillow only warns between 1x and 2x its limit; featurelab refuses anything above 1x.
MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485
MAX_UPLOAD_BYTES = env_number("FEATURELAB_MAX_UPLOAD_MB", 1024, "a whole number of megabytes, e.g. 1024") * 1024 * 1024
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"}
TEXT_EXTENSIONS = {".txt", ".md", ".csv", ".json", ".jsonl", ".tsv", ".html", ".xml", ".rst", ".py", ".yaml", ".yml"}


@dataclass(frozen=True)
class FileFacts:
    kind: str  # image | text | other
    mimetype: str
    width: int | None = None
    height: int | None = None


def safe_name(name: str) -> str:
    """The display name of an upload: its last path component, never a path.

    A browser or archive may send ``../../x`` or ``folder/a.jpg``; storage is content
    addressed, so the name only has to be a harmless single component.
    """
    if not isinstance(name, str):
        raise InvalidInput(f"a file name must be a string, got {type(name).__name__}")
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if unicodedata.category(ch)[0] != "C").strip()
    if base in ("", ".", ".."):
        raise InvalidInput(f"file name {name!r} has no usable name part; give the file a name like 'photo.jpg'")
    if len(base.encode()) > 255:
        raise InvalidInput(f"file name {base[:40]!r}... is longer than 255 bytes; rename the file")
    return base


def normalize_dir(folder: str | None) -> str:
    """A folder inside a dataset: absolute, '/'-separated, no '..', no empty parts."""
    folder = (folder or "/").replace("\\", "/")
    parts = [p for p in folder.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise InvalidInput(f"folder {folder!r} contains '..'; use a plain folder such as '/cats'")
    for part in parts:
        if any(unicodedata.category(ch)[0] == "C" for ch in part):
            raise InvalidInput(f"folder {folder!r} contains control characters; rename it")
    return "/" + "/".join(parts)


def join_filename(folder: str, name: str) -> str:
    """Dataloop's ``filename``: the folder and the name, e.g. ``/cats/a.jpg``."""
    return posixpath.join(folder, name)


def _extension(name: str) -> str:
    return posixpath.splitext(name.lower())[1]


def probe_image(data: bytes, name: str) -> tuple[int, int, str]:
    """Decode the whole image (Pillow is lazy: a truncated file fails only at load)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise InvalidInput(
                        f"{name}: {width}x{height} pixels is more than the {MAX_IMAGE_PIXELS:,} allowed "
                        "(a possible decompression bomb); resize the image before uploading"
                    )
                fmt = (img.format or "").lower()
                img.load()
    except InvalidInput:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidInput(f"{name}: refused as a possible decompression bomb ({exc}); resize the image") from exc
    except UnidentifiedImageError as exc:
        raise InvalidInput(f"{name}: not an image Pillow can read (unknown or damaged format); check the file") from exc
    except Exception as exc:  # Pillow raises many types for broken files
        raise InvalidInput(f"{name}: not a readable image ({exc}); re-save or re-export the file") from exc
    mimetype = Image.MIME.get(fmt.upper()) or mimetypes.guess_type(name)[0] or "application/octet-stream"
    return width, height, mimetype


def _looks_like_text(data: bytes) -> bool:
    if b"\x00" in data[:8192]:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def inspect(data: bytes, name: str) -> FileFacts:
    """Kind, mimetype and size of an upload; refuses empty files and broken images."""
    if len(data) == 0:
        raise InvalidInput(f"{name}: the file is empty (0 bytes); check that it was saved completely")
    ext = _extension(name)
    try:
        width, height, mimetype = probe_image(data, name)
        return FileFacts("image", mimetype, width, height)
    except InvalidInput:
        if ext in IMAGE_EXTENSIONS:
            raise
    if _looks_like_text(data):
        mimetype = mimetypes.guess_type(name)[0] or "text/plain"
        return FileFacts("text", mimetype)
    if ext in TEXT_EXTENSIONS:
        raise InvalidInput(f"{name}: not UTF-8 text; convert it to UTF-8 (e.g. iconv -t utf-8) and upload again")
    return FileFacts("other", mimetypes.guess_type(name)[0] or "application/octet-stream")


def check_upload_size(name: str, size: int) -> None:
    """Refuse a file over the upload limit (``FEATURELAB_MAX_UPLOAD_MB``) before reading it."""
    if size > MAX_UPLOAD_BYTES:
        raise InvalidInput(
            f"{name}: {size / 2**20:.1f} MB is over the {MAX_UPLOAD_BYTES // 2**20} MB limit; "
            "split the file or raise FEATURELAB_MAX_UPLOAD_MB"
        )


@functools.lru_cache(maxsize=256)
def _glob_regex(pattern: str) -> re.Pattern:
    parts = re.split(r"(\*\*|\*)", pattern)
    body = "".join(".*" if p == "**" else "[^/]*" if p == "*" else re.escape(p) for p in parts)
    if pattern.endswith("/**"):  # a folder and everything below it, the folder itself included
        body = re.escape(pattern[:-3]) if "*" not in pattern[:-3] else body[: -len("/.*")]
        body = f"{body}(?:/.*)?"
    return re.compile(body)


def path_glob(pattern: str | None, value: str | None) -> bool:
    """Whether a folder or file path matches a Dataloop-style glob: ``*`` is any run of
    characters inside one folder name, ``**`` any run across folders, and ``/a/**`` is
    ``/a`` and everything below it. Registered in SQLite as ``path_glob(pattern, value)``."""
    if pattern is None or value is None:
        return False
    return _glob_regex(pattern).fullmatch(value) is not None
