"""Upload page: many files at once into a new or existing dataset and a folder; a result per
file; thumbnails of what arrived."""
from tests.pages.helpers import ok, png


def _results(at):
    table = at.dataframe[0].value
    return {row["file"]: (row["status"], row["message"]) for _, row in table.iterrows()}


def test_drop_many_files_into_a_new_dataset_and_folder(open_page, app_ws):
    at = ok(open_page("app_pages/upload.py"))
    assert at.selectbox(key="upload:dataset").value == "+ New dataset…"  # an empty workspace starts a dataset
    at.text_input(key="upload:dataset:new").input("pets")
    at.text_input(key="upload:folder").input("/animals")
    red = png((220, 20, 20))
    at.file_uploader[0].set_value([
        ("red.png", red, "image/png"),
        ("note.txt", b"a cat on a mat", "text/plain"),
        ("broken.jpg", b"\xff\xd8\xff\xe0 not really a jpeg", "image/jpeg"),
        ("copy-of-red.png", red, "image/png"),
        ("blue.png", png((20, 20, 220)), "image/png"),
    ]).run()
    ok(at)
    at.button(key="upload:go").click().run()
    ok(at)
    results = _results(at)
    assert results["red.png"][0] == "added" and results["note.txt"][0] == "added"
    assert results["blue.png"][0] == "added"
    assert results["copy-of-red.png"] == ("duplicate", "same content as /animals/red.png; kept that item")
    status, why = results["broken.jpg"]
    assert status == "rejected" and "broken.jpg" in why and "image" in why
    assert any("3 added, 1 duplicate, 1 rejected" in w.value for w in at.warning)
    # Thumbnails of what arrived: the two images, and the text as a snippet.
    captions = [c for img in at.image for c in img.captions]
    assert sorted(captions) == ["/animals/blue.png", "/animals/red.png"]
    assert any("a cat on a mat" in t.value for t in at.text)

    ds = app_ws.datasets.get(dataset_name="pets")
    assert sorted(i.filename for i in ds.items.list().all()) == ["/animals/blue.png", "/animals/note.txt", "/animals/red.png"]
    assert ds.items.get(filepath="/animals/red.png").download() == red
    # The uploader is empty again, ready for the next drop into the new dataset.
    assert not at.file_uploader[0].value
    assert at.selectbox(key="upload:dataset").value == ds.id


def test_upload_into_an_existing_dataset_keeps_sub_folders_and_never_escapes(open_page, app_ws):
    ds = app_ws.datasets.create("docs")
    at = ok(open_page("app_pages/upload.py"))
    at.selectbox(key="upload:dataset").select(ds.id)
    at.text_input(key="upload:folder").input("/in")
    at.file_uploader[0].set_value([
        ("letters/a.txt", b"alpha", "text/plain"),
        ("../../etc/passwd", b"root:x:0:0", "text/plain"),
        ("b.txt", b"bravo", "text/plain"),
    ]).run()
    at.button(key="upload:go").click().run()
    results = _results(at)
    assert not at.exception
    assert results["a.txt"][0] == "added" and results["b.txt"][0] == "added"
    assert results["../../etc/passwd"][0] == "rejected" and "'..'" in results["../../etc/passwd"][1]
    assert sorted(i.filename for i in ds.items.list().all()) == ["/in/b.txt", "/in/letters/a.txt"]


def test_the_limit_is_the_configured_one(open_page):
    at = ok(open_page("app_pages/upload.py"))
    import streamlit as st

    limit = st.get_option("server.maxUploadSize")
    assert any(f"Up to {limit} MB per file" in c.value for c in at.caption)
    assert not at.file_uploader[0].disabled


def test_uploads_are_stored_never_run_or_unpickled(open_page, app_ws, tmp_path):
    import pickle

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    code = f"open({str(marker)!r}, 'w').write('x')\n".encode()
    at = ok(open_page("app_pages/upload.py"))
    at.text_input(key="upload:dataset:new").input("untrusted")
    at.file_uploader[0].set_value([("evil.pkl", pickle.dumps(Payload()), "application/octet-stream"),
                                   ("evil.py", code, "text/x-python")]).run()
    at.button(key="upload:go").click().run()
    ok(at)
    items = {i.name: i for i in app_ws.datasets.get(dataset_name="untrusted").items.list().all()}
    assert (items["evil.pkl"].kind, items["evil.py"].kind) == ("other", "text")
    assert items["evil.py"].download() == code
    # Shown in the gallery, then exported: still only bytes, never run.
    at.switch_page("app_pages/export.py").run()
    at.selectbox(key="export:dataset").select(items["evil.py"].dataset_id)
    at.button(key="export:zip").click().run()
    ok(at)
    assert not marker.exists()


def test_an_upload_whose_every_file_is_rejected_creates_no_dataset(open_page, app_ws):
    at = ok(open_page("app_pages/upload.py"))
    at.text_input(key="upload:dataset:new").input("broken-only")
    at.file_uploader[0].set_value([("broken.jpg", b"\xff\xd8\xff\xe0 not a jpeg", "image/jpeg"),
                                   ("../../x.txt", b"x", "text/plain")]).run()
    at.button(key="upload:go").click().run()
    assert not at.exception and not at.error
    assert app_ws.datasets.list() == []
    assert any("Every file was rejected (2), so no dataset **broken-only** was created" in w.value for w in at.warning)
    assert {s for s, _ in _results(at).values()} == {"rejected"}
    # Still a new dataset to name, with the typed name, ready for a better drop.
    assert at.selectbox(key="upload:dataset").value == "+ New dataset…"
    assert at.text_input(key="upload:dataset:new").value == "broken-only"

    # One good file among bad ones: the dataset is made and kept.
    at.file_uploader[0].set_value([("broken.jpg", b"\xff\xd8\xff\xe0 not a jpeg", "image/jpeg"),
                                   ("ok.txt", b"fine", "text/plain")]).run()
    at.button(key="upload:go").click().run()
    assert [d.name for d in app_ws.datasets.list()] == ["broken-only"]


def test_a_picker_keeps_its_choice_across_pages(open_page, app_ws):
    first, second = app_ws.datasets.create("first"), app_ws.datasets.create("second")
    at = ok(open_page("app_pages/upload.py"))
    at.selectbox(key="upload:dataset").select(second.id).run()
    at.switch_page("app_pages/feature_sets.py").run()  # a page without this picker: Streamlit drops its state
    assert "upload:dataset" not in at.session_state
    at.switch_page("app_pages/upload.py").run()
    ok(at)
    assert at.selectbox(key="upload:dataset").value == second.id
    # A dataset deleted meanwhile is not restored: the picker falls back to the first.
    at.switch_page("app_pages/feature_sets.py").run()
    second.delete()
    at.switch_page("app_pages/upload.py").run()
    assert at.selectbox(key="upload:dataset").value == first.id
