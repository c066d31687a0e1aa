"""Named clusters of a feature set: k-means or HDBSCAN, a name per cluster, saved as metadata.

    result = cluster_feature_set(ws, "clip", method="kmeans", k=50)
    for c in result.clusters:
        print(c.id, c.name, c.size, c.labels[:1], c.prompts[:1], c.central[:3])
    ws.search({"metadata.clusters.clip.id": 3})        # the items of cluster 3

Clustering:

- ``kmeans``: this module's own k-means in PyTorch (``kmeans``): greedy k-means++ seeding as
  scikit-learn does it (2 + ln k candidates per centre, the one that lowers the potential
  most), then Lloyd iterations until no label changes, the centres move less than ``tol``
  times the data's mean variance (scikit-learn's rule), or ``max_iter``. Seeded; CUDA when
  present, else the CPU.
- ``hdbscan``: scikit-learn's ``HDBSCAN(min_cluster_size=min_size)``; points in no cluster
  get id -1 (named "noise"). Above ``HDBSCAN_PCA_ABOVE`` vectors of more than ``PCA_DIMS``
  dimensions it runs on a PCA reduction to ``PCA_DIMS`` (its neighbour search is slow in
  high dimensions); ``details["pca_first"]`` says so.

Naming, without any online service (each cluster gets all that apply, ``name`` is the first):

1. ``prompts``: for a set made by an open_clip model (``model.backend == "open_clip"``), the
   vocabulary words whose prompt (``template.format(word)``, default "a photo of a {}") is
   nearest the cluster's centre: the prompts are embedded by the set's own model with the
   set's own normalisation, and ranked by cosine similarity to the centre (CLIP's own
   image-text score; for a normalised set the same order as Euclidean distance to the
   normalised centre). ``DEFAULT_VOCABULARY`` holds a few hundred everyday objects and scenes.
2. ``labels``: the most common values among the cluster's entities of ``label_field`` (an
   item metadata field such as ``user.class``) or, without one, of the annotation label
   (an item's most common annotation label; an annotation's own label).
3. ``central``: the entities closest to the cluster's centre (the mean of its vectors).

``name`` is the top label when ``label_field`` is given, else the top prompt word, else the
top annotation label, else the name of the most central item.

Where the result goes: ``metadata.clusters.<key> = {"id": 3, "name": "cat"}`` on every
clustered item, so the filter language reaches it (``{"metadata.clusters.<key>.id": 3}``).
``key`` defaults to ``default_key(set name)``: the name lower-cased, every run of characters
other than a-z, 0-9 and '_' turned into one '_', at most 64 characters ("My CLIP set" ->
"my_clip_set"). For an annotation set the value goes on each annotation's own metadata
(an item can hold boxes in different clusters), so annotation filters reach it
(``dataset.annotations.list({"metadata.clusters.<key>.id": 3})``). A rerun with the same key
replaces the previous assignment everywhere (entities no longer clustered lose theirs: a run
scoped to one dataset, ``dataset_id``, leaves the key on that dataset's entities only; give
another key to keep two datasets' clusters). The
full result (centres' distances, names, central items) is also kept in the workspace cache,
per set and key, for ``load_result``.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from ..devices import resolve_device
from ..errors import FeaturelabError, InvalidInput
from ..records import FeatureSet
from .knn import import_torch
from .scope import scope_rows
from .tables import annotation_rows, entity_labels

if TYPE_CHECKING:
    from ..workspace import Workspace

ProgressFn = Callable[[str, float], None]
METHODS = ("kmeans", "hdbscan")
PROMPT_TEMPLATE = "a photo of a {}"
HDBSCAN_PCA_ABOVE = 20_000
PCA_DIMS = 50
KEY_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
NOISE_NAME = "noise"
RESULT_VERSION = 1  # of the cached result files

# Everyday objects, animals, food, places and scenes: the default words to name CLIP clusters.
DEFAULT_VOCABULARY: tuple[str, ...] = tuple("""
person man woman child baby boy girl crowd face hand
dog cat horse cow sheep pig goat chicken duck bird parrot owl eagle penguin fish shark whale dolphin
turtle frog snake lizard butterfly bee spider insect rabbit mouse squirrel deer fox wolf bear
polar_bear panda lion tiger leopard elephant giraffe zebra monkey gorilla kangaroo camel
car truck bus van motorcycle bicycle scooter train tram airplane helicopter boat ship sailboat
canoe tractor taxi ambulance fire_truck traffic_light stop_sign parking_meter road street highway
bridge tunnel railway station airport harbor
apple banana orange lemon strawberry grapes watermelon pineapple cherry pear peach tomato carrot
broccoli potato onion corn mushroom pepper salad bread sandwich hamburger hot_dog pizza pasta
noodles rice soup sushi steak egg cheese cake cookie donut ice_cream chocolate candy pie coffee
tea wine beer juice milk water_bottle cup mug glass plate bowl fork knife spoon chopsticks
chair sofa couch bed table desk bench stool shelf bookcase cabinet wardrobe drawer lamp
chandelier mirror clock vase plant flower tree bush grass leaf cactus rose sunflower
television laptop computer keyboard computer_mouse monitor phone smartphone tablet camera
headphones speaker microphone radio remote_control printer cable battery charger
refrigerator oven microwave toaster stove sink dishwasher washing_machine kettle blender
toilet bathtub shower towel toothbrush soap
book newspaper magazine letter envelope pen pencil paper notebook map poster painting
drawing photograph sign text document screenshot diagram chart logo
shirt t-shirt dress skirt jacket coat sweater jeans trousers shorts suit tie hat cap
helmet shoes boots sneakers sandals sock glove scarf sunglasses glasses watch ring necklace
bag backpack handbag suitcase wallet umbrella
ball football basketball soccer_ball tennis_racket baseball_bat skateboard surfboard skis
snowboard kite frisbee bicycle_helmet toy teddy_bear doll puzzle game chess_board
guitar piano violin drum trumpet
hammer screwdriver wrench saw drill scissors tape rope ladder bucket broom shovel
box bottle can jar basket shopping_bag
house apartment building skyscraper tower castle church temple mosque barn cabin tent
kitchen bedroom bathroom living_room office classroom library restaurant cafe bar shop
supermarket market mall hospital school factory warehouse gym stadium museum theater
garden park playground farm field forest jungle desert beach ocean sea lake river waterfall
mountain hill valley canyon cave island volcano glacier snow ice sky cloud sunset sunrise
night city town village countryside
fence wall door window roof stairs floor ceiling fireplace garage
rain storm fog rainbow fire smoke
""".split())


# ---- k-means --------------------------------------------------------------------------------
@dataclass
class KMeansResult:
    """``labels[i]`` is the cluster of row i; ``centers`` in the input's own space."""

    labels: np.ndarray  # (n,) int64
    centers: np.ndarray  # (k, d) float32
    inertia: float  # sum of squared distances of the rows to their centres
    n_iter: int
    converged: bool
    device: str


