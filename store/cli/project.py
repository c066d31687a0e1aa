"""``python -m store project``: a feature set's map (UMAP or PCA) written to Parquet or CSV."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .registry import command
from ..errors import InvalidInput


def _seed(text: str) -> int | None:
    if text.lower() == "none":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a seed is a whole number or 'none', got {text!r}") from None


def _arguments(p: argparse.ArgumentParser) -> None:
    from ..analysis.projection import METRICS

    p.add_argument("--feature-set", "-s", required=True, help="name or id of the feature set")
    p.add_argument("--output", "-o", required=True, help="a .parquet or .csv file to write")
    p.add_argument("--method", choices=["umap", "pca"], default="umap")
    p.add_argument("--dims", type=int, choices=[2, 3], default=2)
    p.add_argument("--neighbors", type=int, default=15, help="UMAP n_neighbors (default 15)")
    p.add_argument("--min-dist", type=float, default=0.1, help="UMAP min_dist (default 0.1)")
    p.add_argument("--metric", choices=list(METRICS), default="euclidean")
    p.add_argument("--seed", type=_seed, default=42, help="random seed, or 'none' for a faster parallel layout")
    p.add_argument("--metadata", action="append", default=[], metavar="FIELD",
                   help="item metadata field to add as a column, e.g. user.split (repeatable)")


def _progress_bar():
    from tqdm import tqdm

    from ..analysis.projection import STAGE_LABELS

    bar = tqdm(total=100, desc="project", unit="%", disable=None, file=sys.stderr,
               bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}]")

    def update(stage: str, fraction: float) -> None:
        bar.set_description_str(STAGE_LABELS.get(stage, stage), refresh=False)
        bar.n = round(fraction * 100)
        bar.refresh()
        if fraction >= 1.0:
            bar.close()

    return update


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _writable(table):
    """Parquet wants one type per column: mixed or nested metadata values become text."""
    for column in table.columns[table.dtypes == object]:  # noqa: E721 - pandas: a mask over the columns
        values = [v for v in table[column] if not _missing(v)]
        if len({type(v) for v in values}) > 1 or any(isinstance(v, (dict, list)) for v in values):
            table[column] = [None if _missing(v) else json.dumps(v) if isinstance(v, (dict, list)) else str(v)
                             for v in table[column]]
    return table


@command(arguments=_arguments)
def project(ws, args) -> None:
    """Project a feature set to 2D or 3D (UMAP, or PCA for a quick look) and write one row per
    vector: entity_id, x, y (z), and the item's name, filename, dataset, dir, kind, hidden,
    label and any --metadata fields. Cached per set version: a rerun is instant."""
    from ..analysis.projection import map_frame, project as run_projection

    output = Path(args.output)
    if output.suffix.lower() not in (".parquet", ".csv"):
        raise InvalidInput(f"--output must end in .parquet or .csv, got {output.name!r}")
    if not output.parent.is_dir():
        raise InvalidInput(f"folder {output.parent} does not exist; create it first")
    fs = ws.feature_sets.resolve(args.feature_set)
    proj = run_projection(ws, fs, method=args.method, dims=args.dims, n_neighbors=args.neighbors,
                          min_dist=args.min_dist, metric=args.metric, seed=args.seed, progress=_progress_bar())
    frame = _writable(map_frame(ws, proj, metadata_fields=args.metadata))
    if output.suffix.lower() == ".csv":
        frame.to_csv(output, index=False)
    else:
        frame.to_parquet(output, index=False)
    source = "from cache" if proj.from_cache else f"in {proj.details.get('seconds', 0):.1f} s"
    print(f"{len(frame)} points of {fs.name} ({proj.params['method']}, {proj.params['dims']}D) {source} -> {output}")
