"""Large maps: the density image counts every point where it lies, and the server-side lasso
(even-odd ray casting) agrees with a plain point-by-point check."""
import io

import numpy as np
import pytest
from PIL import Image

from store import InvalidInput
from store.analysis import box_polygon, density_image, large_map_above, points_in_polygon


def brute_inside(points: np.ndarray, polygon: list[tuple[float, float]]) -> np.ndarray:
    """The textbook even-odd test, one point and one edge at a time."""
    out = []
    for px, py in points:
        inside = False
        for (ax, ay), (bx, by) in zip(polygon, polygon[1:] + polygon[:1]):
            if (ay > py) != (by > py) and px < ax + (bx - ax) * (py - ay) / (by - ay):
                inside = not inside
        out.append(inside)
    return np.array(out)


def test_the_image_counts_each_point_in_its_pixel():
    rng = np.random.default_rng(0)
    xy = np.concatenate([rng.normal(-5, 0.3, size=(3000, 2)), rng.normal(5, 0.3, size=(1000, 2))]).astype(np.float32)
    xy[7] = np.nan  # left out, not drawn somewhere
    image = density_image(xy, width=200, height=100)
    assert image.counts.sum() == len(xy) - 1 and image.counts.shape == (100, 200)
    assert Image.open(io.BytesIO(image.png)).mode == "P"  # a byte a pixel: a quarter of RGBA's bytes
    png = np.asarray(Image.open(io.BytesIO(image.png)).convert("RGBA"))
    assert png.shape == (100, 200, 4)
    # Pixels with points are opaque-ish, the space between the clusters is empty (transparent).
    assert (png[..., 3][image.counts > 0] >= 150).all()
    assert png[:, 95:105, 3].max() == 0
    # The lower-left cluster sits in the lower-left quarter, row 0 being the top.
    assert image.counts[50:, :100].sum() == 3000 - 1 and image.counts[:50, 100:].sum() == 1000
    # Log scale: the densest pixel is darker than a pixel of one point.
    dense, single = np.unravel_index(image.counts.argmax(), image.counts.shape), np.argwhere(image.counts == 1)[0]
    assert png[dense][:3].sum() < png[tuple(single)][:3].sum()


def test_categories_colour_each_pixel_by_its_most_common_one():
    xy = np.array([[0, 0]] * 5 + [[0, 0]] * 2 + [[10, 10]] * 3, dtype=np.float32)
    labels = ["cat"] * 5 + ["dog"] * 2 + [None] * 3
    image = density_image(xy, width=20, height=20, categories=labels)
    assert [(name, count) for name, _, count in image.legend] == [("cat", 5), ("(none)", 3), ("dog", 2)]
    png = np.asarray(Image.open(io.BytesIO(image.png)).convert("RGBA"))
    bottom_left, top_right = png[image.counts.shape[0] - 1, 0], png[0, image.counts.shape[1] - 1]
    assert bottom_left[2] > bottom_left[0]  # cat: the first colour, blue
    assert top_right[0] > top_right[2]  # (none): the second, orange


def test_points_in_a_concave_polygon_match_a_brute_check():
    rng = np.random.default_rng(1)
    points = rng.uniform(-2, 2, size=(3000, 2))
    star = [(np.cos(t) * r, np.sin(t) * r) for t, r in zip(np.linspace(0, 2 * np.pi, 14, endpoint=False),
                                                            [1.8, 0.6] * 7)]
    mask = points_in_polygon(points, star)
    assert (mask == brute_inside(points, star)).all() and 0 < mask.sum() < len(points)
    # A "U": the notch between its arms is outside.
    u_shape = [(0, 0), (3, 0), (3, 3), (2, 3), (2, 1), (1, 1), (1, 3), (0, 3)]
    grid = np.array([(1.5, 2.0), (0.5, 2.0), (2.5, 2.0), (1.5, 0.5), (4.0, 1.0)])
    assert points_in_polygon(grid, u_shape).tolist() == [False, True, True, True, False]
    assert (points_in_polygon(points, u_shape) == brute_inside(points, u_shape)).all()
    # Closed (first vertex repeated) or not: the same answer.
    assert (points_in_polygon(points, star + star[:1]) == mask).all()


def test_degenerate_polygons_and_boxes():
    points = np.array([[0.5, 0.5], [2.0, 2.0], [np.nan, 0.5]])
    assert not points_in_polygon(points, [(0, 0), (1, 1)]).any()  # a line holds nothing
    assert not points_in_polygon(points, []).any()
    assert points_in_polygon(points, box_polygon([1, 0], [1, 0])).tolist() == [True, False, False]
    assert not points_in_polygon(points, box_polygon([5, 6], [5, 6])).any()  # nothing in its box


def test_the_threshold_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("FEATURELAB_LARGE_MAP_ABOVE", raising=False)
    assert large_map_above() == 200_000
    monkeypatch.setenv("FEATURELAB_LARGE_MAP_ABOVE", "30")
    assert large_map_above() == 30


@pytest.mark.parametrize("bad", ["lots", "1.5", "2e5"])
def test_a_threshold_that_is_not_a_whole_number_says_what_to_set(monkeypatch, bad):
    monkeypatch.setenv("FEATURELAB_LARGE_MAP_ABOVE", bad)
    with pytest.raises(InvalidInput) as caught:
        large_map_above()
    message = str(caught.value)
    assert "FEATURELAB_LARGE_MAP_ABOVE" in message and repr(bad) in message and "200000" in message


@pytest.mark.parametrize("n", [1, 5])
def test_a_tiny_map_still_draws(n):
    image = density_image(np.zeros((n, 2), dtype=np.float32), width=40, height=30)
    assert image.counts.sum() == n
    png = np.asarray(Image.open(io.BytesIO(image.png)).convert("RGBA"))
    assert (png[..., 3] > 0).sum() > 1  # spread beyond one pixel, so it can be seen