def _device(device: str | None) -> str:
    """``resolve_device``'s pick, among the devices k-means runs on (its float64 sums rule out mps)."""
    if device is not None and device != "cpu" and not device.startswith("cuda"):
        raise InvalidInput(f"device must be 'cpu' or 'cuda', got {device!r}")
    return resolve_device(device)


def _sq_dists(x, sq, centers, block: int):
    """(labels, squared distance to the nearest centre) for each row, block by block."""
    torch = import_torch()
    csq = (centers * centers).sum(1)
    labels = torch.empty(len(x), dtype=torch.int64, device=x.device)
    best = torch.empty(len(x), dtype=x.dtype, device=x.device)
    for start in range(0, len(x), block):
        stop = min(start + block, len(x))
        d = torch.addmm(csq[None, :], x[start:stop], centers.T, alpha=-2.0)
        d += sq[start:stop, None]
        value, index = d.min(dim=1)
        best[start:stop] = value.clamp_min_(0.0)
        labels[start:stop] = index
    return labels, best


def _plusplus(x, sq, k: int, generator, block: int):
    """Greedy k-means++ (scikit-learn's ``_kmeans_plusplus``): each new centre is the best
    of ``2 + ln k`` candidates drawn with probability proportional to the squared distance."""
    torch = import_torch()
    n = len(x)
    trials = 2 + int(math.log(k))
    first = int(torch.randint(0, n, (1,), generator=generator, device=x.device).item())
    chosen = [first]
    closest = _sq_dists(x, sq, x[first : first + 1], block)[1]
    potential = closest.sum(dtype=torch.float64)
    for _ in range(1, k):
        draws = torch.rand(trials, generator=generator, device=x.device, dtype=torch.float64) * potential
        candidates = torch.searchsorted(torch.cumsum(closest, 0, dtype=torch.float64), draws).clamp_(max=n - 1)
        cand = x[candidates]
        d = torch.addmm((cand * cand).sum(1)[:, None], cand, x.T, alpha=-2.0)
        d += sq[None, :]
        d = torch.minimum(closest[None, :], d.clamp_min_(0.0))
        pots = d.sum(1, dtype=torch.float64)
        best = int(pots.argmin().item())
        potential, closest = pots[best], d[best]
        chosen.append(int(candidates[best].item()))
    return x[chosen].clone()


