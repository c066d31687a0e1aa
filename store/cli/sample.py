"""``python -m store sample``: fill a demo dataset from data shipped with installed packages."""
from __future__ import annotations

import argparse

from ..io.samples import DATASET, load_sample
from .registry import command, progress_bar


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", default=DATASET, help=f"dataset to fill (default {DATASET})")
    parser.add_argument("--digits-per-class", type=int, default=40)
    parser.add_argument("--no-text", action="store_true", help="skip embedding the help topics")
    parser.add_argument("--clip", default="auto",
                        help="CLIP model for the photos; 'auto' (default) only when its weights are here, 'none' to skip")
    parser.add_argument("--device", help="cpu, cuda, cuda:N (default: a GPU when there is one)")


@command(arguments=_arguments)
def sample(ws, args) -> None:
    """Fill a demo dataset from data shipped with installed packages (offline)."""
    bar = progress_bar("sample")
    report = load_sample(
        ws, name=args.name, digits_per_class=args.digits_per_class, text=not args.no_text,
        clip=None if args.clip == "none" else args.clip, device=args.device,
        progress=lambda done, total, note=None: bar(done, total),
    )
    print(report.summary().replace("**", ""))
