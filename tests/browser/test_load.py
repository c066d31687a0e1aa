"""Four Chromium sessions at once on one `streamlit run`: three search by text again and
again while the fourth runs embedding jobs. No error on any page or in the server log, every
search finds what it must, and every vector the jobs wrote is there at the end. Latency is
measured by bench/load.py, not asserted here."""
import pytest

from tests.browser.app_server import running_app
from tests.browser.sessions import check_writes, prepare, run_sessions

pytestmark = pytest.mark.browser

SEARCHERS, SEARCHES, EMBED_ITEMS, MAX_JOBS = 3, 4, 60, 6


def test_four_sessions_search_and_embed_at_once(tmp_path, monkeypatch):
    monkeypatch.setenv("FEATURELAB_WARM_NUMBA", "0")  # no map is drawn: skip a minute of compiling UMAP
    home = tmp_path / "ws"
    queries = prepare(home, search_notes=80, embed_notes=EMBED_ITEMS, embed_rounds=MAX_JOBS)
    with running_app(home, tmp_path / "streamlit.log") as app:
        sessions = run_sessions(app.url, queries, SEARCHERS, SEARCHES, EMBED_ITEMS, MAX_JOBS)
        log = app.log.read_text(errors="replace")

    for s in sessions:
        assert s.failure is None, f"{s.name}: {s.failure!r}"  # a search that never showed its note fails here
        assert s.errors == [], f"{s.name}: {s.errors}"
    searchers, embedding = sessions[:-1], sessions[-1]
    assert [len(s.latencies) for s in searchers] == [SEARCHES] * SEARCHERS
    assert embedding.rounds >= 1 and all(line.startswith(f"Done: {EMBED_ITEMS} embedded") for line in embedding.summaries)
    assert "Traceback" not in log and "unexpected error" not in log

    found = check_writes(home, embedding.rounds, EMBED_ITEMS)  # catalog and Chroma hold every vector
    assert found["integrity"] == "ok" and found["vectors"] == embedding.rounds * EMBED_ITEMS
