"""Curation at scale (issue 14, item 6): near-duplicates from the ANN index's candidates
(measured exactly, so never a wrong link), and analyses that say before they start how long
they will take here (estimates from n and a calibration run)."""
import json

import numpy as np
import pytest

import store.analysis.duplicates as cu
import store.analysis.estimate as est
from store import InvalidInput
from tests.store.test_curation import _clustered, _fill, brute_groups


def _planted(n=200, dim=16, seed=4):
    """Far-apart rows with planted near-copies: groups of 2 to 5 within 0.05."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim)).astype(np.float32) * 10
    at = 0
    for size in (2, 3, 5, 2, 4, 2, 3):
        for m in range(1, size):
            x[at + m] = x[at] + rng.normal(scale=0.005, size=dim).astype(np.float32)
        at += size + 7
    return x


def test_approximate_groups_equal_exact_when_the_index_finds_the_pairs(ws_embedded):
    x = _planted()
    fs, items = _fill(ws_embedded, x, name="planted")
    exact = cu.duplicate_groups(ws_embedded, fs, 0.05)
    approx = cu.duplicate_groups(ws_embedded, fs, 0.05, approximate=True)
    assert [g.entity_ids for g in approx.groups] == [g.entity_ids for g in exact.groups]
    assert [g.distances for g in approx.groups] == [g.distances for g in exact.groups]
    want = brute_groups(x, 0.05)
    assert sorted(sorted(items[r].id for r in g) for g in want) == sorted(g.entity_ids for g in approx.groups)


def test_approximate_groups_never_link_beyond_the_threshold(ws_embedded):
    """With one candidate each, pairs go missing, but whatever is linked is within the
    threshold (measured exactly) and every approximate group lies inside an exact one."""
    x = _clustered(seed=1, n=40)
    fs, _ = _fill(ws_embedded, x)
    exact = {e: i for i, g in enumerate(cu.duplicate_groups(ws_embedded, fs, 0.1).groups) for e in g.entity_ids}
    approx = cu.duplicate_groups(ws_embedded, fs, 0.1, approximate=True, neighbours=1)
    for g in approx.groups:
        assert len({exact[e] for e in g.entity_ids}) == 1
        assert max(g.distances) <= 0.1
    with pytest.raises(InvalidInput, match="neighbours must be"):
        cu.duplicate_groups(ws_embedded, fs, 0.1, approximate=True, neighbours=0)


def test_estimates_grow_with_n_as_their_cost_model(ws_embedded, monkeypatch):
    monkeypatch.setattr(est, "CALIBRATION_ROWS", 128)
    est._CALIBRATED.clear()
    rng = np.random.default_rng(0)
    small, _ = _fill(ws_embedded, rng.normal(size=(150, 8)).astype(np.float32), name="small")
    large, _ = _fill(ws_embedded, rng.normal(size=(300, 8)).astype(np.float32), name="large")
    a = est.estimate(ws_embedded, small, "outliers")
    b = est.estimate(ws_embedded, large, "outliers")
    assert a.seconds > 0 and b.seconds == pytest.approx(4 * a.seconds)  # n^2, one calibration
    assert est.estimate(ws_embedded, large, "duplicates").seconds == pytest.approx(b.seconds)
    km = est.estimate(ws_embedded, large, "kmeans", k=4, max_iter=300)
    assert km.typical < km.seconds and km.n == 300 and km.d == 8
    ann = est.estimate(ws_embedded, large, "duplicates", approximate=True)
    assert ann.seconds > 0 and "ANN" in ann.basis
    assert "hdbscan of 300 vectors x 8: about" in est.estimate(ws_embedded, large, "hdbscan").message
    assert b.message.startswith("outliers of 300 vectors x 8: about ")
    with pytest.raises(InvalidInput, match="task must be one of"):
        est.estimate(ws_embedded, large, "sorting")


def test_estimate_says_when_it_does_not_fit():
    far = est.Estimate("outliers", 1_000_000, 512, 9000.0, "n^2 scan")
    assert not far.fits() and "about 2 h 30 min" in far.message
    assert est.Estimate("outliers", 10, 2, 3.0, "x").fits()
    assert est.duration(42) == "42 s" and est.duration(600) == "10 min"


def test_cli_says_how_long_before_starting(run_cli, tmp_path):
    from store import Workspace

    with Workspace.open(tmp_path / "cli-ws") as ws:
        fs, _ = _fill(ws, _planted(n=100))
    out = run_cli("outliers", "-s", fs.name, "--estimate").stdout
    assert out.startswith("outliers of 100 vectors x 16: about ") and "here (n^2 scan" in out
    doc = json.loads(run_cli("duplicates", "-s", fs.name, "-t", "0.05", "--estimate", "--approximate", "--json").stdout)
    assert doc["task"] == "duplicates" and doc["n"] == 100 and doc["fits"] is True


def test_approximate_mode_refuses_a_large_backlog_and_says_what_to_do(ws_embedded):
    """A bulk load still indexing in the background is not indexed inline by near-duplicates
    (nor by their estimate, which would time an empty index); a small backlog is."""
    ws = ws_embedded
    ws.index_sync.stop()
    fs, _ = _fill(ws, _planted(n=100), name="behind")
    ws.index_sync.inline_backlog = 10
    said = r"the index of 'behind-set' is building in the background: 0 of 100 vectors indexed; wait until"
    with pytest.raises(InvalidInput, match=said):
        cu.duplicate_groups(ws, fs, 0.05, approximate=True)
    with pytest.raises(InvalidInput, match=said):
        est.estimate(ws, fs, "duplicates", approximate=True)
    assert ws.index.count(fs.id) == 0  # refused before any insert
    ws.index_sync.inline_backlog = 100
    assert est.estimate(ws, fs, "duplicates", approximate=True).seconds > 0
    assert ws.index_state(fs.id).caught_up
