"""``python -m store serve`` (a Dataloop-compatible REST API over the workspace, for the
unmodified ``dtlpy`` SDK) and ``python -m store dtlpy-env`` (the snippet that connects it)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .registry import command

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8777
ALIAS = "featurelab"


def _address(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to bind (default {DEFAULT_HOST}: this machine only; anyone with the token "
                             "who can reach another address can read and change the workspace)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")


def _env_arguments(parser: argparse.ArgumentParser) -> None:
    _address(parser)
    parser.add_argument("-o", "--output", help="write the snippet to this file (default: print it)")


def server_url(host: str, port: int) -> str:
    """The URL a client on this machine uses (a wildcard bind is reached on loopback)."""
    shown = DEFAULT_HOST if host in ("0.0.0.0", "::", "") else host
    return f"http://{f'[{shown}]' if ':' in shown else shown}:{port}"


def dtlpy_snippet(url: str, token: str, project_id: str) -> str:
    """Python that points the SDK at the server: one environment, its token, the project."""
    return (
        "import dtlpy as dl\n\n"
        f"dl.add_environment(environment={url!r}, alias={ALIAS!r}, token={token!r},\n"
        f"                   gate_url={url!r}, url={url!r})\n"
        f"dl.setenv({ALIAS!r})\n"
        f"project = dl.projects.get(project_id={project_id!r})\n"
    )


def _snippet_for(ws, args) -> str:
    from ..server import load_or_mint_token

    return dtlpy_snippet(server_url(args.host, args.port), load_or_mint_token(ws.path), ws.id)


@command(arguments=_address)
def serve(ws, args) -> None:
    """Serve the workspace as a Dataloop-compatible REST API for the dtlpy SDK (Ctrl-C stops)."""
    import uvicorn

    from ..server import create_app, load_or_mint_token

    token = load_or_mint_token(ws.path)
    print(f"featurelab serves {ws.path.resolve()} on {server_url(args.host, args.port)}", flush=True)
    if args.host not in (DEFAULT_HOST, "localhost", "::1"):
        print(f"warning: bound to {args.host}: anyone who can reach it and has the token can change the workspace",
              file=sys.stderr, flush=True)
    print("Connect the Dataloop SDK with:\n\n" + _snippet_for(ws, args), flush=True)
    uvicorn.run(create_app(ws, token), host=args.host, port=args.port, log_level="warning")


@command(arguments=_env_arguments)
def dtlpy_env(ws, args) -> None:
    """Print (or write with -o) the Python that connects the dtlpy SDK to `serve`."""
    text = _snippet_for(ws, args)
    if args.output:
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        out.chmod(0o600)  # it holds the token
        print(f"wrote {out}")
    else:
        print(text, end="")
