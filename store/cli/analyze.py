"""``python -m store clusters`` (named clusters saved as metadata) and ``python -m store
compare`` (how far two feature sets' neighbour lists agree)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .curate import add_dataset_scope, add_estimate, dataset_scope, say_how_long
from .registry import command
from ..errors import InvalidInput


def _cluster_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--feature-set", "-s", required=True, help="name or id of the feature set")
    p.add_argument("--method", choices=["kmeans", "hdbscan"], default="kmeans")
    p.add_argument("--k", "-k", type=int, default=8, help="number of clusters for k-means (default 8)")
    p.add_argument("--min-size", type=int, default=5, help="smallest cluster for hdbscan (default 5)")
    p.add_argument("--seed", type=int, default=0, help="k-means seed (default 0)")
    p.add_argument("--vocabulary", metavar="FILE",
                   help="words to name CLIP clusters by, one per line ('#' comments); default: a built-in list")
    p.add_argument("--template", default=None, help="prompt for each word, with {} for it (default 'a photo of a {}')")
    p.add_argument("--label-field", metavar="FIELD", help="item metadata field to name clusters by, e.g. user.class")
    p.add_argument("--key", help="save under metadata.clusters.KEY (default: the set's name made safe)")
    p.add_argument("--no-save", action="store_true", help="print the clusters without writing metadata")
    add_dataset_scope(p, "cluster")
    add_estimate(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def _read_vocabulary(path: str) -> list[str]:
    from ..analysis.clusters import parse_vocabulary

    try:
        words = parse_vocabulary(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read the vocabulary file {path}: {exc}") from exc
    if not words:
        raise InvalidInput(f"the vocabulary file {path} holds no words; put one word per line")
    return words


def _names_of(ws, entity_type: str, entity_ids: list[str]) -> dict[str, str]:
    """entity id -> the file name of its item (an annotation's: its item's, with its label)."""
    from ..analysis.tables import annotation_rows

    if entity_type == "annotation":
        rows = annotation_rows(ws, entity_ids)
        items = ws.items_by_ids(list({r[0] for r in rows.values()}))
        return {e: f"{items[r[0]].filename}[{r[1]}]" for e, r in rows.items() if r[0] in items}
    return {e: item.filename for e, item in ws.items_by_ids(entity_ids).items()}


@command(arguments=_cluster_arguments)
def clusters(ws, args) -> None:
    """Cluster a feature set (k-means with --k, or hdbscan with --min-size), name each
    cluster (nearest vocabulary prompts for a CLIP set, most common labels, central items)
    and save it as metadata.clusters.KEY = {id, name} on each item, for filters."""
    from ..analysis.clusters import PROMPT_TEMPLATE, cluster_feature_set

    if say_how_long(ws, args, args.method, k=args.k, min_size=args.min_size):
        return
    result = cluster_feature_set(
        ws, args.feature_set, method=args.method, k=args.k, min_size=args.min_size, seed=args.seed,
        key=args.key, vocabulary=_read_vocabulary(args.vocabulary) if args.vocabulary else None,
        template=args.template or PROMPT_TEMPLATE, label_field=args.label_field, save=not args.no_save,
        dataset_id=dataset_scope(ws, args.dataset),
    )
    central = [e for c in result.clusters for e in c.central[:3]]
    names = _names_of(ws, result.entity_type, central)
    if args.json:
        doc = result.to_json()
        for c in doc["clusters"]:
            c["centralNames"] = [names.get(e) for e in c["central"]]
        print(json.dumps(doc, indent=2, default=str))
    else:
        for warning in result.details.get("warnings", []):
            print(f"warning: {warning}", file=sys.stderr)
        print(f"{'id':>4}  {'size':>6}  {'name':<20}  labels / prompts / central items")
        for c in result.clusters:
            hints = [f"{v} ({n})" for v, n in c.labels[:2]] + [f"~{w} {s:.2f}" for w, s in c.prompts[:2]]
            hints += [names.get(e, e) for e in c.central[:3]]
            print(f"{c.id:>4}  {c.size:>6}  {c.name[:20]:<20}  {'; '.join(hints)}")
    where = "annotation" if result.entity_type == "annotation" else "item"
    saved = f"saved as {where} metadata.clusters.{result.key}" if not args.no_save else "not saved (--no-save)"
    print(f"{len(result.clusters)} clusters of {len(result.entity_ids)} vectors of {result.feature_set_name} "
          f"({result.method}) in {result.details.get('seconds', 0):.1f} s; {saved}", file=sys.stderr)


def _compare_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--a", required=True, metavar="SET", help="first feature set (name or id)")
    p.add_argument("--b", required=True, metavar="SET", help="second feature set (name or id)")
    p.add_argument("--k", "-k", type=int, default=10, help="neighbours per item (default 10)")
    p.add_argument("--label-field", metavar="FIELD",
                   help="item metadata field holding a label (default: the annotation label)")
    p.add_argument("--top", type=int, default=10, help="how many most-disagreeing items to list (default 10)")
    add_dataset_scope(p, "compare")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


@command(arguments=_compare_arguments)
def compare(ws, args) -> None:
    """Compare two feature sets over the items both hold: the overlap of each item's exact
    top-k neighbours in the two (mean and histogram), the items they disagree on most, and
    label agreement at k where items carry a label."""
    from ..analysis.compare import compare_sets

    if args.top < 0:
        raise InvalidInput(f"--top must be 0 or more, got {args.top}")
    result = compare_sets(ws, args.a, args.b, k=args.k, label_field=args.label_field,
                          dataset_id=dataset_scope(ws, args.dataset))
    doc = result.to_json(top=args.top)
    listed = {e for row in doc["mostDisagreeing"] for e in [row["entityId"], *row["neighboursA"], *row["neighboursB"]]}
    names = _names_of(ws, result.entity_type, sorted(listed))
    if args.json:
        for row in doc["mostDisagreeing"]:
            row["name"] = names.get(row["entityId"])
        print(json.dumps(doc, indent=2, default=str))
        return
    print(f"{result.a_name} vs {result.b_name}: {len(result.entity_ids)} items in both "
          f"({result.only_a} only in {result.a_name}, {result.only_b} only in {result.b_name}), k = {result.k}")
    print(f"mean overlap of the top-{result.k} neighbours: {result.mean_overlap:.4f}")
    print("overlap histogram: " + "  ".join(f"{i}/{result.k}: {n}" for i, n in enumerate(doc["histogram"])))
    agreement = doc["labelAgreement"]
    if agreement:
        source = f"metadata {result.label_field}" if result.label_field else "annotation label"
        print(f"label agreement at {result.k} ({source}, {agreement['labelled']} labelled items): "
              f"{result.a_name} {agreement['a']:.4f}, {result.b_name} {agreement['b']:.4f}")
    else:
        print("label agreement: no item carries a label (give --label-field, or annotate the items)")
    if doc["mostDisagreeing"]:
        print("most disagreeing items:")
        for row in doc["mostDisagreeing"]:
            first = lambda ids: ", ".join(names.get(e, e) for e in ids[:3])  # noqa: E731
            print(f"  {names.get(row['entityId'], row['entityId'])}  overlap {row['overlap']:.2f}  "
                  f"a: {first(row['neighboursA'])}  b: {first(row['neighboursB'])}")
