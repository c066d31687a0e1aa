"""The search form's plain-data side (store.search.form): a pasted vector or feature id, a
typed filter value, the window of one page of results, the state a link carries; and the
distance profile under a search's item filters (Workspace.distance_profile)."""
import numpy as np
import pytest

from store import Filters, InvalidInput
from store.search import (MAX_K, SearchState, parse_vector_or_id, parse_vector_text, result_window,
                          typed_value)


@pytest.mark.parametrize("text, want", [
    ("0.1, 0.2, 0.3", [0.1, 0.2, 0.3]), ("1 2 3", [1.0, 2.0, 3.0]), ("[1, -2e-3]", [1.0, -0.002]),
    ("1;2;3", [1.0, 2.0, 3.0]), ("1, 2, 3,", [1.0, 2.0, 3.0]), ("7", [7.0]), ("  ", None), ("", None),
])
def test_vectors_as_pasted(text, want):
    assert parse_vector_or_id(text) == want


@pytest.mark.parametrize("text, needle", [
    ("1,2,,3,nan", "entry 3 of the vector is empty"), ("1, 2, nan", "entry 3 of the vector is 'nan'"),
    ("nan", "entry 1 of the vector is 'nan'"), ("1, inf", "finite numbers only"),
    ("1, two, 3", "entry 2 of the vector is 'two', not a number"), ("[1, [2]]", "flat list"),
    ("[1, 2", "does not end with ]"), ("[]", "the vector is empty"),
])
def test_a_bad_vector_is_refused_as_a_vector(text, needle):
    with pytest.raises(InvalidInput, match="vector") as exc:
        parse_vector_or_id(text)
    assert needle in str(exc.value) and "feature" not in str(exc.value)


def test_feature_ids_stay_ids():
    assert parse_vector_or_id("0123456789abcdef01234567") == "0123456789abcdef01234567"  # 24 hex, all digits too
    assert parse_vector_or_id("123456789012345678901234") == "123456789012345678901234"
    assert parse_vector_or_id("no-such-feature") == "no-such-feature"  # the search says it is not there


def test_the_command_line_reads_vectors_the_same_way():
    from store.cli.registry import load_vector

    assert load_vector("0.1,0.2,0.3") == parse_vector_text("0.1, 0.2, 0.3")
    with pytest.raises(InvalidInput, match="--vector: entry 3 of the vector is empty"):
        load_vector("1,2,,3")


def test_typed_filter_values():
    assert typed_value("3") == 3 and typed_value("true") is True and typed_value('["a", 1]') == ["a", 1]
    assert typed_value("cat") == "cat" and typed_value("NaN") == "NaN" and typed_value("Infinity") == "Infinity"


def test_result_windows():
    w = result_window(1000, 2, 100)
    assert (w.start, w.stop, w.pages, w.label) == (100, 200, 10, "101–200 of 1,000")
    assert w.has_previous and w.has_next
    last = result_window(1000, 10, 100)
    assert (last.start, last.stop, last.has_next) == (900, 1000, False)
    assert result_window(1005, 11, 100).label == "1,001–1,005 of 1,005"
    assert result_window(50, 9, 24).page == 3  # a page past the end shows the last one
    assert result_window(50, 0, 24).page == 1
    empty = result_window(0, 4, 24)
    assert (empty.page, empty.pages, empty.start, empty.stop, empty.label) == (1, 1, 0, 0, "")
    with pytest.raises(InvalidInput, match="page size"):
        result_window(10, 1, 0)


def test_a_search_state_round_trips_through_query_parameters():
    state = SearchState(set="photos", scope="all", mode="vector", query="0.1, 0.2", k=500, max_distance=0.25,
                        dataset="pets", folder="/cats", hidden="both", field="user.digit", op="gte", value="3",
                        page=4, page_size=100)
    params = state.to_params()
    assert params["k"] == "500" and params["max"] == "0.25" and params["in"] == "all" and params["per"] == "100"
    assert all(isinstance(v, str) for v in params.values())
    back, problems = SearchState.from_params(params)
    assert back == state and problems == []
    assert SearchState().to_params() == {}  # the defaults make a bare URL
    assert SearchState(set="s").to_params() == {"set": "s"}


def test_a_link_with_bad_parts_keeps_the_good_ones_and_says_what_it_dropped():
    state, problems = SearchState.from_params({"set": "s", "k": "abc", "max": "-1", "by": "sound", "per": "37",
                                               "page": "2", "hidden": "both", "utm_source": "x",
                                               "k2": "ignored"})
    assert (state.set, state.page, state.hidden) == ("s", 2, "both")
    assert (state.k, state.max_distance, state.mode, state.page_size) == (12, None, "text", 48)  # defaults
    text = " | ".join(problems)
    assert len(problems) == 4
    assert "k='abc' is not a whole number" in text and "max='-1' must be a finite number >= 0" in text
    assert "by='sound' is not one of text, image, item, vector" in text and "per='37' is not a page size" in text
    assert SearchState.from_params({"k": str(MAX_K + 1)})[1][0].startswith("the link's k=")


def test_the_distance_profile_counts_only_what_the_item_filters_let_through(ws_embedded):
    ds = ws_embedded.datasets.create("p")
    items = [r.item for r in ds.items.upload([(f"{i}.txt", f"t{i}".encode()) for i in range(10)], dir="/a")]
    for item in items[:4]:
        item.update(hidden=True)
    items[5].update(metadata={"user": {"tag": "x"}})
    other = ws_embedded.datasets.create("q")
    extra = [r.item for r in other.items.upload([("z.txt", b"z")])]
    fs = ws_embedded.feature_sets.create(name="p-set", size=2)
    values = np.array([[i, 0] for i in range(10)] + [[50, 0]], np.float32)
    fs.features.create_many(values, [*items, *extra])

    def profile(*conditions, max_distance=None, dataset_id=None):
        f = Filters()
        for c in conditions:
            f.add(*c)
        f.add_euclid(fs, [0.0, 0.0], k=1, max_distance=max_distance)
        return np.sort(ws_embedded.distance_profile(f, dataset_id=dataset_id))

    assert len(profile()) == 11
    visible = profile(("hidden", False))
    assert np.allclose(visible, [4, 5, 6, 7, 8, 9, 50], atol=1e-4)  # the hidden 0-3 are left out
    assert np.allclose(profile(("hidden", False), max_distance=0.5), visible)  # k and the limit aside
    assert np.allclose(profile(("metadata.user.tag", "x")), [5], atol=1e-4)
    assert np.allclose(profile(dataset_id=other.id), [50], atol=1e-4)
    assert len(profile(("dir", "/nowhere"))) == 0
    with pytest.raises(InvalidInput, match="query vector"):
        ws_embedded.distance_profile({"filter": {"hidden": False}})
