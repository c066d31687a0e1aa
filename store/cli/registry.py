"""The sub-command registry and what the command modules share: the ``command``
decorator, the ``Command`` record it makes, and helpers for arguments and output.

A command module decorates its functions with ``@command(arguments=...)`` and is imported
by name in ``store/cli/__init__.py``; no other module registers commands."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from ..errors import InvalidInput

if TYPE_CHECKING:
    from ..workspace import Workspace

Run = Callable[["Workspace", argparse.Namespace], None]
Arguments = Callable[[argparse.ArgumentParser], None]


@dataclass(frozen=True)
class Command:
    """A sub-command: its name, what it runs and the options it adds to its parser."""

    name: str
    run: Run
    arguments: Arguments | None = None

    @property
    def description(self) -> str:
        return self.run.__doc__ or ""

    @property
    def help(self) -> str:
        return self.description.splitlines()[0]

    def __call__(self, ws: "Workspace", args: argparse.Namespace) -> None:
        self.run(ws, args)


# Name -> command, in registration order (the order `--help` lists them).
COMMANDS: dict[str, Command] = {}


def command(fn: Run | None = None, *, arguments: Arguments | None = None) -> Any:
    """Register ``fn`` as a sub-command named after it (``import_`` -> ``import``,
    ``import_vectors`` -> ``import-vectors``); ``arguments`` adds its options. Returns ``fn``."""
    def register(f: Run) -> Run:
        name = f.__name__.rstrip("_").replace("_", "-")
        COMMANDS[name] = Command(name, f, arguments)
        return f

    return register(fn) if fn is not None else register


def progress_bar(desc: str) -> Callable[..., None]:
    """A tqdm bar on stderr, as a ``progress(done, total[, note])`` callback that closes at the end."""
    from tqdm import tqdm

    bar = tqdm(desc=desc, unit="file", file=sys.stderr, mininterval=0.5)

    def update(done: int, total: int, note: str | None = None) -> None:
        bar.total = total
        bar.n = done
        if note:
            bar.set_postfix_str(note, refresh=False)
        bar.refresh()
        if done >= total:
            bar.close()

    return update


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def load_json_arg(text: str) -> Any:
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


def load_vector(text: str) -> list[float]:
    """``--vector``: '0.1,0.2,...' (or spaces), a JSON list, or a .npy file."""
    path = Path(text)
    if path.suffix == ".npy" and path.is_file():
        arr = np.load(path, allow_pickle=False)
        return np.asarray(arr, dtype=np.float64).ravel().tolist()
    from ..search import parse_vector_text

    try:
        return parse_vector_text(text)
    except InvalidInput as exc:  # the same reading as the app's vector box, said for the flag
        raise InvalidInput(f"--vector: {exc} (or give a .npy file)") from None
