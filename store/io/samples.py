"""Sample data for a first look, from files that ship with installed packages (no internet):

- ``/photos``: scikit-learn's two sample photos, and tiles cut from them;
- ``/digits``: scikit-learn's 8x8 handwritten digits as small PNGs, ``metadata.user.digit``
  holding the digit;
- ``/help``: Python's own help topics (``pydoc_data``) as text files.

Vectors: the digits' own 64 pixels as precomputed vectors (like the seed's customer
profiles), the help topics embedded with the packaged all-MiniLM-L6-v2, and the photos with
CLIP when its weights are already on this machine. Loading again adds nothing twice and
embeds only what is missing.

    python -m store sample            # or the app's Home page: "Load sample data"

(The ``sample`` command itself lives in ``store.cli.sample``.)
"""
from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from ..errors import FeaturelabError, NotFound

if TYPE_CHECKING:
    from ..records import Dataset, FeatureSet, Item
    from ..workspace import Workspace

DATASET = "sample"
DIGITS_SET = "sample-digits-pixels"
TEXT_SET = "sample-help-minilm"
CLIP_SET = "sample-photos-clip"
TEXT_MODEL = "all-MiniLM-L6-v2"
CLIP_MODEL = "ViT-B-32/laion2b_s34b_b79k"
CLIP_HUB = "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"  # where open_clip fetches CLIP_MODEL's weights
ProgressFn = Callable[..., None]


@dataclass
class SampleFile:
    folder: str
    name: str
    data: bytes
    metadata: dict = field(default_factory=dict)
    vector: np.ndarray | None = None  # precomputed (the digits' pixels)


@dataclass
class SampleReport:
    dataset: str
    added: int = 0
    duplicates: int = 0
    rejected: int = 0
    feature_sets: dict[str, int] = field(default_factory=dict)  # name -> vectors in the set
    notes: list[str] = field(default_factory=list)  # what was left out, and why
    cancelled: bool = False
    seconds: float = 0.0

    def summary(self) -> str:
        sets = ", ".join(f"{name} ({n} vectors)" for name, n in self.feature_sets.items()) or "none"
        head = "Cancelled" if self.cancelled else "Sample data ready"
        text = (f"{head}: dataset **{self.dataset}** ({self.added} files added, {self.duplicates} already there or "
                f"the same as another); "
                f"feature sets: {sets}; {self.seconds:.0f} s.")
        if self.notes:
            text += " " + " ".join(self.notes)
        return text


