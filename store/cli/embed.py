"""Command-line sub-commands for embedding: ``embed``, ``import-vectors`` and ``models``.

    python -m store embed --dataset pets --feature-set pets-clip --model ViT-B-32/laion2b_s34b_b79k
    python -m store import-vectors --feature-set profiles customers.csv --key name --dataset crm
"""
from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from typing import Iterator

from .registry import command, progress_bar
from ..errors import InvalidInput, NotFound


def _embed_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", "-d", required=True, help="dataset name or id")
    p.add_argument("--feature-set", "-s", required=True,
                   help="feature set name or id; created for the model (with its size) when it does not exist")
    p.add_argument("--model", "-m", help="e.g. ViT-B-32/laion2b_s34b_b79k or all-MiniLM-L6-v2 (see `models`); "
                                         "default: the set's own model")
    p.add_argument("--weights", help="a local checkpoint file (open_clip) or model folder (sentence-transformers)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when present, else cpu)")
    p.add_argument("--batch-size", type=int, help="items per model call (default: 32 on CPU, 256 on GPU)")
    p.add_argument("--workers", type=int, help="threads that decode images ahead of the model")
    p.add_argument("--ray", metavar="ADDRESS",
                   help="run decoding and the model on a Ray cluster: its head's host:port, ray://host:10001, or "
                        "auto (the cluster `ray start` began on this machine, or $RAY_ADDRESS)")
    p.add_argument("--actors", type=int, help="with --ray: how many model actors (default: one per GPU, else one "
                                              "per 4 CPUs of the cluster)")
    p.add_argument("--recompute", action="store_true", help="embed every entity again, not only those missing")
    p.add_argument("--entity-type", choices=["item", "annotation"], default="item",
                   help="for a set created here: embed items, or the boxes on them")
    p.add_argument("--no-normalize", action="store_true", help="for a set created here: keep vectors unnormalised")


@command(arguments=_embed_arguments)
def embed(ws, args) -> None:
    """Embed a dataset's items (or their boxes) into a feature set: batched, resumable (a
    rerun does only what is missing), Ctrl-C stops after the current batch. --ray runs it
    on a Ray cluster; the vectors come back to this workspace."""
    from ..embedders import create_feature_set, default_model, embed_dataset, parse_spec, resolve_dataset

    ds = resolve_dataset(ws, args.dataset)
    model = parse_spec(args.model, weights=args.weights) if args.model else None
    try:
        fs = ws.feature_sets.resolve(args.feature_set)
    except NotFound:
        spec = model or default_model(ws, ds, args.entity_type)
        fs = create_feature_set(ws, args.feature_set, spec, entity_type=args.entity_type, weights=args.weights,
                                normalize=False if args.no_normalize else None)
        print(f"created feature set {fs.name} ({fs.id}) for {fs.model['name']}, size {fs.size}", file=sys.stderr)
    if model is None and args.weights:
        if not fs.model:
            raise InvalidInput(f"feature set {fs.name!r} has no model: give --model with --weights")
        model = parse_spec(fs.model, weights=args.weights)
    bar = None

    def progress(done: int, total: int, rate: float) -> None:
        nonlocal bar
        bar = bar or progress_bar("embed")  # made on the first batch: no empty bar before an error
        bar(done, total, getattr(rate, "note", None))  # on Ray: how many actors are alive

    with _stop_on_ctrl_c() as stop:
        report = embed_dataset(
            ws, ds, fs, model=model, device=args.device, batch_size=args.batch_size, recompute=args.recompute,
            progress=progress, cancel=stop, workers=args.workers, ray=args.ray, actors=args.actors,
        )
    for entity_id, name, reason in report.failures:
        print(f"{'skipped' if reason.startswith('unsupported') else 'failed'} {name} ({entity_id}): {reason}",
              file=sys.stderr)
    print(report.summary())
    if report.cancelled:
        raise SystemExit(130)
    if report.failed and not report.embedded:
        raise SystemExit(2)


@contextlib.contextmanager
def _stop_on_ctrl_c() -> Iterator[threading.Event]:
    """The first Ctrl-C asks the job to stop after its batch (work done is kept); the
    second one interrupts at once."""
    stop = threading.Event()

    def handler(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print("\nstopping after this batch (Ctrl-C again to abort)", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def _import_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", help="a .csv, .tsv, .parquet, .npy or .npz file, one vector per row")
    p.add_argument("--feature-set", "-s", required=True,
                   help="feature set name or id; created with the file's vector size when it does not exist")
    p.add_argument("--key", choices=["name", "id"], default="name", help="rows are keyed by item name or entity id")
    p.add_argument("--dataset", "-d", help="match names within this dataset")
    p.add_argument("--key-column", help="the column holding the keys (default: 'name'/'id', else the first)")
    p.add_argument("--keys", help="for .npy: a text file with one key per line, in row order")
    p.add_argument("--set-type", default="embeddings", help="for a set created here (e.g. 'profile')")
    p.add_argument("--entity-type", choices=["item", "annotation"], default="item", help="for a set created here")


@command(arguments=_import_arguments)
def import_vectors(ws, args) -> None:
    """Import precomputed vectors (CSV, Parquet, .npy, .npz) into a feature set, keyed by
    item name or id."""
    from ..io.vector_import import import_vectors as run_import, read_vectors

    try:
        fs = ws.feature_sets.resolve(args.feature_set)
    except NotFound:
        _, values = read_vectors(args.path, key=args.key, keys=args.keys, key_column=args.key_column)
        fs = ws.feature_sets.create(name=args.feature_set, size=int(values.shape[1]), set_type=args.set_type,
                                    entity_type=args.entity_type)
        print(f"created feature set {fs.name} ({fs.id}), size {fs.size}", file=sys.stderr)
    report = run_import(ws, fs, args.path, key=args.key, dataset=args.dataset, keys=args.keys,
                        key_column=args.key_column)
    for key in report.unmatched:
        print(f"not imported: no entity for key {key!r}", file=sys.stderr)
    print(report.summary())


def _models_arguments(p: argparse.ArgumentParser) -> None:
    from ..embedders import BACKENDS

    p.add_argument("--backend", choices=sorted(BACKENDS), help="list only this backend")
    p.add_argument("--contains", help="list only names containing this text (case-insensitive)")


@command(arguments=_models_arguments)
def models(ws, args) -> None:
    """List the models embed can run, with the size of their vectors."""
    from ..embedders import list_models

    for m in list_models():
        if args.backend and m.backend != args.backend:
            continue
        if args.contains and args.contains.lower() not in m.name.lower():
            continue
        print(f"{m.name}  size={m.size}  {m.backend}  {'+'.join(m.modalities)}  {m.note}")
