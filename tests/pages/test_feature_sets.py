"""Feature sets page: create (with and without a model), list with counts, delete after a confirmation."""
import numpy as np

from tests.pages.helpers import ok, texts


def test_create_a_set_without_a_model_and_see_it_listed(open_page, app_ws):
    at = ok(open_page("app_pages/feature_sets.py"))
    assert "No feature set yet" in texts(at)
    at.text_input(key="sets:name").input("customer-profiles")
    at.number_input(key="sets:size").set_value(5)
    at.text_input(key="sets:type").input("profiles")
    at.button(key="sets:create").click().run()
    ok(at)
    assert "Created feature set **customer-profiles** (size 5)" in texts(at)
    fs = app_ws.feature_sets.get(feature_set_name="customer-profiles")
    assert (fs.size, fs.set_type, fs.entity_type, fs.model) == (5, "profiles", "item", None)
    row = at.dataframe[0].value.iloc[0]
    assert (row["name"], row["size"], row["vectors"]) == ("customer-profiles", 5, 0)
    assert row["approximate index"] == "up to date"


def test_the_table_shows_the_index_building(open_page, app_ws):
    ds = app_ws.datasets.create("d")
    items = [r.item for r in ds.items.upload([(f"{i}.txt", f"n {i}".encode()) for i in range(12)])]
    fs = app_ws.feature_sets.create(name="s", size=3)
    app_ws.index_sync.stop()  # as if the worker had not reached it yet
    fs.features.create_many(np.ones((12, 3), dtype=np.float32), items)
    at = ok(open_page("app_pages/feature_sets.py"))
    assert at.dataframe[0].value.iloc[0]["approximate index"] == "building in the background: 0 of 12 vectors indexed"
    assert "Exact search answers every query meanwhile" in texts(at)
    app_ws.index_sync.start()
    assert app_ws.wait_for_index(60)
    at.run()
    assert at.dataframe[0].value.iloc[0]["approximate index"] == "up to date"


def test_choosing_a_model_fixes_the_size(open_page, app_ws):
    at = ok(open_page("app_pages/feature_sets.py"))
    at.selectbox(key="sets:model").select("all-MiniLM-L6-v2").run()
    ok(at)
    fixed = at.number_input(key="sets:size-fixed:384")
    assert fixed.value == 384 and fixed.disabled
    at.text_input(key="sets:name").input("texts").run()
    at.selectbox(key="sets:entity").select("annotation")
    at.button(key="sets:create").click().run()
    ok(at)
    fs = app_ws.feature_sets.get(feature_set_name="texts")
    assert fs.size == 384 and fs.entity_type == "annotation"
    assert fs.model["name"] == "all-MiniLM-L6-v2" and fs.model["backend"] == "sentence_transformers"



def test_the_model_list_says_what_runs_offline_and_a_model_that_cannot_run_is_said_at_once(open_page, app_ws):
    at = ok(open_page("app_pages/feature_sets.py"))
    options = at.selectbox(key="sets:model").options
    assert options[2] == "all-MiniLM-L6-v2 · runs offline"  # what runs here comes first
    assert "ViT-B-32/laion2b_s34b_b79k · needs a download" in options
    at.text_input(key="sets:name").input("photos")
    at.selectbox(key="sets:model").select("ViT-B-32/laion2b_s34b_b79k").run()
    assert not at.exception
    [error] = [e.value for e in at.error]
    assert error.startswith("cannot run ViT-B-32/laion2b_s34b_b79k") and "cannot be reached" in error
    assert "A checkpoint on this machine (file or folder)…" in texts(at)  # the way out, in the app
    assert at.button(key="sets:create").disabled
    assert app_ws.feature_sets.list() == []


def test_a_local_checkpoint_is_checked_at_once_and_linked(open_page, app_ws, tmp_path):
    from tests.store.embed_models import register_tiny_arch, save_tiny_checkpoint

    arch = register_tiny_arch(tmp_path / "configs")
    checkpoint = save_tiny_checkpoint(tmp_path / "tiny.safetensors")
    at = ok(open_page("app_pages/feature_sets.py"))
    at.selectbox(key="sets:model").select("A checkpoint on this machine (file or folder)…").run()
    at.text_input(key="sets:local-model").input("/models/nowhere.safetensors").run()
    [error] = [e.value for e in at.error]
    assert "no file or folder /models/nowhere.safetensors" in error and "sentence-transformers" not in error
    assert at.button(key="sets:create").disabled

    at.text_input(key="sets:local-model").input(str(checkpoint)).run()
    assert "choose the open_clip architecture" in at.error[0].value
    at.selectbox(key="sets:local-arch").select("RN50").run()  # the wrong architecture: said, not loaded later
    assert "cannot load the open_clip model from" in at.error[0].value
    at.selectbox(key="sets:local-arch").select(arch).run()
    ok(at)
    assert f"Loaded {arch}: vectors of size 32." in texts(at)
    assert at.number_input(key="sets:size-fixed:32").value == 32
    at.text_input(key="sets:name").input("tiny").run()
    at.button(key="sets:create").click().run()
    ok(at)
    fs = app_ws.feature_sets.get(feature_set_name="tiny")
    assert fs.size == 32 and fs.model["weights"] == str(checkpoint) and fs.model["backend"] == "open_clip"