# ---- the files ----------------------------------------------------------------------------
def _jpeg(img, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _sklearn_datasets() -> Path:
    """scikit-learn's datasets folder, found without importing scikit-learn (seconds on a
    small machine: the sample data only reads files that ship in it)."""
    import importlib.util

    found = importlib.util.find_spec("sklearn")
    if found is None or not found.submodule_search_locations:
        raise FeaturelabError("the sample data comes with scikit-learn, which is not installed: "
                              "pip install scikit-learn, then load it again")
    return Path(list(found.submodule_search_locations)[0]) / "datasets"


def photo_files(tiles: tuple[int, int] = (3, 2)) -> list[SampleFile]:
    """scikit-learn's sample photos (china.jpg, flower.jpg), whole and cut into tiles, so
    that an image search has near neighbours to find."""
    from PIL import Image

    folder = _sklearn_datasets() / "images"
    out: list[SampleFile] = []
    for path in sorted(folder.glob("*.jpg")):
        data = path.read_bytes()
        out.append(SampleFile("/photos", path.name, data, {"user": {"photo": path.stem}}))
        with Image.open(io.BytesIO(data)) as img:
            img = img.convert("RGB")
            cols, rows = tiles
            w, h = img.width // cols, img.height // rows
            for r in range(rows):
                for c in range(cols):
                    tile = img.crop((c * w, r * h, (c + 1) * w, (r + 1) * h))
                    out.append(SampleFile("/photos/tiles", f"{path.stem}-r{r}c{c}.jpg", _jpeg(tile),
                                          {"user": {"photo": path.stem, "tile": f"r{r}c{c}"}}))
    return out


def digit_files(per_class: int = 40, scale: int = 4) -> list[SampleFile]:
    """The first ``per_class`` of each digit, as black-on-white PNGs ``scale`` times 8x8,
    each with its 64 pixel values (0..16) as a precomputed vector."""
    from PIL import Image

    # What sklearn.datasets.load_digits reads: 64 pixels and the digit per row.
    table = np.loadtxt(_sklearn_datasets() / "data" / "digits.csv.gz", delimiter=",")
    data, targets = table[:, :-1], table[:, -1].astype(int)
    out: list[SampleFile] = []
    taken = {d: 0 for d in range(10)}
    for index, (image, target, pixels) in enumerate(zip(data.reshape(-1, 8, 8), targets, data)):
        d = int(target)
        if taken[d] >= per_class:
            continue
        taken[d] += 1
        grey = (255 - image * (255 / 16)).clip(0, 255).astype(np.uint8)
        img = Image.fromarray(grey, mode="L").resize((8 * scale, 8 * scale), Image.NEAREST)
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        out.append(SampleFile("/digits", f"digit-{d}-{index:04d}.png", buf.getvalue(),
                              {"user": {"digit": d}}, np.asarray(pixels, dtype=np.float32)))
        if all(n >= per_class for n in taken.values()):
            break
    return out


def help_files() -> list[SampleFile]:
    """Python's help topics (what ``help('lambda')`` prints), one text file each."""
    from pydoc_data.topics import topics

    return [
        SampleFile("/help", f"{name}.txt", text.encode("utf-8"), {"user": {"topic": name}})
        for name, text in sorted(topics.items())
        if text.strip()
    ]


# ---- models at hand ---------------------------------------------------------------------
def clip_weights_at_hand(model: str = CLIP_MODEL) -> bool:
    """Whether the CLIP weights are already on this machine (Hugging Face cache): never
    downloads, never waits on a network (``embedders.missing_here``). For the sample's own
    model, a look at the cache's folder comes first: without it, open_clip (and torch,
    seconds) is not even imported."""
    if model == CLIP_MODEL and not _hub_repo_cached(CLIP_HUB):
        return False
    from ..embedders import missing_here

    try:
        return missing_here(model) is None
    except FeaturelabError:  # not a model open_clip knows
        return False


def _hub_repo_cached(repo_id: str) -> bool:
    """Whether the Hugging Face cache holds anything of the model repository ``repo_id``."""
    try:
        from huggingface_hub import constants
    except ImportError:
        return False
    return (Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}").is_dir()


def _model_dict(model: Any, size: int) -> dict:
    from ..embedders import parse_spec

    return parse_spec(model).to_dict(size)


def _get_or_create_set(ws: "Workspace", name: str, size: int, model: dict | None, set_type: str) -> "FeatureSet":
    try:
        fs = ws.feature_sets.get(feature_set_name=name)
    except NotFound:
        return ws.feature_sets.create(name=name, size=size, set_type=set_type, entity_type="item", model=model)
    if fs.size != size:
        raise FeaturelabError(
            f"a feature set named {name!r} exists with size {fs.size}, not {size}; delete or rename it and load again"
        )
    return fs


def _missing(ws: "Workspace", fs: "FeatureSet", items: list["Item"]) -> list["Item"]:
    """The items without a vector in ``fs``, each once (two files with the same bytes are one item)."""
    have = set(ws.matrix(fs).entity_ids.tolist())
    unique = {i.id: i for i in items}
    return [i for i in unique.values() if i.id not in have]


# ---- loading ------------------------------------------------------------------------------
def load_sample(
    ws: "Workspace",
    *,
    name: str = DATASET,
    digits_per_class: int = 40,
    text: bool = True,
    clip: str | dict | None = "auto",
    device: str | None = None,
    progress: ProgressFn | None = None,
    cancel: Any = None,
) -> SampleReport:
    """Fill the dataset ``name`` with the sample files and their vectors (see the module).

    ``clip``: ``"auto"`` embeds the photos with CLIP only when its weights are already on
    this machine; a model name or dict uses that model; ``None`` skips CLIP. ``progress(done,
    total, note)`` is called as it goes; ``cancel`` (a ``threading.Event`` or a callable)
    stops it between steps."""
    started = time.monotonic()
    report = SampleReport(name)

    def cancelled() -> bool:
        if cancel is None:
            return False
        flag = cancel.is_set() if hasattr(cancel, "is_set") else cancel()
        report.cancelled = report.cancelled or bool(flag)
        return report.cancelled

    if clip == "auto":
        clip = CLIP_MODEL if clip_weights_at_hand(CLIP_MODEL) else None
        if clip is None:
            report.notes.append(f"Photos not embedded: the CLIP weights ({CLIP_MODEL}) are not on this machine; "
                                "run once with internet access, or embed them with your own checkpoint on Embed.")
    photos, digits, texts = photo_files(), digit_files(digits_per_class), help_files() if text else []
    files = photos + digits + texts
    steps = len(files) + (len(texts) if text else 0) + (len(photos) if clip else 0) + 1
    done = 0

    def tick(n: int, note: str) -> None:
        nonlocal done
        done += n
        if progress:
            progress(done, steps, note)

    dataset: Dataset = ws.datasets.get_or_create(name)
    items: dict[int, Item] = {}
    groups: dict[str, list[int]] = {}
    for i, f in enumerate(files):
        groups.setdefault(f.folder, []).append(i)
    for folder, indices in groups.items():
        for start in range(0, len(indices), 50):
            if cancelled():
                return _finish(report, started)
            chunk = indices[start : start + 50]
            for i in chunk:  # one call per file: each keeps its own metadata
                f = files[i]
                r = dataset.items.upload([(f.name, f.data)], dir=f.folder, metadata=f.metadata)[0]
                report.added += r.status == "added"
                report.duplicates += r.status == "duplicate"
                report.rejected += r.status == "rejected"
                if r.item is not None:
                    items[i] = r.item
            tick(len(chunk), f"uploading {folder}")

    # The digits' own pixels, as precomputed vectors.
    digit_items = [(items[i], files[i].vector) for i in range(len(photos), len(photos) + len(digits)) if i in items]
    fs = _get_or_create_set(ws, DIGITS_SET, 64, None, "pixels")
    todo = {i.id for i in _missing(ws, fs, [it for it, _ in digit_items])}
    pairs = list({it.id: (it, v) for it, v in digit_items if it.id in todo}.values())
    if pairs:
        fs.features.create_many(np.stack([v for _, v in pairs]), [it for it, _ in pairs])
    report.feature_sets[fs.name] = fs.count()
    tick(1, "digit vectors")

    if text and not cancelled():
        from ..embedders import load_embedder

        embedder = load_embedder(TEXT_MODEL, device=device)
        fs = _get_or_create_set(ws, TEXT_SET, embedder.size, _model_dict(TEXT_MODEL, embedder.size), "embeddings")
        # Shortest first: a batch of similar lengths pads little (MiniLM pads each batch to its
        # longest text), several times faster than the topics in name order.
        helps = sorted(range(len(photos) + len(digits), len(files)), key=lambda i: len(files[i].data))
        help_items = [items[i] for i in helps if i in items]
        _embed_missing(ws, fs, help_items, lambda batch: embedder.embed_texts([it.text() for it in batch]),
                       16, "embedding help topics", tick, cancelled)
        report.feature_sets[fs.name] = fs.count()

    if clip and not cancelled():
        from ..embedders import load_embedder

        try:
            embedder = load_embedder(clip, device=device)
        except FeaturelabError as exc:
            report.notes.append(f"Photos not embedded: {exc}")
        else:
            fs = _get_or_create_set(ws, CLIP_SET, embedder.size, _model_dict(clip, embedder.size), "embeddings")
            photo_items = [items[i] for i in range(len(photos)) if i in items]
            _embed_missing(ws, fs, photo_items, lambda batch: embedder.embed_images([it.download() for it in batch]),
                           8, "embedding photos", tick, cancelled)
            report.feature_sets[fs.name] = fs.count()
    return _finish(report, started)


def _embed_missing(ws, fs, items, embed, batch_size: int, stage: str, tick, cancelled) -> None:
    """Embed the items that have no vector in ``fs`` yet, a batch at a time, reporting each."""
    todo = _missing(ws, fs, items)
    tick(len(items) - len(todo), stage)
    for start in range(0, len(todo), batch_size):
        if cancelled():
            break
        batch = todo[start : start + batch_size]
        fs.features.create_many(embed(batch), batch)
        tick(len(batch), stage)


def _finish(report: SampleReport, started: float) -> SampleReport:
    report.seconds = time.monotonic() - started
    return report

