"""``python -m store duplicates`` and ``python -m store outliers``: curation from the command line.

    python -m store duplicates -s clip --threshold 0.1                 # list the groups
    python -m store duplicates -s clip --threshold 0.1 --hide --keep largest
    python -m store duplicates --undo ACTION_ID
    python -m store outliers -s clip -k 5 --top 20
"""
from __future__ import annotations

import argparse
import json
import sys

from .registry import command
from ..errors import InvalidInput


def add_dataset_scope(p: argparse.ArgumentParser, what: str) -> None:
    """The --dataset option of the analysis commands (clusters and compare use it too)."""
    p.add_argument("--dataset", "-d", metavar="NAME",
                   help=f"{what} only this dataset's vectors (default: every dataset the set spans)")


def dataset_scope(ws, name: str | None) -> str | None:
    """The id of the dataset named by --dataset, or None for every dataset."""
    return ws.datasets.get(dataset_name=name).id if name else None


def add_estimate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--estimate", action="store_true",
                   help="say how long it would take here (calibrated on this machine) and stop")


def say_how_long(ws, args, task: str, **options) -> bool:
    """Before a long analysis: its estimated time on stderr (on stdout, and stop, with
    --estimate). True when the caller should stop."""
    from ..analysis.estimate import ESTIMATE_ABOVE, estimate

    fs = ws.feature_sets.resolve(args.feature_set)
    if not args.estimate and len(ws.matrix(fs)) < ESTIMATE_ABOVE:
        return False
    est = estimate(ws, fs, task, include_hidden=getattr(args, "include_hidden", True),
                   dataset_id=dataset_scope(ws, args.dataset), **options)
    if args.estimate:
        print(json.dumps(est.to_json()) if getattr(args, "json", False) else est.message)
        return True
    print(est.message + ("" if est.fits() else "; --estimate says this without starting"), file=sys.stderr,
          flush=True)
    return False


def _names(ws, item_ids: list[str]) -> dict[str, str]:
    return {i: item.filename for i, item in ws.items_by_ids([i for i in item_ids if i]).items()}


def _duplicate_arguments(p: argparse.ArgumentParser) -> None:
    from ..analysis.duplicates import KEEP_RULES

    p.add_argument("--feature-set", "-s", help="name or id of the feature set")
    p.add_argument("--threshold", "-t", type=float,
                   help="largest distance (true Euclidean) at which two vectors count as duplicates")
    p.add_argument("--include-hidden", action="store_true", help="compare hidden items too")
    add_dataset_scope(p, "compare")
    p.add_argument("--approximate", action="store_true",
                   help="candidate pairs from the ANN index, then exact distances: n log n, may miss pairs")
    p.add_argument("--neighbours", type=int, default=10, help="candidates per vector with --approximate (default 10)")
    add_estimate(p)
    p.add_argument("--hide", action="store_true", help="keep one per group and hide the rest (undoable)")
    p.add_argument("--keep", choices=[r for r in KEEP_RULES if r != "manual"], default="first",
                   help="which one to keep with --hide: first uploaded (default) or largest image")
    p.add_argument("--undo", metavar="ACTION_ID", help="un-hide what an earlier --hide hid")
    p.add_argument("--actions", action="store_true", help="list the hide actions that can be undone")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")


