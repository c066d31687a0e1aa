"""Export and import page: a dataset with or without chosen feature sets, as a zip to
download or into a folder; import it back, vectors bit for bit."""
import io
import json
import zipfile

import numpy as np

from tests.pages.helpers import ok, png, texts


def _fill(ws):
    ds = ws.datasets.create("pets")
    items = [r.item for r in ds.items.upload([("cat.png", png((1, 2, 3))), ("dog.txt", b"woof")], dir="/a")]
    wanted = ws.feature_sets.create(name="wanted", size=3)
    other = ws.feature_sets.create(name="other", size=2)
    values = np.array([[0.1, 1 / 3, 1e-8], [np.pi, -2.5, 7.0]], np.float32)
    wanted.features.create_many(values, items)
    other.features.create_many(np.ones((2, 2), np.float32), items)
    return ds, wanted, other, values


def test_export_a_zip_with_chosen_sets_and_import_it_back(open_page, app_ws):
    ds, wanted, other, values = _fill(app_ws)
    at = ok(open_page("app_pages/export.py"))
    at.multiselect(key="export:sets").set_value([wanted.id])
    at.button(key="export:zip").click().run()
    ok(at)
    assert at.download_button(key="export:download").label == "Download the zip"
    data = at.session_state["export:ready"]["data"]
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        header = json.loads(z.read("dataset.json"))
        assert [s["name"] for s in header["featureSets"]] == ["wanted"]  # only the chosen set
        record = json.loads(z.read("json/a/cat.png.json"))
        assert z.read("items/a/cat.png") == ds.items.get(filepath="/a/cat.png").download()
    assert [v["featureSetId"] for v in record["itemVectors"]] == [wanted.id]

    at.file_uploader(key="import:zip").set_value(("pets.zip", data, "application/zip")).run()
    at.text_input(key="import:name").input("pets-copy")
    at.button(key="import:go").click().run()
    ok(at)
    assert "Imported **pets-copy** (2 items)" in texts(at)
    copy = app_ws.datasets.get(dataset_name="pets-copy")
    by_name = {i.name: i for i in copy.items.list().all()}
    got = {f.entity_id: f.value for f in wanted.features.list().all()}
    assert got[by_name["cat.png"].id].tobytes() == values[0].tobytes()  # bit for bit
    assert got[by_name["dog.txt"].id].tobytes() == values[1].tobytes()


def test_export_to_a_folder_without_vectors_and_import_from_the_folder(open_page, app_ws, tmp_path):
    _fill(app_ws)
    target = tmp_path / "out" / "pets"
    at = ok(open_page("app_pages/export.py"))
    at.checkbox(key="export:vectors").uncheck()
    at.radio(key="export:where").set_value("A folder on this machine").run()
    at.text_input(key="export:folder").input(str(target))
    at.button(key="export:to-folder").click().run()
    ok(at)
    assert f"to `{target}`" in texts(at)
    assert json.loads((target / "dataset.json").read_text())["featureSets"] == []
    assert json.loads((target / "json/a/dog.txt.json").read_text())["itemVectors"] == []

    at.radio(key="import:from").set_value("A folder on this machine").run()
    at.text_input(key="import:folder").input(str(target))
    at.text_input(key="import:name").input("pets-2")
    at.button(key="import:go").click().run()
    ok(at)
    assert app_ws.datasets.get(dataset_name="pets-2").items.count() == 2

    # The same folder again is refused with a message that says what to do.
    at.button(key="export:to-folder").click().run()
    assert not at.exception and "already exists" in at.error[0].value


def test_a_bad_archive_is_a_plain_error(open_page, app_ws):
    at = ok(open_page("app_pages/export.py"))
    assert "No dataset yet" in texts(at)
    evil = io.BytesIO()
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("dataset.json", json.dumps({"format": "featurelab-export/1", "dataset": {"name": "x"}}))
        z.writestr("../escape.txt", b"nope")
    at.file_uploader(key="import:zip").set_value(("evil.zip", evil.getvalue(), "application/zip")).run()
    at.button(key="import:go").click().run()
    assert not at.exception
    assert "escape" in at.error[0].value and "refusing to import" in at.error[0].value
    assert app_ws.datasets.list() == []
    at.file_uploader(key="import:zip").set_value(("junk.zip", b"not a zip", "application/zip")).run()
    at.button(key="import:go").click().run()
    assert not at.exception and "neither an export folder nor a zip" in at.error[0].value


def test_import_errors_name_the_dropped_file_and_keep_the_export_section(open_page, app_ws, tmp_path):
    ds, *_ = _fill(app_ws)
    out = ds.export(tmp_path / "pets-export.zip")
    at = ok(open_page("app_pages/export.py"))
    at.file_uploader(key="import:zip").set_value(("my $5 export.zip", b"not a zip", "application/zip")).run()
    at.button(key="import:go").click().run()
    assert not at.exception and len(at.error) == 1
    message = at.error[0].value
    # The dropped file's own name (its $ escaped, not LaTeX), not the temporary copy's path.
    assert message.startswith(r"my \$5 export.zip is neither an export folder nor a zip file")
    assert "featurelab-import-" not in message and "/tmp" not in message
    assert at.button(key="export:zip") is not None and at.selectbox(key="export:dataset").value == ds.id

    at.file_uploader(key="import:zip").set_value(("pets-export.zip", out.read_bytes(), "application/zip")).run()
    at.button(key="import:go").click().run()
    message = at.error[0].value
    assert "a dataset named 'pets' already exists; import it under another name (the name of the new dataset" in message
    at.text_input(key="import:name").input("pets-2")
    at.button(key="import:go").click().run()
    ok(at)
    assert app_ws.datasets.get(dataset_name="pets-2").items.count() == 2
