"""Two processes on one workspace: one owns embedded Chroma, the other writes the catalog
only; nothing is lost, no search is stale, and the index is never written twice."""
import os
import subprocess
import sys
import textwrap


from store import Filters, Workspace
from tests.conftest import ROOT

WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from store import Workspace
    ws = Workspace.open(sys.argv[1])
    assert ws.index is None, "the second process must not open the owner's Chroma folder"
    ds = ws.datasets.get_or_create(sys.argv[2])
    items = [r.item for r in ds.items.upload([(f"{sys.argv[2]}-{i}.txt", f"{sys.argv[2]} {i}".encode()) for i in range(40)])]
    fs = ws.feature_sets.get(feature_set_name="shared")
    rng = np.random.default_rng(int(sys.argv[3]))
    for start in range(0, 40, 10):  # several transactions, interleaving with the other writer
        fs.features.create_many(rng.standard_normal((10, 8)).astype(np.float32), items[start:start + 10])
    print(ws.info()["chroma"])
    """
)


def _spawn(path, *args):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("FEATURELAB_CHROMA_URL", None)
    return subprocess.Popen([sys.executable, "-c", WRITER, str(path), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_other_processes_write_catalog_and_owner_catches_up(tmp_path, monkeypatch):
    monkeypatch.delenv("FEATURELAB_CHROMA_URL", raising=False)
    path = tmp_path / "ws"
    with Workspace.open(path) as owner:
        assert owner.index is not None
        fs = owner.feature_sets.create(name="shared", size=8)
        procs = [_spawn(path, "a", "1"), _spawn(path, "b", "2")]  # two writers at once
        for p in procs:
            out, err = p.communicate(timeout=240)
            assert p.returncode == 0, err
            assert f"pid {os.getpid()}" in out  # it names the process that owns the index
        assert fs.count() == 80 and owner.catalog.scalar("SELECT COUNT(*) FROM items") == 80
        # Exact search reads the catalog: never stale.
        m = owner.matrix(fs)
        probe = m.values[17]
        exact = owner.search(Filters().add_euclid(fs, probe, k=5))
        assert exact.items[0].id == m.entity_ids[17] and exact.items[0].distance == 0.0
        # Approximate search first brings the owner's index up to date.
        approx = owner.search(Filters().add_euclid(fs, probe, k=5, approximate=True))
        assert approx.items[0].id == m.entity_ids[17]
        assert owner.check_index(fs.id) == {"ok": True, "catalog": 80, "index": 80}
        assert owner.wait_for_index(60)  # the index catches up in the background
        stored = owner.index.get_vectors(fs.id, list(m.entity_ids))
        assert all(stored[e].tobytes() == m.values[i].tobytes() for i, e in enumerate(m.entity_ids))


def test_repair_refused_while_another_process_owns_the_index(tmp_path, monkeypatch, run_cli):
    monkeypatch.delenv("FEATURELAB_CHROMA_URL", raising=False)
    with Workspace.open(tmp_path / "cli-ws") as owner:
        owner.feature_sets.create(name="s", size=2)
        proc = run_cli("repair", ok=False)
        assert proc.returncode == 2
        assert f"held by pid {os.getpid()}" in proc.stderr and "FEATURELAB_CHROMA_URL" in proc.stderr
        # Deleting a set from the other process leaves its collection to the owner, who drops it.
        assert run_cli("sets", "--delete", "s").returncode == 0
        owner.sync_index()
        assert [c.name for c in owner.index.client.list_collections() if owner.id in c.name] == []
    # With the owner gone, the command line owns the index itself.
    assert run_cli("repair").returncode == 0