def test_delete_asks_first_and_lists_counts(open_page, app_ws):
    ds = app_ws.datasets.create("d")
    items = [r.item for r in ds.items.upload([("a.txt", b"a"), ("b.txt", b"b")])]
    app_ws.feature_sets.create(name="keep", size=2)  # no vectors
    doomed = app_ws.feature_sets.create(name="doomed", size=3)
    doomed.features.create_many(np.ones((2, 3), np.float32), items)
    at = ok(open_page("app_pages/feature_sets.py"))
    table = at.dataframe[0].value
    assert dict(zip(table["name"], table["vectors"])) == {"keep": 0, "doomed": 2}

    at.selectbox(key="sets:delete-pick").select(doomed.id)
    at.button(key="sets:delete").click().run()
    ok(at)
    assert any("Delete **doomed** and its 2 vectors?" in w.value for w in at.warning)
    assert {fs.name for fs in app_ws.feature_sets.list()} == {"keep", "doomed"}  # nothing yet

    at.button(key="sets:delete-no").click().run()
    assert not at.warning and len(app_ws.feature_sets.list()) == 2

    at.selectbox(key="sets:delete-pick").select(doomed.id)
    at.button(key="sets:delete").click().run()
    at.button(key="sets:delete-yes").click().run()
    ok(at)
    assert "Deleted feature set **doomed**" in texts(at)
    assert [fs.name for fs in app_ws.feature_sets.list()] == ["keep"]
    assert list(at.dataframe[0].value["name"]) == ["keep"]


def _sections_on_screen(at) -> bool:
    """The table, the Import and the Delete sections are all drawn."""
    subheaders = [h.value for h in at.subheader]
    return (len(at.dataframe) == 1 and "Import precomputed vectors" in subheaders
            and "Delete a feature set" in subheaders
            and at.button(key="sets:import-go") is not None and at.selectbox(key="sets:delete-pick") is not None)


def test_a_taken_name_is_a_plain_error_that_keeps_the_page(open_page, app_ws):
    app_ws.feature_sets.create(name="taken", size=4)
    at = ok(open_page("app_pages/feature_sets.py"))
    at.text_input(key="sets:name").input("taken")
    at.button(key="sets:create").click().run()
    assert not at.exception
    assert len(at.error) == 1 and "already exists" in at.error[0].value
    # Shown under the Create button, and the rest of the page is still there.
    assert _sections_on_screen(at)
    assert list(at.dataframe[0].value["name"]) == ["taken"]


def test_a_csv_of_the_wrong_size_names_the_users_file_and_keeps_the_page(open_page, app_ws):
    ds = app_ws.datasets.create("customers")
    ds.items.upload([("ann.txt", b"ann")])
    app_ws.feature_sets.create(name="profiles", size=5)
    at = ok(open_page("app_pages/feature_sets.py"))
    csv = b"name,a,b\nann.txt,1,2\n"
    at.file_uploader(key="sets:import-file").set_value(("prices in $ and $k.csv", csv, "text/csv")).run()
    at.button(key="sets:import-go").click().run()
    assert not at.exception and len(at.error) == 1
    message = at.error[0].value
    # The user's own file, not the temporary vectors.csv; the $ escaped so it is not LaTeX.
    assert message.startswith(r"prices in \$ and \$k.csv has 2 values per row") and "vectors.csv" not in message
    assert "size 5" in message and "/tmp" not in message
    assert _sections_on_screen(at)
    assert app_ws.feature_sets.get(feature_set_name="profiles").count() == 0


def test_import_precomputed_vectors_from_a_csv(open_page, app_ws):
    ds = app_ws.datasets.create("customers")
    ds.items.upload([("ann.txt", b"ann"), ("bob.txt", b"bob")])
    fs = app_ws.feature_sets.create(name="customer-profiles", size=5)
    csv = b"name,age,income,years,purchases,value\nann.txt,35,75000,5,20,150\nbob.txt,41,52000,2,3,20\nzed.txt,1,2,3,4,5\n"
    at = ok(open_page("app_pages/feature_sets.py"))
    at.selectbox(key="sets:import-dataset").select(ds.id)
    at.file_uploader(key="sets:import-file").set_value(("profiles.csv", csv, "text/csv")).run()
    at.button(key="sets:import-go").click().run()
    assert not at.exception and not at.error
    assert "Imported 2 vectors into customer-profiles" in at.warning[0].value and "zed.txt" in at.warning[0].value
    by_name = {i.name: i.id for i in ds.items.list().all()}
    got = {f.entity_id: f.value.tolist() for f in fs.features.list().all()}
    assert got[by_name["ann.txt"]] == [35, 75000, 5, 20, 150]
    assert at.dataframe[0].value.iloc[0]["vectors"] == 2
