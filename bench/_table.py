"""The benchmarks' one table printer: a Markdown table, as bench/README.md keeps them."""
from __future__ import annotations

from typing import Iterable, Sequence


def print_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """One Markdown row per entry of ``rows`` under ``header`` (cells shown with ``str``)."""
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |", flush=True)
