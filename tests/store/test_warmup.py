"""store.warmup: what the app's server loads in the background after its first page, so the
first text search does not wait for torch and the model (bench/app_clicks.py)."""
import logging
import sys
import time
from dataclasses import replace

from store.embedders import default_text_model, loaded_embedders, offline_text_models, parse_spec
from store.warmup import STUCK_S, Activity, import_modules_of, warm_up


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



def test_page_imports_are_warmed_before_the_text_models(ws_embedded, caplog):
    caplog.set_level(logging.INFO, logger="store.warmup")
    seen: list[bool] = []  # at the imports step: had the models step finished?
    thread = warm_up(ws_embedded, numba=False,
                     imports=lambda: seen.append(any("text models warm" in r.getMessage() for r in caplog.records)))
    thread.join(300)
    assert seen == [False]  # imports first: after the models they fell into the first clicks
    assert any("text models warm" in r.getMessage() for r in caplog.records)


def test_activity_says_how_long_nobody_was_served():
    activity = Activity()
    activity.run_started()
    assert activity.idle_seconds() == 0.0  # a run is going on
    activity.busy()
    assert 0.0 <= activity.idle_seconds() < STUCK_S
    activity.start, activity.end = time.monotonic() - 2 * STUCK_S, 0.0  # a run stopped without its end
    assert activity.idle_seconds() >= 2 * STUCK_S


def test_import_modules_of_reads_a_source_s_imports_also_inside_functions(tmp_path):
    source = tmp_path / "page.py"
    source.write_text("import colorsys\n\ndef later():\n    import wave\n")
    sys.modules.pop("wave", None)
    assert import_modules_of([source]) == ["colorsys", "wave"] and "wave" in sys.modules
