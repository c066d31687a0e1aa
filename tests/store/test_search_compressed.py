"""The int8 first pass of exact search (``store.search.compressed``): its bound holds on every
row, and the answer through it equals float64 brute force on adversarial near-ties,
duplicates, zero vectors, large and tiny norms, filtered rows, either order."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from store import Filters
from store.search import compressed as int8
from store.search import exact
from store.search.metric import METRICS


def _matrix(values: np.ndarray) -> exact.VectorMatrix:
    ids = np.array([f"{i:06d}" for i in range(len(values))])
    return exact.VectorMatrix(ids, ids.copy(), np.ascontiguousarray(values, dtype=np.float32), 1)


def _brute(values: np.ndarray, query: np.ndarray, rows, k: int, descending: bool):
    """float64 brute force, ties by entity id (= row order here)."""
    rows = np.arange(len(values)) if rows is None else np.asarray(rows)
    d = exact.exact_distances(values[rows], query)
    order = np.lexsort((rows, -d if descending else d))[:k]
    return rows[order], d[order]


def _true_keys(copy: int8.Int8Copy, values: np.ndarray, query: np.ndarray) -> np.ndarray:
    """|x - q|^2 - |q - mu|^2 in float64 (the key the bounds enclose)."""
    q = query.astype(np.float64) - copy.mean
    y = values.astype(np.float64) - copy.mean
    return ((y - q) ** 2).sum(1) - (q * q).sum()


def near_ties(rng, n: int, d: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Rows on a sphere around the query, radii a few float32 ulps apart, with duplicates and
    zero vectors among them: the order is decided far below the int8 error."""
    q = rng.standard_normal(d).astype(np.float32) * scale
    dirs = rng.standard_normal((n, d))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    radius = scale * (1 + rng.integers(0, 4, n) * 2.0**-20)
    x = (q.astype(np.float64) + dirs * radius[:, None]).astype(np.float32)
    x[rng.integers(0, n, n // 8)] = x[0]  # duplicates
    x[rng.integers(0, n, n // 16)] = 0.0  # zero vectors
    return x, q


CASES = st.tuples(
    st.integers(0, 2**32 - 1),  # seed
    st.sampled_from([1.0, 1e-20, 1e18, 3e30]),  # norms from tiny to near float32's range
    st.sampled_from(["ties", "gauss", "clusters", "constant", "line"]),
    st.sampled_from([3, 17, 64]),  # d
    st.booleans(),  # descending
    st.booleans(),  # filtered rows
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(CASES)
def test_compressed_search_equals_brute_force(case):
    seed, scale, kind, d, descending, filtered = case
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 400))
    if kind == "ties":
        x, q = near_ties(rng, n, d, scale)
    else:
        base = rng.standard_normal((n, d))
        if kind == "clusters":
            base = rng.standard_normal((4, d))[rng.integers(0, 4, n)] * 5 + base * 0.01
        elif kind == "constant":
            base[:] = base[0]
        elif kind == "line":  # collinear rows on integer steps: the groups' triangle bounds hold with equality
            base = rng.integers(-20, 20, n)[:, None] * base[0]
        x = (base * scale).astype(np.float32)
        q = x[int(rng.integers(n))] if rng.random() < 0.5 else (rng.standard_normal(d) * scale).astype(np.float32)
    rows = np.sort(rng.choice(n, max(1, n // 2), replace=False)) if filtered else None
    k = int(rng.integers(1, 30))
    m = _matrix(x)
    copy = m.int8_copy.get()
    lo, hi = int8.key_bounds(copy, q)
    truth = _true_keys(copy, x, q)
    assert (lo <= truth).all() and (truth <= hi).all()
    hits = exact.search(m, q, rows, None, descending, k, compressed=True)
    want_rows, want_d = _brute(x, q, rows, k, descending)
    assert np.array_equal(hits.rows, want_rows)
    assert np.array_equal(hits.distances, want_d)
    assert hits.total == (n if rows is None else len(rows))


def test_bounds_follow_the_rows_asked_and_either_order():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((500, 32)).astype(np.float32)
    copy = int8.compress(x)
    q = rng.standard_normal(32).astype(np.float32)
    rows = np.array([7, 3, 499, 3])
    lo, hi = int8.key_bounds(copy, q, rows)
    all_lo, all_hi = int8.key_bounds(copy, q)
    assert np.array_equal(lo, all_lo[rows]) and np.array_equal(hi, all_hi[rows])
    most = np.sort(np.random.default_rng(4).choice(500, 450, replace=False))  # the scan-and-gather path
    lo, hi = int8.key_bounds(copy, q, most)
    assert np.array_equal(lo, all_lo[most]) and np.array_equal(hi, all_hi[most])
    m = _matrix(x)
    want_rows, want_d = _brute(x, q, most, 20, False)
    hits = exact.search(m, q, most, None, False, 20, compressed=True)
    assert np.array_equal(hits.rows, want_rows) and np.array_equal(hits.distances, want_d)
    d_lo, d_hi = int8.key_bounds(copy, q, descending=True)
    assert np.allclose(d_lo, -all_hi) and np.allclose(d_hi, -all_lo)


def test_the_first_pass_rules_out_most_rows_of_clustered_data():
    """Not only right but useful: at 20k x 128 clustered rows, few are re-measured."""
    rng = np.random.default_rng(5)
    centres = rng.standard_normal((20, 128)) * 3
    x = (centres[rng.integers(0, 20, 20_000)] + rng.standard_normal((20_000, 128))).astype(np.float32)
    copy = int8.compress(x)
    q = x[11] + 0.1
    lo, hi = int8.key_bounds(copy, q)
    chosen = int8.candidates(lo, hi, 100)
    assert 100 <= len(chosen) < len(x) // 8  # the search keeps this pass (see exact._compressed_top)
    want, _ = _brute(x, q, None, 100, False)
    assert set(want) <= set(chosen)


def test_copy_is_a_pure_function_of_the_matrix():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((300, 128)).astype(np.float32)
    a, b = int8.compress(x), int8.compress(x.copy())
    for field in ("codes", "mean", "scale", "sq", "code_norm", "resid"):
        assert np.array_equal(getattr(a, field), getattr(b, field))
    for field in ("centroids", "members", "starts", "radius", "reach"):
        assert np.array_equal(getattr(a.groups, field), getattr(b.groups, field))
    assert a.codes.dtype == np.int8 and a.nbytes < x.nbytes // 2


def _clustered(n: int, d: int, clusters: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d)) * 3
    return (centres[rng.integers(0, clusters, n)] + rng.standard_normal((n, d))).astype(np.float32)


def test_groups_partition_the_rows_with_exact_radii():
    x = _clustered(5000, 32, 12, seed=6)
    copy = int8.compress(x)
    g = copy.groups
    assert len(g.centroids) == round(np.sqrt(5000)) and np.array_equal(np.sort(g.members), np.arange(5000))
    for c in range(len(g.centroids)):
        rows = g.members[g.starts[c] : g.starts[c + 1]]
        assert np.array_equal(rows, np.sort(rows))
        radius = np.sqrt((((x[rows].astype(np.float64) - copy.mean) - g.centroids[c]) ** 2).sum(1))
        assert np.allclose(g.radius[g.starts[c] : g.starts[c + 1]], radius, rtol=1e-12, atol=0)
        assert g.reach[c] == (g.radius[g.starts[c] : g.starts[c + 1]].max() if len(rows) else 0.0)


@pytest.mark.parametrize("share", [None, 0.5, 0.1])
def test_the_nearest_read_only_the_groups_in_reach_and_equal_brute_force(share):
    """Clustered rows: a query near one cluster scans a small part of the set, filter or not,
    and the answer is brute force's (the groups change what is read, not what is found)."""
    x = _clustered(20_000, 64, 10, seed=8)  # 2,000 rows a cluster: k = 100 inside one, even at 10%
    m = _matrix(x)
    copy = m.int8_copy.get()
    rng = np.random.default_rng(1)
    rows = None if share is None else np.sort(rng.choice(len(x), int(len(x) * share), replace=False))
    for i in rng.integers(0, len(x), 6):
        q = x[i] + np.float32(0.05)
        scanned, lo, hi = int8.reachable_bounds(copy, q, 100, rows)
        assert len(scanned) < len(x) // 5
        if rows is not None:
            assert np.isin(scanned, rows).all()
        hits = exact.search(m, q, rows, None, False, 100, compressed=True)
        want_rows, want_d = _brute(x, q, rows, 100, False)
        assert np.array_equal(hits.rows, want_rows) and np.array_equal(hits.distances, want_d)
        assert hits.total == (len(x) if rows is None else len(rows))


def test_a_query_in_reach_of_most_groups_scans_the_whole_copy():
    x = np.random.default_rng(12).standard_normal((4000, 64)).astype(np.float32)
    copy = int8.compress(x)
    q = np.zeros(64, dtype=np.float32)  # the centre of every group's spread
    assert int8.reachable_bounds(copy, q, 100) is None
    hits = exact.search(_matrix(x), q, None, None, False, 100, compressed=True)
    assert np.array_equal(hits.rows, _brute(x, q, None, 100, False)[0])


def test_metrics_the_product_supports_are_covered():
    assert METRICS == ("euclidean",)  # another metric needs its own bound here


def test_a_workspace_search_takes_the_int8_pass_once_built(ws, monkeypatch):
    """Through the engine: a large-enough set (here the threshold lowered) first answers in
    float32 while its copy builds in the background, then through the copy; both equal brute
    force, filter and all."""
    monkeypatch.setattr(int8, "MIN_CELLS", 0)
    ds = ws.datasets.create("d")
    rng = np.random.default_rng(2)
    values = rng.standard_normal((200, 8)).astype(np.float32)
    values[50:60] = values[50]  # ties by id
    items = [r.item for r in ds.items.upload([(f"{i:03d}.txt", f"{i}".encode()) for i in range(200)])]
    hidden = {it.id for it in items[::3]}
    for it in items[::3]:
        it.update(hidden=True)
    fs = ws.feature_sets.create(name="s", size=8)
    fs.features.create_many(values, items)
    m = ws.matrix(fs)
    q = values[50] + 1e-3
    for hidden_filter in (False, True):
        f = Filters()
        if hidden_filter:
            f.add(field="hidden", values=False)
        f.add_euclid(fs, q, k=25)
        first = [(i.id, i.distance) for i in ds.items.list(f).items]
        m.int8_copy.join(30)
        assert m.int8_copy.get(wait=False) is not None
        second = [(i.id, i.distance) for i in ds.items.list(f).items]
        keep = [i for i, it in enumerate(items) if not (hidden_filter and it.id in hidden)]
        d = exact.exact_distances(values[keep], q)
        ids = np.array([items[i].id for i in keep])
        order = np.lexsort((ids, d))[:25]
        want = [(ids[i], d[i]) for i in order]
        assert first == second == want


@pytest.mark.parametrize("descending", [False, True])
def test_a_batch_of_queries_answers_as_each_alone(descending):
    """``search_many``: one matrix product per block for many queries, each answer the same
    as a single search (and brute force's), across several blocks and with duplicate rows."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((3000, 24)).astype(np.float32)
    x[100:140] = x[100]
    m = _matrix(x)
    qs = np.concatenate([x[[100, 5, 2999]], rng.standard_normal((5, 24)).astype(np.float32)])
    many = exact.search_many(m, qs, 30, descending=descending, block=512)
    for q, h in zip(qs, many):
        want_rows, want_d = _brute(x, q, None, 30, descending)
        assert np.array_equal(h.rows, want_rows) and np.array_equal(h.distances, want_d) and h.total == 3000
