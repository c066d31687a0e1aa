"""An existing Chroma, read-only (see ``store.io.chroma_source``): ``python -m store collections``,
``collection-search``, ``collection-duplicates`` and ``collection-import``; and ``python -m
store save-selection``: items saved as a dataset or a folder, or exported (``store.io.selection``)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .registry import command, load_json_arg, load_vector, progress_bar
from ..errors import InvalidInput


def _location(args) -> str:
    if bool(args.path) == bool(args.url):
        raise InvalidInput("give exactly one of --path DIR (a Chroma folder) or --url URL (a Chroma server)")
    return args.path or args.url


def _where(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--path", help="a Chroma folder (what PersistentClient(path=...) wrote); opened from a copy, never written")
    g.add_argument("--url", help="a Chroma server, e.g. http://127.0.0.1:8000 (optionally ?tenant=..&database=..)")


def _load(args):
    from ..io.chroma_source import open_source

    with open_source(_location(args)) as source:
        return source.load(args.collection, progress=progress_bar("load"))


def _collections_args(p: argparse.ArgumentParser) -> None:
    _where(p)
    p.add_argument("--json", action="store_true", help="one JSON object per collection")


@command(arguments=_collections_args)
def collections(ws, args) -> None:
    """List the collections of an existing Chroma (a folder or a server), read-only: name,
    count, dimension and metadata."""
    from ..io.chroma_source import open_source

    with open_source(_location(args)) as source:
        infos = source.collections()
    for info in infos:
        if args.json:
            print(json.dumps(info.to_json()))
        else:
            print(f"{info.name}  count={info.count}  dimension={info.dimension if info.dimension else '-'}  "
                  f"metadata={json.dumps(info.metadata)}")
    if not infos:
        print("no collections", file=sys.stderr)


def _search_args(p: argparse.ArgumentParser) -> None:
    _where(p)
    p.add_argument("--collection", "-c", required=True)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--id", help="search from this record's embedding")
    g.add_argument("--vector", help="'0.1,0.2,...', a JSON list, or a .npy file")
    p.add_argument("-k", "--k", type=int, default=10, help="how many neighbours (default 10)")
    p.add_argument("--max-distance", type=float, help="only records within this true Euclidean distance")


@command(arguments=_search_args)
def collection_search(ws, args) -> None:
    """Exact nearest neighbours in a Chroma collection (true Euclidean distance), from a
    record's id or a vector; one JSON line per result with its document and metadata."""
    col = _load(args)
    hits = col.search(args.id if args.id is not None else load_vector(args.vector), k=args.k,
                      max_distance=args.max_distance)
    for hit in hits:
        print(json.dumps(hit.to_json(), default=str))
    print(f"{len(hits)} of {len(col)} records", file=sys.stderr)


def _duplicates_args(p: argparse.ArgumentParser) -> None:
    _where(p)
    p.add_argument("--collection", "-c", required=True)
    p.add_argument("--max-distance", type=float, help="link records this close (default: a suggested threshold, "
                   "where the nearest-neighbour distances show a gap)")


@command(arguments=_duplicates_args)
def collection_duplicates(ws, args) -> None:
    """Near-duplicate groups in a Chroma collection: records linked by true Euclidean
    distances of at most --max-distance, largest group first; one JSON line per group."""
    from ..analysis.duplicates import suggest_threshold

    col = _load(args)
    threshold = args.max_distance
    if threshold is None:
        threshold = suggest_threshold(col.nearest_neighbor_distances())
        print(f"suggested --max-distance {threshold:.6g}", file=sys.stderr)
    groups = col.near_duplicates(threshold)
    for group in groups:
        print(json.dumps({"size": len(group), "ids": group}))
    print(f"{len(groups)} groups, {sum(len(g) for g in groups)} of {len(col)} records", file=sys.stderr)


def _import_args(p: argparse.ArgumentParser) -> None:
    _where(p)
    p.add_argument("--collection", "-c", required=True)
    p.add_argument("--dataset", "-d", required=True, help="dataset for the items (created when missing)")
    p.add_argument("--feature-set", "-s", required=True,
                   help="feature set for the embeddings (created with the collection's size when missing)")
    p.add_argument("--dir", default="/", help="folder inside the dataset (default /)")


@command(arguments=_import_args)
def collection_import(ws, args) -> None:
    """Import a Chroma collection: one item per record (its document as a .txt, else its id
    and metadata as a .json), its embedding as the item's vector in a feature set."""
    from ..io.chroma_source import import_collection

    col = _load(args)
    result = import_collection(ws, col, args.dataset, args.feature_set, dir=args.dir, progress=progress_bar("import"))
    print(result.summary())


def _selection_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--items", required=True,
                   help="item (or annotation) ids: 'ID,ID,...', a JSON list, or @file with one id per line")
    p.add_argument("--dataset", "-d", help="new dataset to save them as (with --dir: the dataset to add a folder to)")
    p.add_argument("--dir", help="save as this folder of --dataset (created when missing) instead of a new dataset")
    p.add_argument("--on-clash", choices=["suffix", "refuse"], default="suffix",
                   help="a name already taken in the target: rename the copy 'a (1).jpg' (default) or refuse all")
    p.add_argument("--export", metavar="PATH", help="also (or, without --dataset, only) export them: a new folder or .zip")
    p.add_argument("--no-vectors", action="store_true", help="leave the feature vectors out of the export")


def _ids(text: str) -> list[str]:
    if text.startswith("@"):
        try:
            lines = Path(text[1:]).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise InvalidInput(f"cannot read {text[1:]}: {exc}") from exc
        return [ln.strip() for ln in lines if ln.strip()]
    if text.strip().startswith("["):
        ids = load_json_arg(text)
        if not isinstance(ids, list):
            raise InvalidInput("--items as JSON must be a list of ids")
        return [str(i) for i in ids]
    return [part.strip() for part in text.split(",") if part.strip()]


@command(arguments=_selection_args)
def save_selection(ws, args) -> None:
    """Save items (with their files, annotations and vectors) as a new dataset or a folder of
    one, and/or export them as `export` does."""
    from ..io.selection import export_selection, save_selection as save

    if not args.dataset and not args.export:
        raise InvalidInput("give --dataset NAME (save as a dataset), --export PATH, or both")
    if args.dir and not args.dataset:
        raise InvalidInput("--dir needs --dataset: the dataset the folder goes in")
    ids = _ids(args.items)
    if args.dataset:
        result = save(ws, ids, args.dataset, dir=args.dir, on_clash=args.on_clash)
        print(result.summary())
        for old, new in result.renamed:
            print(f"renamed {old} -> {new}", file=sys.stderr)
    if args.export:
        path = export_selection(ws, ids, args.export, name=args.dataset or "selection",
                                include_feature_vectors=not args.no_vectors, progress=progress_bar("export"))
        print(f"exported the selection to {path}")
