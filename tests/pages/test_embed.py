"""Embed page: the device, a job with progress, cancel, and a summary that lists what was
left out. Real models: the packaged all-MiniLM-L6-v2."""
import re

from store.embedders.job import create_feature_set
from tests.pages.helpers import ok, png, texts, wait_for_job

NOTES = [("cat.txt", b"a cat sleeps on the sofa"), ("bread.txt", b"how to bake a loaf of bread"),
         ("market.txt", b"stock prices fell sharply today")]


def test_embed_texts_lists_what_was_skipped_and_resumes(open_page, app_ws):
    ds = app_ws.datasets.create("notes")
    ds.items.upload(NOTES + [("photo.png", png()), ("blob.bin", b"\x00\x01\x02")])
    fs = create_feature_set(app_ws, "notes-minilm", "all-MiniLM-L6-v2")
    at = ok(open_page("app_pages/embed.py"))
    assert "Runs on: **CPU**" in texts(at) or "Runs on: **GPU" in texts(at)
    assert "Model: **all-MiniLM-L6-v2**" in texts(at)
    at.button(key="embed:go").click().run()
    at = ok(wait_for_job(at, "embed"))
    summary = at.warning[0].value
    assert summary.startswith("Done: 3 embedded, 0 already had a vector, 2 skipped, 0 failed")
    skipped = at.dataframe[0].value
    assert sorted(skipped["item"]) == ["/blob.bin", "/photo.png"]
    assert all("unsupported" in r for r in skipped["reason"])
    assert at.get("progress")[0].value == 100
    assert fs.count() == 3

    at.button(key="embed:go").click().run()
    at = ok(wait_for_job(at, "embed"))
    assert at.warning[0].value.startswith("Done: 0 embedded, 3 already had a vector")


def test_a_set_without_a_model_gets_one_chosen(open_page, app_ws):
    ds = app_ws.datasets.create("notes")
    ds.items.upload(NOTES)
    fs = app_ws.feature_sets.create(name="plain", size=384)
    app_ws.feature_sets.create(name="odd", size=7)
    at = ok(open_page("app_pages/embed.py"))
    choices = at.selectbox(key="embed:model")
    assert choices.value == "all-MiniLM-L6-v2" and "ViT-B-32/openai" not in choices.options  # size 384 only
    at.button(key="embed:go").click().run()
    at = ok(wait_for_job(at, "embed"))
    assert at.success[0].value.startswith("Done: 3 embedded")
    assert app_ws.feature_sets.get(feature_set_id=fs.id).model["name"] == "all-MiniLM-L6-v2"

    odd = [s for s in app_ws.feature_sets.list() if s.name == "odd"][0]
    at.selectbox(key="embed:set").select(odd.id).run()
    assert "no known model makes vectors of size 7" in texts(at)
    assert at.button(key="embed:go").disabled


def test_cancel_keeps_what_is_done(open_page, app_ws):
    from pydoc_data.topics import topics

    ds = app_ws.datasets.create("help")
    ds.items.upload([(f"{k}.txt", v.encode()) for k, v in sorted(topics.items())][:70])
    fs = create_feature_set(app_ws, "help-minilm", "all-MiniLM-L6-v2")
    at = ok(open_page("app_pages/embed.py"))
    at.button(key="embed:go").click().run()
    at.button(key="embed:cancel").click().run()  # before the first batch (64 texts) ends
    at = ok(wait_for_job(at, "embed"))
    summary = at.warning[0].value
    match = re.match(r"Cancelled: (\d+) embedded", summary)
    assert match, summary
    assert int(match.group(1)) == fs.count() < 70  # what was done is kept, the rest is not
    assert at.get("progress")[0].value < 100


def test_the_job_line_shows_the_total_at_once_and_items_per_second_from_the_first_batch(open_page, app_ws):
    from components.jobs import Job

    ds = app_ws.datasets.create("notes")
    ds.items.upload(NOTES)
    fs = create_feature_set(app_ws, "notes-minilm", "all-MiniLM-L6-v2")
    from store.embedders import embed_dataset

    job = Job("Embedding")
    assert job.status_line() == "starting…"  # the model still loading
    seen = []
    embed_dataset(app_ws, ds, fs, progress=lambda *a: (job.progress(*a), seen.append(job.status_line())))
    # The total shows once the model is loaded; the first (here the only) batch brings items/s.
    assert seen[0] == "0 / 3 · working on the first batch…"
    assert re.match(r"3 / 3 · [0-9.]+ items/s", seen[1]), seen


def test_a_set_whose_model_cannot_run_here_says_so_before_the_job(open_page, app_ws):
    ds = app_ws.datasets.create("pics")
    ds.items.upload([("red.png", png())])
    # Linked before (or through the SDK, which stores any model): its weights are not on this machine.
    app_ws.feature_sets.create(name="clip", size=512, model={"name": "ViT-B-32/laion2b_s34b_b79k",
                                                             "backend": "open_clip"})
    at = open_page("app_pages/embed.py")
    assert not at.exception
    [error] = [e.value for e in at.error]
    assert error.startswith("cannot run ViT-B-32/laion2b_s34b_b79k") and "A checkpoint on this machine" in error
    assert at.button(key="embed:go").disabled and "job:embed" not in at.session_state
