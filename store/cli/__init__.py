"""``python -m store`` (or the ``featurelab`` console script): the command line over the
same API as the app.

Every command takes ``--workspace`` (default ``$FEATURELAB_HOME`` or ./workspace). Errors
print one line and exit with status 2; long work shows a tqdm bar.

The command modules below register their commands when imported; their import order is
the order ``--help`` lists the commands in.
"""
from __future__ import annotations

import argparse
import sys

from ..errors import FeaturelabError
from . import core, project, embed, sample, curate, collections, analyze, serve  # noqa: F401  (registers commands)
from .registry import COMMANDS, Command, command

__all__ = ["COMMANDS", "Command", "build_parser", "command", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m store", description="featurelab: feature vectors, locally.")
    parser.add_argument("--workspace", "-w", help="workspace folder (default: $FEATURELAB_HOME or ./workspace)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for cmd in COMMANDS.values():
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.description)
        if cmd.arguments is not None:
            cmd.arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; the exit status: 0, 2 on a ``FeaturelabError``, 130 on Ctrl-C."""
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
