"""The workspace commands: ``info``, ``datasets``, ``upload``, ``items``, ``sets``,
``search``, ``export``, ``import`` and ``repair``, each with its options."""
from __future__ import annotations

import argparse
import json
import sys

from ..errors import InvalidInput
from ..search.filters import Filters
from .registry import command, load_json_arg, load_vector, print_json, progress_bar


@command
def info(ws, args) -> None:
    """Show the workspace: datasets, items, feature sets with their sizes and counts."""
    data = ws.info()
    data["datasets"] = [
        {"id": d.id, "name": d.name, "items": d.items.count()} for d in ws.datasets.list()
    ]
    print_json(data)


def _datasets_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--create", metavar="NAME")
    g.add_argument("--delete", metavar="NAME")


@command(arguments=_datasets_arguments)
def datasets(ws, args) -> None:
    """List datasets, or create / delete one (--create NAME, --delete NAME)."""
    if args.create:
        ds = ws.datasets.create(args.create)
        print(f"created dataset {ds.name} ({ds.id})")
    elif args.delete:
        ws.datasets.get(dataset_name=args.delete).delete()
        print(f"deleted dataset {args.delete}")
    else:
        for d in ws.datasets.list():
            print(f"{d.id}  {d.name}  {d.items.count()} items")


def _upload_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", "-d", required=True)
    p.add_argument("--dir", default="/", help="folder inside the dataset (default /)")
    p.add_argument("--copy", action="store_true", help="add files even when the same bytes are already there")
    p.add_argument("paths", nargs="+", help="files or folders")


