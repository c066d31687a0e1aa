"""``python -m store``: the command line over the same API as the app.

Every command takes ``--workspace`` (default ``$FEATURELAB_HOME`` or ./workspace). Errors
print one line and exit with status 2; long work shows a tqdm bar.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import FeaturelabError, InvalidInput
from ..search.filters import Filters

COMMANDS: dict[str, Callable] = {}
ARGUMENTS: dict[str, Callable[[argparse.ArgumentParser], None]] = {}
# Modules that add their own commands with @command(arguments=...); imported by build_parser.
PLUGIN_MODULES: list[str] = ["store.cli.project", "store.cli.embed", "store.io.samples", "store.cli.curate",
                              "store.cli.collections", "store.cli.analyze"]


def command(fn: Callable | None = None, *, arguments: Callable[[argparse.ArgumentParser], None] | None = None):
    """Register ``fn`` as a sub-command named after it; ``arguments`` adds its options."""
    def register(f: Callable) -> Callable:
        name = f.__name__.rstrip("_").replace("_", "-")
        COMMANDS[name] = f
        if arguments is not None:
            ARGUMENTS[name] = arguments
        return f

    return register(fn) if fn is not None else register


def _bar(desc: str):
    from tqdm import tqdm

    bar = tqdm(desc=desc, unit="file", file=sys.stderr, mininterval=0.5)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    return update


def _print_json(value) -> None:
    print(json.dumps(value, indent=2, default=str))


def _load_json_arg(text: str):
    """A JSON string, or @path / a path to a JSON file."""
    path = Path(text[1:] if text.startswith("@") else text)
    if text.startswith("@") or (len(text) < 4096 and path.suffix == ".json" and path.is_file()):
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidInput(f"cannot read {path}: {exc}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"not valid JSON ({exc}); pass a JSON string or a .json file") from exc


def _load_vector(text: str) -> list[float]:
    path = Path(text)
    if path.suffix == ".npy" and path.is_file():
        arr = np.load(path, allow_pickle=False)
        return np.asarray(arr, dtype=np.float64).ravel().tolist()
    if text.strip().startswith("["):
        return _load_json_arg(text)
    try:
        return [float(x) for x in text.replace(",", " ").split()]
    except ValueError as exc:
        raise InvalidInput(f"--vector must be numbers like '0.1,0.2,0.3', a JSON list or a .npy file ({exc})") from exc


@command
def info(ws, args) -> None:
    """Show the workspace: datasets, items, feature sets with their sizes and counts."""
    data = ws.info()
    data["datasets"] = [
        {"id": d.id, "name": d.name, "items": d.items.count()} for d in ws.datasets.list()
    ]
    _print_json(data)


@command
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


@command
def upload(ws, args) -> None:
    """Upload files or folders into a dataset (created when missing)."""
    ds = ws.datasets.get_or_create(args.dataset)
    results = ds.items.upload(args.paths, dir=args.dir, copy=args.copy, progress=_bar("upload"))
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
        if r.status == "rejected":
            print(f"rejected {r.name}: {r.message}", file=sys.stderr)
    print(", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "nothing to upload")
    if counts.get("rejected") and not (counts.get("added") or counts.get("duplicate")):
        raise SystemExit(2)


@command
def items(ws, args) -> None:
    """List the items of a dataset, optionally with a filter (JSON or @file.json)."""
    ds = ws.datasets.get(dataset_name=args.dataset)
    pages = ds.items.list(filters=_load_json_arg(args.filter) if args.filter else None)
    for item in pages.all():
        print(f"{item.id}  {item.filename}  {item.kind}  {'hidden' if item.hidden else ''}".rstrip())


@command
def sets(ws, args) -> None:
    """List feature sets, or create / delete one."""
    if args.create:
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


@command
def search(ws, args) -> None:
    """Search: a JSON filter (the seed's custom_filter), or a vector / feature id with -k
    and --max-distance. Prints one JSON line per result, with its distance."""
    if args.filter:
        doc = _load_json_arg(args.filter)
    else:
        if not args.feature_set or not (args.vector or args.feature_id):
            raise InvalidInput("give --filter FILE, or --feature-set with --vector or --feature-id")
        fs = ws.feature_sets.resolve(args.feature_set)
        f = Filters()
        if args.hide_hidden:
            f.add("hidden", False)
        f.add_euclid(fs, args.feature_id or _load_vector(args.vector), k=args.k, max_distance=args.max_distance,
                     sort="descending" if args.descending else "ascending", approximate=args.approximate)
        doc = f.prepare()
    dataset_id = ws.datasets.get(dataset_name=args.dataset).id if args.dataset else None
    pages = ws.search(doc, dataset_id=dataset_id)
    for rec in pages.items:
        print(json.dumps({"id": rec.id, "name": getattr(rec, "filename", getattr(rec, "entity_id", None)),
                          "distance": rec.distance}))
    print(f"{len(pages.items)} of {pages.items_count} shown", file=sys.stderr)


@command
def export(ws, args) -> None:
    """Export a dataset to a folder or a .zip, with --vectors to include feature vectors."""
    ds = ws.datasets.get(dataset_name=args.dataset)
    path = ds.export(
        args.output, include_feature_vectors=args.vectors or bool(args.feature_set),
        feature_sets=args.feature_set or None, export_type="zip" if args.zip else None, progress=_bar("export"),
    )
    print(f"exported {ds.name} to {path}")


@command
def import_(ws, args) -> None:
    """Import an export folder or zip as a new dataset."""
    ds = ws.import_dataset(args.path, name=args.name, progress=_bar("import"))
    print(f"imported {ds.name} ({ds.items.count()} items)")


@command
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m store", description="featurelab: feature vectors, locally.")
    parser.add_argument("--workspace", "-w", help="workspace folder (default: $FEATURELAB_HOME or ./workspace)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str) -> argparse.ArgumentParser:
        fn = COMMANDS[name]
        return sub.add_parser(name, help=fn.__doc__.splitlines()[0], description=fn.__doc__)

    add("info")
    p = add("datasets")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--create", metavar="NAME")
    g.add_argument("--delete", metavar="NAME")
    p = add("upload")
    p.add_argument("--dataset", "-d", required=True)
    p.add_argument("--dir", default="/", help="folder inside the dataset (default /)")
    p.add_argument("--copy", action="store_true", help="add files even when the same bytes are already there")
    p.add_argument("paths", nargs="+", help="files or folders")
    p = add("items")
    p.add_argument("--dataset", "-d", required=True)
    p.add_argument("--filter", help="filter JSON, or @file.json")
    p = add("sets")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--create", metavar="NAME")
    g.add_argument("--delete", metavar="NAME_OR_ID")
    p.add_argument("--size", type=int)
    p.add_argument("--set-type", default="embeddings")
    p.add_argument("--entity-type", default="item", choices=["item", "annotation"])
    p.add_argument("--model")
    p = add("search")
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
    p = add("export")
    p.add_argument("--dataset", "-d", required=True)
    p.add_argument("--output", "-o", required=True, help="a new folder, or a file ending in .zip")
    p.add_argument("--vectors", action="store_true", help="include the vectors of every feature set")
    p.add_argument("--feature-set", action="append", help="include only these sets (repeatable)")
    p.add_argument("--zip", action="store_true")
    p = add("import")
    p.add_argument("path")
    p.add_argument("--name", help="name of the new dataset (default: the exported name)")
    p = add("repair")
    p.add_argument("--feature-set", "-s")
    p.add_argument("--all", action="store_true", help="rebuild even when the counts agree")
    import importlib

    for module in PLUGIN_MODULES:
        importlib.import_module(module)
    for name, configure in ARGUMENTS.items():
        configure(add(name))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from ..workspace import Workspace

        with Workspace.open(args.workspace) as ws:
            COMMANDS[args.command](ws, args)
    except FeaturelabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
