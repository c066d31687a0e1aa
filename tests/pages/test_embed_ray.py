"""Embed page on a Ray cluster: the option appears when FEATURELAB_RAY_ADDRESS names one, with
the cluster's resources, and a job there shows its progress (actors alive) and its summary.
A real local cluster (the session's ``ray_cluster``) and the packaged all-MiniLM-L6-v2."""
from store.embedders.job import create_feature_set
from tests.pages.helpers import ok, texts, wait_for_job

NOTES = [("cat.txt", b"a cat sleeps on the sofa"), ("bread.txt", b"how to bake a loaf of bread"),
         ("market.txt", b"stock prices fell sharply today")]


def test_no_ray_option_without_a_cluster(open_page, app_ws, monkeypatch):
    monkeypatch.delenv("FEATURELAB_RAY_ADDRESS", raising=False)
    app_ws.datasets.create("notes").items.upload(NOTES)
    create_feature_set(app_ws, "notes-minilm", "all-MiniLM-L6-v2")
    at = ok(open_page("app_pages/embed.py"))
    assert not [c for c in at.checkbox if c.key == "embed:ray"]


def test_embed_on_the_ray_cluster(open_page, app_ws, monkeypatch, ray_cluster):
    monkeypatch.setenv("FEATURELAB_RAY_ADDRESS", ray_cluster)
    app_ws.datasets.create("notes").items.upload(NOTES)
    fs = create_feature_set(app_ws, "notes-minilm", "all-MiniLM-L6-v2")
    at = ok(open_page("app_pages/embed.py"))
    assert at.checkbox(key="embed:ray").label == f"Run on a Ray cluster ({ray_cluster})"
    at = ok(at.checkbox(key="embed:ray").check().run())
    assert f"Runs on: **Ray cluster at {ray_cluster}** · 1 node, 2 CPUs, 0 GPUs" in texts(at)

    at.button(key="embed:go").click().run()
    at = ok(wait_for_job(at, "embed"))

    assert at.success[0].value.startswith("Done: 3 embedded, 0 already had a vector, 0 skipped, 0 failed · "
                                          "all-MiniLM-L6-v2 on ray: 1 cpu actor")
    assert at.get("progress")[0].value == 100 and "1 of 1 Ray actor alive" in at.get("progress")[0].proto.text
    assert fs.count() == 3
