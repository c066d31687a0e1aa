"""`python -m store`: each command's help, a whole flow, errors that exit non-zero, and the
`featurelab` console script being the same program."""
import ast
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from store import Workspace
from store.cli import COMMANDS, build_parser

ROOT = Path(__file__).resolve().parents[2]


def test_every_command_has_help(run_cli):
    build_parser()  # imports command plugins
    for name in COMMANDS:
        out = run_cli(name, "--help").stdout
        assert "usage: python -m store" in out and name in out


def test_commands_are_registered_by_the_cli_package_alone():
    assert {cmd.run.__module__.rpartition(".")[0] for cmd in COMMANDS.values()} == {"store.cli"}
    assert [name for name in COMMANDS][:9] == ["info", "datasets", "upload", "items", "sets", "search", "export",
                                               "import", "repair"]


def test_flow_upload_sets_search_export_import(run_cli, tmp_path):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    for i in range(4):
        (folder / ("sub" if i % 2 else "") / f"{i}.txt").write_text(f"text {i}")
    up = run_cli("upload", "--dataset", "d", "--dir", "/x", str(folder))
    assert "4 added" in up.stdout and "upload" in up.stderr  # tqdm's bar goes to stderr
    assert "1 duplicate" in run_cli("upload", "--dataset", "d", str(folder / "0.txt")).stdout
    listed = run_cli("items", "--dataset", "d").stdout
    assert "/x/sub/1.txt" in listed and "/x/0.txt" in listed
    run_cli("sets", "--create", "v", "--size", "2")
    with Workspace.open(tmp_path / "cli-ws") as ws:
        items = list(ws.datasets.get(dataset_name="d").items.list().all())
        ws.feature_sets.get(feature_set_name="v").features.create_many(
            np.array([[i, 0] for i in range(4)], dtype=np.float32), items)
        first = items[0]
    hits = [json.loads(ln) for ln in run_cli("search", "-s", "v", "--vector", "0,0", "-k", "2").stdout.splitlines()]
    assert [h["distance"] for h in hits] == [0.0, 1.0] and hits[0]["id"] == first.id
    within = run_cli("search", "-s", "v", "--vector", "[0, 0]", "--max-distance", "2", "-k", "10").stdout
    assert len(within.splitlines()) == 3
    flt = tmp_path / "f.json"
    flt.write_text(json.dumps({"filter": {"name": "3.txt"}}))
    filtered = run_cli("items", "--dataset", "d", "--filter", "@" + str(flt)).stdout.splitlines()
    assert len(filtered) == 1 and "/x/sub/3.txt" in filtered[0]
    run_cli("export", "--dataset", "d", "-o", str(tmp_path / "e.zip"), "--vectors")
    assert "imported d2 (4 items)" in run_cli("import", str(tmp_path / "e.zip"), "--name", "d2").stdout
    info = json.loads(run_cli("info").stdout)
    assert {d["name"]: d["items"] for d in info["datasets"]} == {"d": 4, "d2": 4}
    assert info["feature_sets"][0]["vectors"] == 8
    assert "ok (8 vectors)" in run_cli("repair").stdout


@pytest.mark.parametrize(
    "args,needle",
    [
        (["items", "--dataset", "nope"], "no dataset 'nope'"),
        (["sets", "--create", "s", "--size", "0"], "size must be"),
        (["search", "-s", "missing", "--vector", "1,2"], "no feature set 'missing'"),
        (["search", "--filter", "{bad json"], "not valid JSON"),
        (["search", "--filter", '{"filter": {"x": {"$what": 1}}}'], "unknown field 'x'"),
        (["import", "/no/such/export.zip"], "no such export"),
        (["search"], "give --filter"),
    ],
)
def test_errors_are_one_line_and_exit_2(run_cli, args, needle):
    proc = run_cli(*args, ok=False)
    assert proc.returncode == 2
    assert needle in proc.stderr and "Traceback" not in proc.stderr


def _main_of_python_m_store() -> str:
    """``module:function`` that store/__main__.py runs, read from its ``from .X import Y``."""
    tree = ast.parse((ROOT / "store" / "__main__.py").read_text(encoding="utf-8"))
    (found,) = [node for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 1]
    (alias,) = found.names
    return f"store.{found.module}:{alias.name}"


def test_the_featurelab_script_runs_what_python_m_store_runs(run_cli, tmp_path):
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert scripts["featurelab"] == _main_of_python_m_store() == "store.cli:main"
    script = Path(sys.executable).parent / "featurelab"
    if not script.is_file():
        pytest.skip(f"the featurelab script is not installed next to {sys.executable}; "
                    "`pip install -e .` puts it there")
    env = {**os.environ, "FEATURELAB_HOME": str(tmp_path / "cli-ws")}
    env.pop("FEATURELAB_CHROMA_URL", None)
    for args, status in ((["--help"], 0), (["items", "--dataset", "nope"], 2)):
        ours = subprocess.run([str(script), *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
        reference = run_cli(*args, ok=False, fresh=True)  # a whole interpreter, as the script's
        assert (ours.returncode, ours.stdout, ours.stderr) == (status, reference.stdout, reference.stderr)