def _means(x, labels, k: int, dist):
    """New centres: the mean of each cluster's rows; an empty cluster takes the row farthest
    from its centre (as scikit-learn relocates them)."""
    torch = import_torch()
    sums = torch.zeros((k, x.shape[1]), dtype=x.dtype, device=x.device).index_add_(0, labels, x)
    counts = torch.bincount(labels, minlength=k)
    centers = sums / counts.clamp_min(1)[:, None].to(x.dtype)
    empty = (counts == 0).nonzero().squeeze(1)
    if len(empty):
        far = torch.topk(dist, len(empty)).indices
        centers[empty] = x[far]
    return centers


def _inertia(x, labels, centers, block: int) -> float:
    """Sum of squared distances to the assigned centres, measured directly (the expansion
    used to rank centres loses precision near zero)."""
    total = 0.0
    for start in range(0, len(x), block):
        diff = x[start : start + block] - centers[labels[start : start + block]]
        total += float((diff * diff).sum(dtype=import_torch().float64).item())
    return total


def kmeans(
    values: np.ndarray, k: int, *, max_iter: int = 300, tol: float = 1e-4, seed: int = 0,
    device: str | None = None, progress: Callable[[float], None] | None = None,
) -> KMeansResult:
    """k-means of the rows of ``values`` (n, d) into ``k`` clusters: greedy k-means++ seeding,
    then Lloyd iterations until no label changes, the centres' total squared shift is at most
    ``tol`` times the mean variance of the columns, or ``max_iter``. Seeded by ``seed``;
    ``device`` 'cpu' or 'cuda' (default: CUDA when present)."""
    torch = import_torch()
    values = np.asarray(values)
    if values.ndim != 2 or not len(values):
        raise InvalidInput(f"k-means needs a non-empty 2-D array of vectors, got shape {values.shape}")
    n = len(values)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n:
        raise InvalidInput(f"k must be a whole number from 1 to the number of vectors ({n}), got {k!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise InvalidInput(f"max_iter must be a whole number of at least 1, got {max_iter!r}")
    dev = _device(device)
    mean = values.mean(axis=0, dtype=np.float64)
    # Centred rows keep the float32 expansion |x|^2 - 2x.c + |c|^2 precise.
    data = np.ascontiguousarray(values - mean.astype(np.float32), dtype=np.float32)
    block = int(min(n, max(1024, 2**25 // max(int(k), 1))))
    with torch.inference_mode():
        generator = torch.Generator(device=dev)
        generator.manual_seed(int(seed))
        x = torch.from_numpy(data).to(dev)
        sq = (x * x).sum(1)
        # The columns are centred, so their mean (biased) variance is mean(|x|^2) / d.
        threshold = float(tol) * float(sq.double().mean().item()) / x.shape[1]
        centers = _plusplus(x, sq, int(k), generator, block)
        labels, dist = _sq_dists(x, sq, centers, block)
        converged, iteration = False, 0
        for iteration in range(1, int(max_iter) + 1):
            new_centers = _means(x, labels, int(k), dist)
            shift = float(((new_centers - centers) ** 2).sum().item())
            centers = new_centers
            new_labels, dist = _sq_dists(x, sq, centers, block)
            same = bool(torch.equal(new_labels, labels))
            labels = new_labels
            if progress:
                progress(iteration / max_iter)
            if same or shift <= threshold:
                converged = True
                break
        inertia = _inertia(x, labels, centers, block)
        out_labels = labels.cpu().numpy()
        out_centers = centers.cpu().numpy() + mean.astype(np.float32)
    return KMeansResult(out_labels, out_centers, inertia, iteration, converged, dev)


# ---- results ----------------------------------------------------------------------------------
@dataclass
class Cluster:
    """One cluster: its id (-1: HDBSCAN's noise), name, size and what names it."""

    id: int
    name: str
    size: int
    central: list[str]  # entity ids, closest to the centre first
    labels: list[tuple[str, int]] = field(default_factory=list)  # most common label values, with counts
    prompts: list[tuple[str, float]] = field(default_factory=list)  # nearest vocabulary words, cosine similarity


@dataclass
class ClusterResult:
    """Clusters of one feature set at one version: ``labels[i]`` is the cluster of
    ``entity_ids[i]`` and ``distances[i]`` its distance to that cluster's centre."""

    feature_set_id: str
    feature_set_name: str
    version: int
    entity_type: str
    key: str
    method: str
    params: dict
    entity_ids: np.ndarray  # (n,) str
    labels: np.ndarray  # (n,) int64
    distances: np.ndarray  # (n,) float32
    clusters: list[Cluster]
    details: dict = field(default_factory=dict)  # seconds, inertia, iterations, device, warnings

    def cluster(self, cluster_id: int) -> Cluster:
        for c in self.clusters:
            if c.id == cluster_id:
                return c
        raise InvalidInput(f"no cluster {cluster_id}; the ids are {[c.id for c in self.clusters]}")

    def members(self, cluster_id: int, limit: int | None = None) -> list[str]:
        """Entity ids of one cluster, closest to its centre first."""
        rows = np.flatnonzero(self.labels == cluster_id)
        rows = rows[np.lexsort((self.entity_ids[rows], self.distances[rows]))]
        return self.entity_ids[rows[:limit]].tolist()

    def assignment(self) -> dict[str, int]:
        """entity id -> cluster id."""
        return dict(zip(self.entity_ids.tolist(), self.labels.tolist()))

    def names(self) -> dict[int, str]:
        return {c.id: c.name for c in self.clusters}

    def to_json(self) -> dict:
        """Everything but the per-entity arrays (for ``--json`` and the app)."""
        return {"featureSetId": self.feature_set_id, "featureSet": self.feature_set_name, "version": self.version,
                "entityType": self.entity_type, "key": self.key, "method": self.method, "params": self.params,
                "entities": len(self.entity_ids), "clusters": [asdict(c) for c in self.clusters],
                "details": self.details}


# ---- keys and vocabularies ---------------------------------------------------------------------
def default_key(set_name: str) -> str:
    """The metadata key for a set's clusters: its name lower-cased, each run of characters
    other than a-z, 0-9, '_' made one '_', trimmed of '_', at most 64 characters; a name
    with none of those characters gives 'set_' and a short hash of the name."""
    key = re.sub(r"[^a-z0-9_]+", "_", set_name.lower()).strip("_")[:64].strip("_")
    return key or "set_" + hashlib.sha256(set_name.encode()).hexdigest()[:10]


def check_key(key: str) -> str:
    if not isinstance(key, str) or not KEY_PATTERN.fullmatch(key):
        raise InvalidInput(f"the clusters key must be 1 to 64 letters, digits, '_' or '-', got {key!r}")
    return key


def parse_vocabulary(text: str) -> list[str]:
    """Words from text: one per line or separated by commas; '#' starts a comment; '_'
    reads as a space ("fire_truck" -> "fire truck"); blanks and duplicates dropped."""
    words = []
    for line in text.splitlines():
        for part in line.split("#", 1)[0].split(","):
            word = " ".join(part.replace("_", " ").split())
            if word:
                words.append(word)
    return list(dict.fromkeys(words))


def default_vocabulary() -> list[str]:
    return parse_vocabulary("\n".join(DEFAULT_VOCABULARY))


# ---- clustering a feature set --------------------------------------------------------------------
def _whole(value: Any, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise InvalidInput(f"{name} must be a whole number of at least {low}, got {value!r}")
    return int(value)


def _hdbscan(values: np.ndarray, min_size: int) -> tuple[np.ndarray, dict]:
    from sklearn.cluster import HDBSCAN

    data, details = values, {}
    if len(values) > HDBSCAN_PCA_ABOVE and values.shape[1] > PCA_DIMS:
        from sklearn.decomposition import PCA

        data = PCA(n_components=PCA_DIMS, random_state=0).fit_transform(values)
        details["pca_first"] = PCA_DIMS
    labels = HDBSCAN(min_cluster_size=min_size, copy=True).fit_predict(data.astype(np.float64))
    return labels.astype(np.int64), details


def cluster_feature_set(
    ws: "Workspace", feature_set: FeatureSet | str, *, method: str = "kmeans", k: int = 8, min_size: int = 5,
    seed: int = 0, max_iter: int = 300, key: str | None = None, vocabulary: Sequence[str] | None = None,
    template: str = PROMPT_TEMPLATE, label_field: str | None = None, central: int = 5, save: bool = True,
    device: str | None = None, progress: ProgressFn | None = None, dataset_id: str | None = None,
) -> ClusterResult:
    """Cluster a feature set (a ``FeatureSet``, its name or id) and name each cluster (see
    the module's docstring). ``method`` 'kmeans' (with ``k``, ``seed``, ``max_iter``) or
    'hdbscan' (with ``min_size``). ``vocabulary``: words for a CLIP set's prompt names
    (default ``DEFAULT_VOCABULARY``; refused for a set of another model). ``label_field``:
    an item metadata field to name clusters by. ``central``: how many central entities to
    keep per cluster. With ``save`` (the default) the assignment is written to metadata under
    ``key`` (default ``default_key(set name)``), replacing that key's previous assignment,
    and the result is cached for ``load_result``. ``dataset_id``: cluster only that dataset's
    entities (None: every dataset; ``params["dataset_id"]`` records a scope).
    ``progress(stage, fraction)``: stages 'load', 'cluster', 'name', 'save'."""
    report = progress or (lambda stage, fraction: None)
    if method not in METHODS:
        raise InvalidInput(f"method must be one of {list(METHODS)}, got {method!r}")
    central = _whole(central, "central", 1)
    fs = ws.feature_sets.resolve(feature_set)
    key = check_key(key) if key is not None else default_key(fs.name)
    if label_field is not None and (not isinstance(label_field, str) or not label_field.strip()):
        raise InvalidInput("label_field must be a metadata field such as user.class, or None")
    text_model = _prompt_model(fs, vocabulary)
    if "{}" not in template:
        raise InvalidInput(f"the prompt template must contain {{}} where the word goes, got {template!r}")
    report("load", 0.0)
    matrix = ws.matrix(fs)
    rows = scope_rows(ws, fs, matrix.entity_ids, dataset_id=dataset_id)
    whole = len(rows) == len(matrix)  # no copy of the matrix without a scope
    values = matrix.values if whole else matrix.values[rows]
    entity_ids = matrix.entity_ids if whole else matrix.entity_ids[rows]
    n = len(rows)
    if n == 0:
        where = "" if dataset_id is None else " in this dataset"
        raise InvalidInput(f"feature set {fs.name!r} holds no vectors{where} yet; add features, then cluster it")
    report("cluster", 0.0)
    started = time.perf_counter()
    if method == "kmeans":
        k = _whole(k, "k", 1)
        if k > n:
            raise InvalidInput(f"k = {k} is more than the {n} vectors of {fs.name!r}; pick k from 1 to {n}")
        km = kmeans(values, k, seed=seed, max_iter=max_iter, device=device,
                    progress=lambda f: report("cluster", f))
        labels = km.labels
        params = {"k": k, "seed": int(seed), "max_iter": int(max_iter)}
        details: dict[str, Any] = {"inertia": km.inertia, "iterations": km.n_iter, "converged": km.converged,
                                   "device": km.device}
    else:
        min_size = _whole(min_size, "min_size", 2)
        if n < min_size:
            raise InvalidInput(f"{fs.name!r} holds {n} vectors, fewer than min_size = {min_size}")
        labels, details = _hdbscan(values, min_size)
        params = {"min_size": min_size}
    if dataset_id is not None:
        params["dataset_id"] = dataset_id
    details["cluster_seconds"] = round(time.perf_counter() - started, 3)
    report("cluster", 1.0)
    result = _name_clusters(ws, fs, (values, entity_ids, matrix.version), labels, key, method, params, details,
                            text_model, vocabulary, template, label_field, central, report)
    if save:
        report("save", 0.0)
        save_assignment(ws, result)
        _save_result(ws, result)
    result.details["seconds"] = round(time.perf_counter() - started, 3)
    report("save", 1.0)
    return result


def _prompt_model(fs: FeatureSet, vocabulary: Sequence[str] | None) -> Any:
    """The set's model spec when its clusters can be named by prompts (an open_clip set)."""
    from ..embedders import parse_spec

    spec = None
    if fs.model:
        try:
            spec = parse_spec(fs.model)
        except FeaturelabError:
            spec = None
    if spec is not None and spec.embeds_text and spec.embeds_images:  # prompts and items share a space
        return spec
    if vocabulary is not None:
        raise InvalidInput(
            f"feature set {fs.name!r} was not made by a CLIP (open_clip) model, so its clusters cannot be named "
            "by text prompts; leave the vocabulary out (clusters are named by labels and central items)"
        )
    return None


def _name_clusters(ws, fs, scoped, labels, key, method, params, details, text_model, vocabulary, template,
                   label_field, central, report) -> ClusterResult:
    report("name", 0.0)
    values, entity_ids, version = scoped  # the scope's rows of the set's matrix
    entity_ids = entity_ids.copy()
    ids = np.unique(labels)
    order = np.argsort(labels, kind="stable")
    member_rows = dict(zip(ids.tolist(), np.split(order, np.searchsorted(labels[order], ids[1:]))))
    centres = np.zeros((len(ids), values.shape[1]), dtype=np.float64)
    distances = np.zeros(len(values), dtype=np.float32)
    for i, rows in enumerate(member_rows.values()):  # each cluster's mean, and its rows' distances to it
        centres[i] = values[rows].mean(axis=0, dtype=np.float64)
        diff = values[rows] - centres[i].astype(np.float32)
        distances[rows] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    label_of = entity_labels(ws, fs, entity_ids, label_field)
    prompts = _prompt_names(text_model, vocabulary, template, centres, ids, details)
    report("name", 0.5)
    central_names = _item_names(ws, fs, [
        entity_ids[rows[np.argmin(distances[rows])]] for rows in member_rows.values()])
    clusters = []
    for i, cid in enumerate(ids.tolist()):
        rows = member_rows[cid]
        order = rows[np.lexsort((entity_ids[rows], distances[rows]))][:central]
        counted = Counter(label_of[r] for r in rows if label_of[r] is not None)
        top_labels = sorted(counted.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
        words = prompts[i] if prompts is not None else []
        cluster = Cluster(cid, "", len(rows), entity_ids[order].tolist(), [(v, n) for v, n in top_labels], words)
        cluster.name = _choose_name(cluster, label_field, central_names)
        clusters.append(cluster)
    clusters.sort(key=lambda c: (c.id < 0, c.id))
    report("name", 1.0)
    return ClusterResult(fs.id, fs.name, version, fs.entity_type, key, method, params, entity_ids,
                         labels.astype(np.int64), distances, clusters, details)


def _choose_name(cluster: Cluster, label_field: str | None, central_names: dict[str, str]) -> str:
    if cluster.id < 0:
        return NOISE_NAME
    if label_field and cluster.labels:
        return cluster.labels[0][0]
    if cluster.prompts:
        return cluster.prompts[0][0]
    if cluster.labels:
        return cluster.labels[0][0]
    return central_names.get(cluster.central[0], f"cluster {cluster.id}")


def _item_names(ws, fs: FeatureSet, entity_ids: Sequence[str]) -> dict[str, str]:
    """entity id -> its item's file name without the extension (a fallback cluster name)."""
    ids = [str(e) for e in entity_ids]
    if fs.entity_type == "annotation":
        rows = annotation_rows(ws, ids)
        item_of = {e: rows[e][0] for e in ids if e in rows}
    else:
        item_of = {e: e for e in ids}
    items = ws.items_by_ids(list(dict.fromkeys(item_of.values())))
    names = {}
    for e, item_id in item_of.items():
        item = items.get(item_id)
        if item is not None:
            names[e] = item.name.rsplit(".", 1)[0] if "." in item.name[1:] else item.name
    return names


def _prompt_names(spec, vocabulary, template: str, centres: np.ndarray, ids: np.ndarray,
                  details: dict, top: int = 3) -> list[list[tuple[str, float]]] | None:
    """For each centre, the ``top`` vocabulary words whose prompts are nearest (cosine)."""
    if spec is None:
        return None
    from ..embedders.registry import load_embedder

    words = list(dict.fromkeys(vocabulary)) if vocabulary is not None else default_vocabulary()
    words = [w.strip() for w in words if isinstance(w, str) and w.strip()]
    if not words:
        raise InvalidInput("the vocabulary is empty; give at least one word, or leave it out for the default list")
    try:
        embedder = load_embedder(spec)
        text = embedder.embed_texts([template.format(w) for w in words])
    except FeaturelabError as exc:  # weights or tokenizer unavailable: name by labels and central items
        details.setdefault("warnings", []).append(f"clusters not named by prompts: {exc}")
        return None
    if text.shape[1] != centres.shape[1]:
        details.setdefault("warnings", []).append(
            f"clusters not named by prompts: the model gives vectors of size {text.shape[1]}, the set holds "
            f"{centres.shape[1]}")
        return None
    text = text.astype(np.float64)
    text /= np.maximum(np.linalg.norm(text, axis=1, keepdims=True), 1e-12)
    unit = centres / np.maximum(np.linalg.norm(centres, axis=1, keepdims=True), 1e-12)
    scores = unit @ text.T
    out = []
    for row in scores:
        best = np.lexsort((np.arange(len(words)), -row))[:top]
        out.append([(words[j], round(float(row[j]), 4)) for j in best])
    return out


# ---- saving -------------------------------------------------------------------------------------
def _table(entity_type: str) -> str:
    return "annotations" if entity_type == "annotation" else "items"


def save_assignment(ws: "Workspace", result: ClusterResult) -> int:
    """Write ``metadata.clusters.<key> = {"id", "name"}`` on every clustered entity (the
    item, or the annotation for an annotation set) and remove that key from every other one,
    in one transaction. Returns how many entities were written."""
    key = check_key(result.key)
    table = _table(result.entity_type)
    names = result.names()
    wanted = {e: {"id": int(c), "name": names[int(c)]} for e, c in zip(result.entity_ids.tolist(), result.labels.tolist())}
    path = f'$."clusters"."{key}"'
    with ws.catalog.transaction() as c:
        stale = c.execute(f"SELECT id, metadata FROM {table} WHERE json_extract(metadata, ?) IS NOT NULL",
                          (path,)).fetchall()
        updates: dict[str, dict] = {}
        for row_id, text in stale:
            if row_id not in wanted:
                metadata = json.loads(text)
                metadata["clusters"].pop(key, None)
                if not metadata["clusters"]:
                    del metadata["clusters"]
                updates[row_id] = metadata
        ids = list(wanted)
        for start in range(0, len(ids), 900):
            chunk = ids[start : start + 900]
            rows = c.execute(f"SELECT id, metadata FROM {table} WHERE id IN ({','.join('?' * len(chunk))})", chunk)
            for row_id, text in rows.fetchall():
                metadata = json.loads(text)
                holder = metadata.setdefault("clusters", {})
                if not isinstance(holder, dict):
                    raise InvalidInput(
                        f"metadata.clusters of {table[:-1]} {row_id} is not an object ({holder!r}); move that "
                        "field elsewhere, then cluster again. Nothing was written")
                holder[key] = wanted[row_id]
                updates[row_id] = metadata
        c.executemany(f"UPDATE {table} SET metadata=? WHERE id=?",
                      [(json.dumps(m, sort_keys=True), i) for i, m in updates.items()])
    return sum(1 for i in updates if i in wanted)


def clear_assignment(ws: "Workspace", key: str, entity_type: str = "item") -> int:
    """Remove ``metadata.clusters.<key>`` from every item (or annotation); return how many."""
    empty = ClusterResult("", "", 0, entity_type, check_key(key), "", {}, np.zeros(0, dtype=str),
                          np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32), [])
    table = _table(entity_type)
    before = ws.catalog.scalar(f"SELECT COUNT(*) FROM {table} WHERE json_extract(metadata, ?) IS NOT NULL",
                               (f'$."clusters"."{key}"',))
    save_assignment(ws, empty)
    return int(before)


def _result_path(ws: "Workspace", set_id: str, key: str):
    safe = set_id if KEY_PATTERN.fullmatch(set_id) else hashlib.sha256(set_id.encode()).hexdigest()[:32]
    return ws.path / "cache" / "clusters" / safe / f"{key}.npz"


def _save_result(ws: "Workspace", result: ClusterResult) -> None:
    import os

    path = _result_path(ws, result.feature_set_id, result.key)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {**result.to_json(), "resultVersion": RESULT_VERSION}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, entity_ids=result.entity_ids, labels=result.labels, distances=result.distances,
                 meta=np.array(json.dumps(meta)))
    os.replace(tmp, path)


def load_result(ws: "Workspace", feature_set: FeatureSet | str, key: str | None = None) -> ClusterResult | None:
    """The last saved result for the set and key (default key: ``default_key(set name)``),
    or None when there is none or the set has changed since (its version moved)."""
    fs = ws.feature_sets.resolve(feature_set)
    path = _result_path(ws, fs.id, check_key(key) if key is not None else default_key(fs.name))
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta.get("resultVersion") != RESULT_VERSION or meta["version"] != fs.version:
                return None
            clusters = [Cluster(c["id"], c["name"], c["size"], c["central"], [tuple(x) for x in c["labels"]],
                                [tuple(x) for x in c["prompts"]]) for c in meta["clusters"]]
            return ClusterResult(fs.id, fs.name, meta["version"], meta["entityType"], meta["key"], meta["method"],
                                 meta["params"], data["entity_ids"], data["labels"], data["distances"], clusters,
                                 meta["details"])
    except (FileNotFoundError, KeyError, ValueError, OSError):
        return None
