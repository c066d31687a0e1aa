"""The README's Dataloop SDK block runs as it is, in a fresh interpreter with the real dtlpy,
against a real `python -m store serve`, connected by the file `dtlpy-env` writes."""
import os
import re
import subprocess
import sys

from tests.conftest import ROOT
from tests.server.conftest import run_cli

README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_sdk_block_runs_against_serve(server, tmp_path):
    (code,) = re.findall(r"```python dtlpy\n(.*?)```", README, flags=re.S)
    made = run_cli(server.workspace, "dtlpy-env", "--port", str(server.port), "-o", str(tmp_path / "featurelab_env.py"))
    assert made.returncode == 0, made.stderr
    env = {**os.environ, "DATALOOP_PATH": str(tmp_path / "dataloop"), "PYTHONPATH": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert "This item has 1 feature vectors" in lines
    found = [ln for ln in lines if ln.startswith("Similar item found:")]
    assert found == ["Similar item found: cat.txt", "Similar item found: dog.txt"]  # by letter counts, nearest first
    assert "[5.0, 0.0, 0.0, 1.0, 1.0, 3.0]" in lines  # cat.txt's own vector, read back by entityId
    assert "1 items within 3.0" in lines
    exported = list((tmp_path / "my-dataset").rglob("*.json"))
    assert exported and '"itemVectors"' in exported[0].read_text()
