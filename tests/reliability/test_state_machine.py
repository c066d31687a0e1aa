"""Model-based test of the store, after Chroma's own: hypothesis drives random sequences
through the public API and, after every step, the catalog, the Chroma index and a plain
Python model must agree (counts, ids, each item's features, vectors bit for bit, and exact
search equal to NumPy brute force over the model). Runs against embedded Chroma and a real
`chroma run` server; a quick profile by default, many more steps with --long."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine, initialize, invariant, precondition, rule, run_state_machine_as_test,
)

from store import Filters, Workspace
from tests.conftest import ROOT, png_bytes
from tests.forkserver import run_python

PAYLOADS = [b"alpha", b"beta", b"gamma", png_bytes(20, 10, (9, 9, 9)), png_bytes(30, 20, (200, 1, 1))]
SIZES = {"item": 3, "annotation": 2}
vector = st.lists(st.floats(-100, 100, allow_nan=False, width=32), min_size=3, max_size=3)

DUMP = """
import json, sys
from store import Workspace
ws = Workspace.open(sys.argv[1], chroma_url=sys.argv[2] or None)
out = {"items": sorted(r[0] for r in ws.catalog.all("SELECT id FROM items")),
       "features": {f"{r[0]}|{r[1]}": r[2].hex() for r in ws.catalog.all("SELECT feature_set_id, entity_id, value FROM features")}}