@command(arguments=_upload_arguments)
def upload(ws, args) -> None:
    """Upload files or folders into a dataset (created when missing)."""
    ds = ws.datasets.get_or_create(args.dataset)
    results = ds.items.upload(args.paths, dir=args.dir, copy=args.copy, progress=progress_bar("upload"))
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
        if r.status == "rejected":
            print(f"rejected {r.name}: {r.message}", file=sys.stderr)
    print(", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "nothing to upload")
    if counts.get("rejected") and not (counts.get("added") or counts.get("duplicate")):
        raise SystemExit(2)


def _items_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", "-d", required=True)
    p.add_argument("--filter", help="filter JSON, or @file.json")


@command(arguments=_items_arguments)
def items(ws, args) -> None:
    """List the items of a dataset, optionally with a filter (JSON or @file.json)."""
    ds = ws.datasets.get(dataset_name=args.dataset)
    pages = ds.items.list(filters=load_json_arg(args.filter) if args.filter else None)
    for item in pages.all():
        print(f"{item.id}  {item.filename}  {item.kind}  {'hidden' if item.hidden else ''}".rstrip())


def _sets_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--create", metavar="NAME")
    g.add_argument("--delete", metavar="NAME_OR_ID")
    p.add_argument("--size", type=int)
    p.add_argument("--set-type", default="embeddings")
    p.add_argument("--entity-type", default="item", choices=["item", "annotation"])
    p.add_argument("--model", help="the model that makes the vectors (see `models`): the size is the model's, and "
                                   "a model whose weights are neither here nor reachable is refused at once")
    p.add_argument("--weights", help="a local checkpoint file (open_clip) or model folder (sentence-transformers)")


@command(arguments=_sets_arguments)
def sets(ws, args) -> None:
    """List feature sets, or create / delete one."""
    if args.create and args.model:
        from ..embedders import create_feature_set

        fs = create_feature_set(ws, args.create, args.model, weights=args.weights, set_type=args.set_type,
                                entity_type=args.entity_type, size=args.size)
        print(f"created feature set {fs.name} ({fs.id}) for {fs.model['name']}, size {fs.size}")
    elif args.create:
        if args.weights:
            raise InvalidInput("--weights needs --model (the architecture or model the weights belong to)")
        fs = ws.feature_sets.create(
            name=args.create, size=args.size, set_type=args.set_type, entity_type=args.entity_type, model=args.model
        )
        print(f"created feature set {fs.name} ({fs.id}), size {fs.size}")
    elif args.delete:
        ws.feature_sets.resolve(args.delete).delete()
        print(f"deleted feature set {args.delete}")
    else:
        for fs in ws.feature_sets.list():
            model = (fs.model or {}).get("name", "-")
            print(f"{fs.id}  {fs.name}  size={fs.size}  type={fs.set_type}  entity={fs.entity_type}  model={model}  vectors={fs.count()}")


def _search_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--filter", help="filter JSON (the seed's custom_filter), or @file.json")
    p.add_argument("--feature-set", "-s")
    p.add_argument("--vector", help="'0.1,0.2,...', a JSON list, or a .npy file")
    p.add_argument("--feature-id", help="search from a stored feature vector")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--max-distance", type=float)
    p.add_argument("--descending", action="store_true")
    p.add_argument("--approximate", action="store_true", help="use Chroma's HNSW index instead of exact search")
    p.add_argument("--hide-hidden", action="store_true", help="skip hidden items")
    p.add_argument("--dataset", "-d")


@command(arguments=_search_arguments)
def search(ws, args) -> None:
    """Search: a JSON filter (the seed's custom_filter), or a vector / feature id with -k
    and --max-distance. Prints one JSON line per result, with its distance."""
    if args.filter:
        doc = load_json_arg(args.filter)
    else:
        if not args.feature_set or not (args.vector or args.feature_id):
            raise InvalidInput("give --filter FILE, or --feature-set with --vector or --feature-id")
        fs = ws.feature_sets.resolve(args.feature_set)
        f = Filters()
        if args.hide_hidden:
            f.add("hidden", False)
        f.add_euclid(fs, args.feature_id or load_vector(args.vector), k=args.k, max_distance=args.max_distance,
                     sort="descending" if args.descending else "ascending", approximate=args.approximate)
        doc = f.prepare()
    dataset_id = ws.datasets.get(dataset_name=args.dataset).id if args.dataset else None
    pages = ws.search(doc, dataset_id=dataset_id)
    for rec in pages.items:
        print(json.dumps({"id": rec.id, "name": getattr(rec, "filename", getattr(rec, "entity_id", None)),
                          "distance": rec.distance}))
    if pages.note:
        print(f"note: {pages.note}", file=sys.stderr)
    print(f"{len(pages.items)} of {pages.items_count} shown", file=sys.stderr)


def _export_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", "-d", required=True)
    p.add_argument("--output", "-o", required=True, help="a new folder, or a file ending in .zip")
    p.add_argument("--vectors", action="store_true", help="include the vectors of every feature set")
    p.add_argument("--feature-set", action="append", help="include only these sets (repeatable)")
    p.add_argument("--zip", action="store_true")


@command(arguments=_export_arguments)
def export(ws, args) -> None:
    """Export a dataset to a folder or a .zip, with --vectors to include feature vectors."""
    ds = ws.datasets.get(dataset_name=args.dataset)
    path = ds.export(
        args.output, include_feature_vectors=args.vectors or bool(args.feature_set),
        feature_sets=args.feature_set or None, export_type="zip" if args.zip else None,
        progress=progress_bar("export"),
    )
    print(f"exported {ds.name} to {path}")


def _import_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path")
    p.add_argument("--name", help="name of the new dataset (default: the exported name)")


@command(arguments=_import_arguments)
def import_(ws, args) -> None:
    """Import an export folder or zip as a new dataset."""
    ds = ws.import_dataset(args.path, name=args.name, progress=progress_bar("import"))
    print(f"imported {ds.name} ({ds.items.count()} items)")


def _repair_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--feature-set", "-s")
    p.add_argument("--all", action="store_true", help="rebuild even when the counts agree")


@command(arguments=_repair_arguments)
def repair(ws, args) -> None:
    """Check each feature set's Chroma index against the catalog and rebuild what differs
    (or all with --all)."""
    targets = [ws.feature_sets.resolve(args.feature_set)] if args.feature_set else ws.feature_sets.list()
    for fs in targets:
        state = ws.check_index(fs.id)
        if args.all or not state["ok"]:
            ws.repair_index(fs.id)
            print(f"rebuilt {fs.name}: {ws.check_index(fs.id)['index']} vectors")
        else:
            print(f"{fs.name}: ok ({state['index']} vectors)")