@command(arguments=_duplicate_arguments)
def duplicates(ws, args) -> None:
    """Near-duplicate groups of a feature set: vectors within --threshold of each other
    (connected groups, exact), largest first; --hide keeps one per group (--keep first|largest)
    and hides the rest, undoable with --undo ACTION_ID. Nothing is ever deleted."""
    from ..analysis.duplicates import duplicate_groups, hide_actions, hide_duplicates, undo

    if args.undo:
        result = undo(ws, args.undo)
        if args.json:
            print(json.dumps({"actionId": result.action_id, "unhidden": result.unhidden, "skipped": result.skipped}))
        else:
            print(f"un-hid {result.unhidden} item(s) of action {result.action_id}"
                  + (f" ({result.skipped} left as they were)" if result.skipped else ""))
        return
    if args.actions:
        actions = hide_actions(ws, args.feature_set)
        if args.json:
            print(json.dumps([{"id": a.id, "featureSetId": a.feature_set_id, "items": len(a.item_ids),
                               "createdAt": a.created_at, **a.detail} for a in actions], indent=2))
        for a in [] if args.json else actions:
            print(f"{a.id}  {a.detail.get('featureSet') or a.detail.get('kind') or a.feature_set_id}  hid {len(a.item_ids)} item(s)  "
                  f"rule={a.detail.get('rule')}  threshold={a.detail.get('threshold')}")
        return
    if not args.feature_set or args.threshold is None:
        raise InvalidInput("give --feature-set and --threshold (or --undo ACTION_ID, or --actions)")
    if say_how_long(ws, args, "duplicates", approximate=args.approximate):
        return
    found = duplicate_groups(ws, args.feature_set, args.threshold, include_hidden=args.include_hidden,
                             dataset_id=dataset_scope(ws, args.dataset), approximate=args.approximate,
                             neighbours=args.neighbours)
    names = _names(ws, [i for g in found.groups for i in g.item_ids])
    hidden = hide_duplicates(ws, found, args.keep) if args.hide and found.groups else None
    if args.json:
        doc = found.to_json()
        for g, out in zip(found.groups, doc["groups"]):
            out["names"] = [names.get(i) for i in g.item_ids]
        doc["hide"] = hidden.to_json() if hidden else None
        print(json.dumps(doc, indent=2))
        return
    print(f"{len(found.groups)} group(s) of near-duplicates in {found.feature_set_name} at distance <= "
          f"{found.threshold:g} ({found.entities} vectors compared; {found.redundant} beyond one per group)")
    for n, g in enumerate(found.groups, 1):
        print(f"group {n}: {g.size} {found.entity_type}s, closest pair at {g.min_distance:.6g}")
        for e, i, d in zip(g.entity_ids, g.item_ids, g.distances):
            label = names.get(i, i) if found.entity_type == "item" else f"{e} on {names.get(i, i)}"
            print(f"  {label}  (nearest at {d:.6g})")
    if hidden is not None:
        if hidden.action_id:
            print(f"hid {hidden.hidden} item(s), kept one per group ({args.keep})"
                  + (f"; {hidden.already_hidden} were hidden already" if hidden.already_hidden else "")
                  + f". Undo: python -m store duplicates --undo {hidden.action_id}")
        else:
            print("nothing new to hide: the others were hidden already", file=sys.stderr)


def _outlier_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--feature-set", "-s", required=True, help="name or id of the feature set")
    p.add_argument("--k", "-k", type=int, default=5, help="rank by the distance to the k-th nearest neighbour (default 5)")
    p.add_argument("--top", type=int, default=20, help="how many to print (default 20)")
    p.add_argument("--include-hidden", action="store_true", help="rank hidden items too")
    add_dataset_scope(p, "rank")
    add_estimate(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of text")


@command(arguments=_outlier_arguments)
def outliers(ws, args) -> None:
    """Outliers of a feature set: vectors ranked by their exact distance to their k-th nearest
    neighbour, farthest first."""
    from ..analysis.duplicates import outliers as rank

    if say_how_long(ws, args, "outliers"):
        return
    found = rank(ws, args.feature_set, args.k, top=args.top, include_hidden=args.include_hidden,
                 dataset_id=dataset_scope(ws, args.dataset))
    names = _names(ws, [o.item_id for o in found])
    if args.json:
        print(json.dumps([{**o.to_json(), "name": names.get(o.item_id)} for o in found], indent=2))
        return
    for o in found:
        print(f"{o.rank:>4}  {o.score:.6g}  {names.get(o.item_id, o.item_id)}  {o.entity_id}")