print(json.dumps(out))
"""


class StoreMachine(RuleBasedStateMachine):
    chroma_url: str | None = None
    searches_checked = 0  # across the run: proves the profile reached non-empty sets

    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self.path = Path(self.tmp.name) / "ws"
        self.ws = Workspace.open(self.path, chroma_url=self.chroma_url)
        self.datasets: dict[str, str] = {}  # id -> name
        self.items: dict[str, tuple[str, bytes]] = {}  # id -> (dataset id, bytes)
        self.annotations: dict[str, str] = {}  # id -> item id
        self.sets: dict[str, str] = {}  # id -> entity type
        self.features: dict[tuple[str, str], np.ndarray] = {}  # (set id, entity id) -> float32 vector
        self.reopens = 0

    def teardown(self) -> None:
        for sid in list(self.sets):  # keep the shared server clean
            self.ws.feature_sets.delete(sid)
        self.ws.close()
        self.tmp.cleanup()

    # ---- rules ---------------------------------------------------------------------
    @initialize()
    def start_with_a_dataset_and_a_set(self):
        """Most sequences should reach vectors: begin where a user would, with data to embed."""
        self.create_dataset("init")
        ds_id = next(iter(self.datasets))
        for payload in PAYLOADS[:2] + PAYLOADS[3:4]:
            item = self.ws.datasets.get(dataset_id=ds_id).items.upload_bytes(
                payload, "x.png" if payload.startswith(b"\x89PNG") else "x.txt").item
            self.items[item.id] = (ds_id, payload)
        self.create_set("item")

    @rule(name=st.text("abc", min_size=1, max_size=3))
    def create_dataset(self, name):
        if name in self.datasets.values():
            with pytest.raises(Exception, match="already exists"):
                self.ws.datasets.create(name)
            return
        self.datasets[self.ws.datasets.create(name).id] = name

    @precondition(lambda self: self.datasets)
    @rule(data=st.data())
    def delete_dataset(self, data):
        ds_id = data.draw(st.sampled_from(list(self.datasets)))
        self.ws.datasets.delete(ds_id)
        del self.datasets[ds_id]
        for item_id in [i for i, (d, _) in self.items.items() if d == ds_id]:
            self._forget_item(item_id)

    @precondition(lambda self: self.datasets)
    @rule(data=st.data(), payload=st.sampled_from(PAYLOADS), copy=st.booleans())
    def upload(self, data, payload, copy):
        ds_id = data.draw(st.sampled_from(list(self.datasets)))
        name = "x.png" if payload.startswith(b"\x89PNG") else "x.txt"
        result = self.ws.datasets.get(dataset_id=ds_id).items.upload_bytes(payload, name, copy=copy)
        existing = [i for i, (d, b) in self.items.items() if d == ds_id and b == payload]
        if existing and not copy:
            assert result.status == "duplicate" and result.item.id in existing
        else:
            assert result.status == "added" and result.item.id not in self.items
            self.items[result.item.id] = (ds_id, payload)

    def _forget_item(self, item_id):
        del self.items[item_id]
        for ann in [a for a, i in self.annotations.items() if i == item_id]:
            self._forget_entity(ann)
            del self.annotations[ann]
        self._forget_entity(item_id)

    def _forget_entity(self, entity_id):
        for key in [k for k in self.features if k[1] == entity_id]:
            del self.features[key]

    @precondition(lambda self: self.items)
    @rule(data=st.data())
    def delete_item(self, data):
        item_id = data.draw(st.sampled_from(list(self.items)))
        self.ws.get_item(item_id).delete()
        self._forget_item(item_id)

    @precondition(lambda self: any(b.startswith(b"\x89PNG") for _, b in self.items.values()))
    @rule(data=st.data(), label=st.sampled_from(["cat", "dog"]))
    def annotate(self, data, label):
        images = [i for i, (_, b) in self.items.items() if b.startswith(b"\x89PNG")]
        item = self.ws.get_item(data.draw(st.sampled_from(images)))
        self.annotations[item.annotations.create(label, (0, 0, 5, 5)).id] = item.id

    @precondition(lambda self: self.annotations)
    @rule(data=st.data())
    def delete_annotation(self, data):
        ann_id = data.draw(st.sampled_from(list(self.annotations)))
        self.ws.get_annotation(ann_id).delete()
        del self.annotations[ann_id]
        self._forget_entity(ann_id)

    @precondition(lambda self: len(self.sets) < 3)
    @rule(entity_type=st.sampled_from(["item", "annotation"]))
    def create_set(self, entity_type):
        fs = self.ws.feature_sets.create(name=f"s{len(self.sets)}-{entity_type}-{os.urandom(3).hex()}",
                                         size=SIZES[entity_type], entity_type=entity_type)
        self.sets[fs.id] = entity_type

    @precondition(lambda self: self.sets)
    @rule(data=st.data())
    def delete_set(self, data):
        sid = data.draw(st.sampled_from(list(self.sets)))
        self.ws.feature_sets.delete(sid)
        del self.sets[sid]
        for key in [k for k in self.features if k[0] == sid]:
            del self.features[key]

    @precondition(lambda self: self.sets and (self.items or self.annotations))
    @rule(data=st.data())
    def bulk_create(self, data):
        sid = data.draw(st.sampled_from(list(self.sets)))
        pool = list(self.items if self.sets[sid] == "item" else self.annotations)
        if not pool:
            return
        entities = data.draw(st.lists(st.sampled_from(pool), min_size=1, max_size=6, unique=True))
        size = SIZES[self.sets[sid]]
        values = np.array(data.draw(st.lists(st.lists(st.floats(-100, 100, allow_nan=False, width=32),
                                                      min_size=size, max_size=size),
                                             min_size=len(entities), max_size=len(entities))), dtype=np.float32)
        fs = self.ws.feature_sets.get(feature_set_id=sid)
        if data.draw(st.booleans()):  # sometimes a bad vector in the batch: nothing may be written
            bad = values.copy()
            bad[0, 0] = np.nan
            with pytest.raises(Exception, match="NaN"):
                fs.features.create_many(bad, entities)
        fs.features.create_many(values, entities)
        for e, v in zip(entities, values):
            self.features[(sid, e)] = v

    @precondition(lambda self: self.features)
    @rule(data=st.data())
    def delete_feature(self, data):
        sid, eid = data.draw(st.sampled_from(list(self.features)))
        fid = self.ws.catalog.scalar("SELECT id FROM features WHERE feature_set_id=? AND entity_id=?", (sid, eid))
        self.ws.get_feature(fid).delete()
        del self.features[(sid, eid)]

    @precondition(lambda self: self.reopens < 2)
    @rule()
    def reopen_in_fresh_process(self):
        self.ws.close()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        done = run_python(DUMP, [str(self.path), self.chroma_url or ""], env)  # forked from a preloaded one
        assert done.returncode == 0, done.stderr[-3000:]
        out = done.stdout
        dumped = json.loads(out)
        assert dumped["items"] == sorted(self.items)
        assert dumped["features"] == {f"{s}|{e}": v.tobytes().hex() for (s, e), v in self.features.items()}
        self.ws = Workspace.open(self.path, chroma_url=self.chroma_url)
        self.reopens += 1

    # ---- invariants ----------------------------------------------------------------
    @invariant()
    def catalog_matches_model(self):
        ws = self.ws
        assert {d.id for d in ws.datasets.list()} == set(self.datasets)
        assert {r[0] for r in ws.catalog.all("SELECT id FROM items")} == set(self.items)
        assert {r[0] for r in ws.catalog.all("SELECT id FROM annotations")} == set(self.annotations)
        assert {s.id for s in ws.feature_sets.list()} == set(self.sets)
        for item_id in self.items:
            got = {(f.feature_set_id, f.entity_id): f.value.tobytes() for f in ws.get_item(item_id).features.list().all()}
            assert got == {k: v.tobytes() for k, v in self.features.items() if k[1] == item_id}

    @invariant()
    def index_and_search_match_model(self):
        for sid in self.sets:
            model = {e: v for (s, e), v in self.features.items() if s == sid}
            assert self.ws.wait_for_index(60)  # the index catches up in the background
            assert self.ws.index.ids(sid) == set(model)
            if not model:
                continue
            fs = self.ws.feature_sets.get(feature_set_id=sid)
            ids = sorted(model)
            X = np.stack([model[e] for e in ids]).astype(np.float64)
            q = X[len(ids) // 2].astype(np.float32) + np.float32(0.5)
            d = np.sqrt(((X - q.astype(np.float64)) ** 2).sum(1))
            order = np.lexsort((np.array(ids), d))
            res = self.ws.search(Filters(resource="feature_vectors").add_euclid(fs, q, k=len(ids)))
            assert [f.entity_id for f in res.items] == [ids[i] for i in order]
            assert [f.distance for f in res.items] == d[order].tolist()
            StoreMachine.searches_checked += 1


def _run(chroma_url, long: bool):
    StoreMachine.chroma_url = chroma_url
    StoreMachine.searches_checked = 0
    run_state_machine_as_test(StoreMachine, settings=settings(
        max_examples=60 if long else 6, stateful_step_count=40 if long else 25, deadline=None,
        derandomize=not long, database=None, suppress_health_check=list(HealthCheck)))
    assert StoreMachine.searches_checked >= 10


def test_store_matches_model_embedded(request, monkeypatch):
    monkeypatch.delenv("FEATURELAB_CHROMA_URL", raising=False)
    _run(None, request.config.getoption("--long"))


def test_store_matches_model_server(request, chroma_server, monkeypatch):
    monkeypatch.delenv("FEATURELAB_CHROMA_URL", raising=False)
    _run(chroma_server, request.config.getoption("--long"))
