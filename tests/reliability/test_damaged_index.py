"""A torn or corrupted embedded Chroma folder: never a crash of the process, always found,
and rebuilt from the catalog so that exact and approximate search answer as before.

Each damaged workspace is opened and searched in a child process, so that a segfault would
fail the test instead of ending pytest. Chroma 1.5 crashes the process that loads some of
these files (``header.bin`` with garbage in it, a zeroed ``link_lists.bin``) and answers
wrongly from others: featurelab loads them in a throwaway probe process first (see
``store.index.guard``)."""
from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from store import Workspace
from tests.conftest import ROOT
from tests.forkserver import run_python

N, SIZE = 1200, 16  # past Chroma's flush threshold (1000), so the HNSW files hold the vectors
VALUES = np.random.default_rng(11).standard_normal((N, SIZE)).astype(np.float32)
QUERIES = [3, 500, 1111]

SEARCH = """
import json, sys
import numpy as np
from store import Filters, Workspace
values = np.random.default_rng(11).standard_normal((%d, %d)).astype(np.float32)
with Workspace.open(sys.argv[1]) as ws:
    fs = ws.feature_sets.get(feature_set_name="s")
    check = ws.check_index(fs.id)  # the first use opens the index: its probe reports here
    out = {"damage": ws.index_damage, "rebuilt": ws.rebuilt_at_open, "check": check}
    for approximate in (False, True):
        out[str(approximate)] = [[(i.name, i.distance) for i in ws.search(
            Filters().add_euclid(fs, values[q], k=10, approximate=approximate)).items] for q in %r]
print(json.dumps(out))
""" % (N, SIZE, QUERIES)


def _searches(path: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("FEATURELAB_CHROMA_URL", None)
    proc = run_python(SEARCH, [str(path)], env)  # a process of its own, forked from a preloaded one
    assert proc.returncode == 0, f"exit {proc.returncode} (a crash is negative): {proc.stderr[-3000:]}"
    return json.loads(proc.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def sound(tmp_path_factory):
    """A closed workspace with one set of N vectors, and its search answers."""
    path = tmp_path_factory.mktemp("sound") / "ws"
    with Workspace.open(path) as ws:
        ds = ws.datasets.create("d")
        items = [r.item for r in ds.items.upload([(f"{i:04d}.txt", f"item {i}".encode()) for i in range(N)])]
        ws.feature_sets.create(name="s", size=SIZE).features.create_many(VALUES, items)
    answers = _searches(path)
    assert answers["damage"] == {} and answers["rebuilt"] == [] and answers["check"]["ok"]
    return path, answers


def _segment(path: Path) -> Path:
    (folder,) = [p for p in (path / "chroma").iterdir() if p.is_dir()]
    return folder


def _garble(file: Path, at: float, size: int = 4096) -> None:
    with open(file, "r+b") as f:
        f.seek(int(file.stat().st_size * at))
        f.write(np.random.default_rng(1).integers(0, 256, size, dtype=np.uint8).tobytes())


def _zero(file: Path) -> None:
    file.write_bytes(bytes(file.stat().st_size))


DAMAGE = {
    # file, how. What Chroma 1.5 did with each when loaded in-process without the guard:
    "header.bin garbled": ("header.bin", lambda f: _garble(f, 0.5)),  # segfault at open
    "link_lists.bin zeroed": ("link_lists.bin", _zero),  # segfault at open
    "data_level0.bin truncated to 0": ("data_level0.bin", lambda f: os.truncate(f, 0)),  # InternalError on search
    "data_level0.bin torn in half": ("data_level0.bin", lambda f: os.truncate(f, f.stat().st_size // 2)),  # same
    "data_level0.bin garbled": ("data_level0.bin", lambda f: _garble(f, 0.5)),  # silently wrong neighbours
    "header.bin zeroed": ("header.bin", _zero),  # an empty index (the count check rebuilt it)
    "index_metadata.pickle garbled": ("index_metadata.pickle", lambda f: _garble(f, 0.0)),  # likewise
    "chroma.sqlite3 garbled header": ("../chroma.sqlite3", lambda f: _garble(f, 0.0)),  # the folder cannot be opened
    "chroma.sqlite3 torn in half": ("../chroma.sqlite3", lambda f: os.truncate(f, f.stat().st_size // 2)),  # likewise
}


def _same_answers(got: dict, want: dict) -> None:
    assert got["False"] == want["False"]  # exact: from the catalog, bit for bit the same distances
    for g, w in zip(got["True"], want["True"]):
        assert [name for name, _ in g] == [name for name, _ in w]
        assert np.allclose([d for _, d in g], [d for _, d in w], atol=1e-5)


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_index_is_found_and_rebuilt_never_a_crash(sound, tmp_path, case):
    source, want = sound
    path = tmp_path / "ws"
    shutil.copytree(source, path)
    name, damage = DAMAGE[case]
    damage((_segment(path) / name).resolve())

    got = _searches(path)

    assert got["damage"], "the damage went unnoticed"
    assert got["rebuilt"] == ["s"] and got["check"] == {"ok": True, "catalog": N, "index": N}
    _same_answers(got, want)
    assert (path / "chroma.damaged").is_dir()  # set aside, not deleted
    again = _searches(path)  # the rebuilt index is sound: no probe finds anything on the next open
    assert again["damage"] == {} and again["rebuilt"] == []
    _same_answers(again, want)


def test_unchanged_files_are_not_probed_and_changed_ones_are(sound, tmp_path, caplog):
    source, want = sound
    path = tmp_path / "ws"
    shutil.copytree(source, path, copy_function=shutil.copy2)  # keeps the files' times
    caplog.set_level(logging.INFO, logger="store.index.guard")
    with Workspace.open(path) as ws:
        assert ws.require_index() is not None and ws.index_damage == {}
    assert "probed" not in caplog.text  # the open-time cost of a sound index: one directory walk

    header = _segment(path) / "header.bin"
    os.utime(header, ns=(header.stat().st_atime_ns, header.stat().st_mtime_ns + 1_000_000))
    with Workspace.open(path) as ws:
        assert "probed" not in caplog.text  # not at the open: at the index's first use
        assert ws.require_index() is not None and ws.index_damage == {} and ws.rebuilt_at_open == []
    assert "probed the Chroma index" in caplog.text and "sound" in caplog.text
    caplog.clear()
    with Workspace.open(path) as ws:  # the probe's verdict was recorded
        ws.require_index()
    assert "probed" not in caplog.text
    _same_answers(_searches(path), want)


def test_repair_command_runs_on_a_chroma_folder_that_cannot_be_opened(sound, tmp_path, run_cli):
    source, want = sound
    path = tmp_path / "ws"
    shutil.copytree(source, path)
    _garble(path / "chroma" / "chroma.sqlite3", 0.0)
    proc = run_cli("-w", str(path), "repair", "--all")
    assert "rebuilt s: 1200 vectors" in proc.stdout
    _same_answers(_searches(path), want)
