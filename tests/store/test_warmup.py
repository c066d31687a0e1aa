"""store.warmup: what the app's server loads in the background after its first page, so the
first text search does not wait for torch and the model (bench/app_clicks.py)."""
from dataclasses import replace

from store.embedders import default_text_model, loaded_embedders, offline_text_models, parse_spec
from store.warmup import warm_up


def test_only_models_that_load_without_the_hub_are_warmed(ws_embedded):
    ws = ws_embedded
    packaged = replace(default_text_model(), normalize=True)
    assert offline_text_models(ws) == [packaged]
    hub = parse_spec("sentence-transformers/all-mpnet-base-v2")  # would need the network here
    ws.feature_sets.create(name="hub-text", size=768, model=hub.to_dict(768))
    ws.feature_sets.create(name="minilm-raw", size=384, model=replace(packaged, normalize=False).to_dict(384))
    ws.feature_sets.create(name="pixels", size=4)
    assert offline_text_models(ws) == [packaged]  # once for both normalisations, never the hub one


def test_warm_up_loads_the_text_model_once_per_process_in_the_background(ws_embedded):
    thread = warm_up(ws_embedded, numba=False)
    assert thread is not None and thread.daemon
    thread.join(300)
    assert not thread.is_alive()
    packaged = replace(default_text_model(), normalize=True)
    assert any(e.spec == packaged for e in loaded_embedders())
    assert warm_up(ws_embedded, numba=False) is thread  # a second page run starts nothing
    assert warm_up(ws_embedded, models=False, numba=False) is None

