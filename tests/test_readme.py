"""The README's examples run as written: the Python block and every command-line line."""
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.forkserver import run_store

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def _env(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FEATURELAB_HOME": str(tmp_path / "workspace")}
    env.pop("FEATURELAB_CHROMA_URL", None)
    return env


def test_python_example_runs(tmp_path):
    (code,) = _blocks("python")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_env(tmp_path), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "This item has 1 feature vectors" in out
    assert "Similar item found: cat.txt at distance 0.0" in out
    assert "notes 3" in out  # the import brought all three items back
    assert (tmp_path / "exports" / "notes.zip").exists()


def test_command_line_examples_run(tmp_path):
    (tmp_path / "tests").symlink_to(ROOT / "tests")
    lines = [ln for block in _blocks("bash") for ln in block.splitlines() if ln.startswith("python -m store")]
    assert len(lines) >= 8
    outputs = []
    for line in lines:
        args = line.split()[3:]
        proc = run_store(args, _env(tmp_path), tmp_path)  # forked from a preloaded interpreter
        assert proc.returncode == 0, f"{line}\n{proc.stderr}"
        outputs.append(proc.stdout)
    assert "created dataset pets" in outputs[0]
    assert "2 added" in outputs[1]
    assert (tmp_path / "exports" / "pets.zip").exists()
    assert "imported pets-copy (2 items)" in "\n".join(outputs)
    assert (tmp_path / "exports" / "help-map.parquet").exists()
    import pandas as pd

    coords = pd.read_parquet(tmp_path / "exports" / "help-map.parquet")
    assert len(coords) > 70 and {"x", "y", "name"} <= set(coords.columns)
