"""The records the store hands out: plain dataclasses with a link back to their workspace,
shaped after the Dataloop SDK (``feature_set.features.create``, ``item.features.list``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Generic, Iterator, TypeVar

import numpy as np

from .files import join_filename

if TYPE_CHECKING:
    from .workspace import Workspace

T = TypeVar("T")


@dataclass
class Dataset:
    id: str
    name: str
    created_at: float
    _ws: "Workspace" = field(repr=False, compare=False)

    @property
    def items(self):
        return self._ws.items_of(self.id)

    @property
    def annotations(self):
        return self._ws.annotations_of_dataset(self.id)

    def delete(self) -> None:
        self._ws.datasets.delete(self.id)

    def export(self, local_path, **kwargs):
        """See ``store.io.transfer.export_dataset``."""
        return self._ws.export_dataset(self, local_path, **kwargs)

    def to_json(self) -> dict:
        return {"id": self.id, "name": self.name, "createdAt": self.created_at}


@dataclass
class Item:
    id: str
    dataset_id: str
    name: str
    dir: str
    kind: str
    mimetype: str
    size: int
    sha256: str
    width: int | None
    height: int | None
    hidden: bool
    metadata: dict
    created_at: float
    _ws: "Workspace" = field(repr=False, compare=False)
    distance: float | None = None  # set on search results: the true distance to the query

    type = "file"

    @property
    def filename(self) -> str:
        return join_filename(self.dir, self.name)

    @property
    def path(self):
        """Where the item's bytes are on disk (content addressed; read only)."""
        return self._ws.blobs.path(self.sha256)

    def download(self) -> bytes:
        return self._ws.blobs.read(self.sha256)

    def text(self) -> str:
        return self.download().decode("utf-8", errors="replace")

    @property
    def features(self):
        return self._ws.features_of(entity_id=self.id)

    @property
    def annotations(self):
        return self._ws.annotations_of_item(self)

    def update(self, *, hidden: bool | None = None, metadata: dict | None = None) -> "Item":
        return self._ws.update_item(self.id, hidden=hidden, metadata=metadata)

    def delete(self) -> None:
        self._ws.delete_items([self.id])

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "datasetId": self.dataset_id,
            "name": self.name,
            "filename": self.filename,
            "dir": self.dir,
            "type": self.type,
            "hidden": self.hidden,
            "createdAt": self.created_at,
            "metadata": {
                **self.metadata,
                "system": {
                    "kind": self.kind,
                    "mimetype": self.mimetype,
                    "size": self.size,
                    "sha256": self.sha256,
                    "width": self.width,
                    "height": self.height,
                },
            },
        }


@dataclass
class Annotation:
    id: str
    item_id: str
    label: str
    type: str
    coordinates: dict
    metadata: dict
    created_at: float
    _ws: "Workspace" = field(repr=False, compare=False)
    distance: float | None = None

    @property
    def box(self) -> tuple[float, float, float, float]:
        c = self.coordinates
        return (c["left"], c["top"], c["right"], c["bottom"])

    @property
    def features(self):
        return self._ws.features_of(entity_id=self.id)

    def delete(self) -> None:
        self._ws.delete_annotations([self.id])

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "itemId": self.item_id,
            "label": self.label,
            "type": self.type,
            "coordinates": self.coordinates,
            "metadata": self.metadata,
            "createdAt": self.created_at,
        }


@dataclass
class FeatureSet:
    id: str
    name: str
    size: int
    set_type: str
    entity_type: str
    model: dict | None
    metric: str
    created_at: float
    version: int
    _ws: "Workspace" = field(repr=False, compare=False)

    @property
    def features(self):
        return self._ws.features_of(feature_set=self)

    def count(self) -> int:
        return self._ws.catalog.scalar("SELECT COUNT(*) FROM features WHERE feature_set_id=?", (self.id,))

    def delete(self) -> None:
        self._ws.feature_sets.delete(self.id)

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "size": self.size,
            "type": self.set_type,
            "entityType": self.entity_type,
            "model": self.model,
            "metric": self.metric,
            "createdAt": self.created_at,
        }


@dataclass
class Feature:
    id: str
    feature_set_id: str
    entity_id: str
    dataset_id: str | None
    value: np.ndarray  # float32, exactly as stored
    created_at: float
    _ws: "Workspace" = field(repr=False, compare=False)
    distance: float | None = None

    def delete(self) -> None:
        self._ws.delete_features([self.id])

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "featureSetId": self.feature_set_id,
            "entityId": self.entity_id,
            "datasetId": self.dataset_id,
            "value": self.value.tolist(),
            "createdAt": self.created_at,
        }


@dataclass
class UploadResult:
    """What became of one uploaded file: ``added``, ``duplicate`` (the existing item is
    returned) or ``rejected`` (``message`` says why and what to do)."""

    name: str
    status: str
    item: Item | None = None
    message: str = ""


@dataclass
class Pages(Generic[T]):
    """One page of results plus the means to walk all of them (like dtlpy's PagedEntities)."""

    items: list[T]
    items_count: int
    page: int
    page_size: int
    _fetch: Callable[[int], "Pages[T]"] = field(repr=False, compare=False)
    note: str = ""  # how the answer was found when not as asked (an approximate search answered exactly)

    @property
    def has_next(self) -> bool:
        return (self.page + 1) * self.page_size < self.items_count

    def next_page(self) -> "Pages[T] | None":
        """The page after this one, or None at the end (or after an empty page)."""
        return self._fetch(self.page + 1) if self.has_next and self.items else None

    def __iter__(self) -> Iterator[list[T]]:
        """Iterate pages, starting at this one."""
        current: Pages[T] | None = self
        while current is not None:
            yield current.items
            current = current.next_page()

    def all(self) -> Iterator[T]:
        for page in self:
            yield from page

    def __len__(self) -> int:
        return len(self.items)


def json_ready(value: Any) -> Any:
    """NumPy scalars and arrays to plain Python for json.dumps."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
