"""The shared report pieces: confusion matrices against numpy and scikit-learn references, markdown
tables as exact text, and PNG figures decoded back to pixels."""

from __future__ import annotations

import io
import logging
import sys

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix

from musicnext_tf import reporting

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def decode(png: bytes) -> np.ndarray:
    """float RGBA [height, width, 4] in [0, 1]."""
    import matplotlib.image

    assert png[:8] == PNG_SIGNATURE
    return matplotlib.image.imread(io.BytesIO(png), format="png")


# ---- confusion matrices -------------------------------------------------------------------------


def test_confusion_counts_and_percent_match_a_hand_count_with_a_genre_without_clips():
    truth = [0, 0, 0, 2, 2, 3, 3, 3, 3]  # genre 1 has no true clips
    predicted = [0, 1, 1, 2, 1, 3, 3, 0, 1]
    expected = np.zeros((4, 4), np.int64)
    for true, guess in zip(truth, predicted):
        expected[true, guess] += 1
    counts = reporting.confusion_counts(truth, predicted, 4)
    np.testing.assert_array_equal(counts, expected)
    assert counts.sum() == len(truth)
    percent = reporting.row_percent(counts)
    np.testing.assert_allclose(
        percent,
        [[100 / 3, 200 / 3, 0, 0], [0, 0, 0, 0], [0, 50, 50, 0], [25, 25, 0, 50]],
        rtol=1e-12,
    )
    assert np.all(np.isfinite(percent))
    matrix = reporting.confusion_matrix(truth, predicted, ["a", "b", "c", "d"])
    assert matrix["rows"] == matrix["columns"] == ["a", "b", "c", "d"]
    np.testing.assert_array_equal(matrix["confusion_counts"], expected)
    np.testing.assert_array_equal(matrix["confusion_percent"], percent)


def test_row_percent_matches_scikit_learn_normalised_by_the_true_class(rng):
    truth = rng.integers(0, 5, 300)
    predicted = np.where(rng.random(300) < 0.6, truth, rng.integers(0, 5, 300))
    percent = reporting.row_percent(reporting.confusion_counts(truth, predicted, 5))
    reference = 100.0 * confusion_matrix(truth, predicted, labels=range(5), normalize="true")
    np.testing.assert_allclose(percent, reference, rtol=1e-12)
    np.testing.assert_allclose(percent.sum(axis=1), 100.0)


@pytest.mark.parametrize(
    ("truth", "predicted", "message"),
    [
        ([0, 3], [0, 1], "truth holds class ids outside 0 .. 2"),
        ([0, 1], [0, -1], "predicted holds class ids outside 0 .. 2"),
        ([0, 1], [0], "one length"),
    ],
)
def test_confusion_counts_refuses_ids_it_cannot_place(truth, predicted, message):
    with pytest.raises(ValueError, match=message):
        reporting.confusion_counts(truth, predicted, 3)


def test_confusion_image_shades_each_cell_by_its_percentage():
    image = reporting.confusion_image(np.array([[100.0, 0.0], [25.0, 75.0]]), size=64)
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    white, blue = np.array([255, 255, 255]), np.array([8, 48, 107])
    cells = image[16::32, 16::32]  # the centre pixel of each 32 x 32 cell
    np.testing.assert_array_equal(cells[0, 0], blue)
    np.testing.assert_array_equal(cells[0, 1], white)
    np.testing.assert_array_equal(cells[1, 0], np.round(white + 0.25 * (blue - white)))
    np.testing.assert_array_equal(cells[1, 1], np.round(white + 0.75 * (blue - white)))
    assert np.all(image[:32, :32] == blue)  # cells are uniform blocks
    assert reporting.confusion_image(np.zeros((100, 100))).shape == (400, 400, 3)  # >= 4 px a cell


# ---- markdown -----------------------------------------------------------------------------------


def test_markdown_table_aligns_labels_left_and_numbers_right_and_formats_floats():
    table = reporting.markdown_table(
        ["name", "score", "count"], [["a", 0.12345, 3], ["b", np.float32(1.0), True]], floats=".2f"
    )
    assert table == [
        "| name | score | count |",
        "|---|---:|---:|",
        "| a | 0.12 | 3 |",
        "| b | 1.00 | True |",
    ]
    # without `floats` every cell is written as it is; `align` names each column's side
    assert reporting.markdown_table(["x", "y"], [[0.5, "-"]], align="rl") == [
        "| x | y |",
        "|---:|---|",
        "| 0.5 | - |",
    ]
    with pytest.raises(ValueError, match="align 'lx' must give l or r for each of 2 columns"):
        reporting.markdown_table(["x", "y"], [], align="lx")


def test_confusion_table_is_markdown_with_one_decimal():
    matrix = reporting.confusion_matrix([0, 0, 0, 1], [0, 0, 1, 1], ["jazz", "rock", "pop"])
    assert "\n".join(reporting.confusion_table(matrix)) == (
        "| true \\ predicted | jazz | rock | pop |\n"
        "|---|---:|---:|---:|\n"
        "| jazz | 66.7 | 33.3 | 0.0 |\n"
        "| rock | 0.0 | 100.0 | 0.0 |\n"
        "| pop | 0.0 | 0.0 | 0.0 |"
    )
    # a `scores.level_report` (JSON lists): rows only for the true genres that occur
    level = {"rows": ["rock"], "columns": ["jazz", "rock"], "confusion_percent": [[12.5, 87.5]]}
    assert reporting.confusion_table(level)[-1] == "| rock | 12.5 | 87.5 |"


def test_scores_table_lists_each_genre_and_the_macro_average_over_all_clips():
    level = {
        "per_genre": {
            "jazz": {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2},
            "rock": {"precision": 0.75, "recall": 1.0, "f1": 6 / 7, "support": 3},
        },
        "macro_average": {"precision": 0.875, "recall": 0.75, "f1": 0.7619047},
    }
    assert reporting.scores_table(level, macro_average=True) == [
        "| genre | precision | recall | F1 | clips |",
        "|---|---:|---:|---:|---:|",
        "| jazz | 1.000 | 0.500 | 0.667 | 2 |",
        "| rock | 0.750 | 1.000 | 0.857 | 3 |",
        "| macro average | 0.875 | 0.750 | 0.762 | 5 |",
    ]
    assert len(reporting.scores_table(level)) == 4


def test_as_percent():
    assert reporting.as_percent(0.81234) == "81.23 %"


# ---- PNG figures --------------------------------------------------------------------------------


def test_confusion_png_is_a_png_of_the_expected_size_with_the_cells_coloured():
    level = {  # true genres: a, b; predicted: a, b, c
        "rows": ["a", "b"],
        "columns": ["a", "b", "c"],
        "confusion_percent": [[100.0, 0.0, 0.0], [50.0, 50.0, 0.0]],
    }
    png = reporting.confusion_png(level, "title")
    pixels = decode(png)
    # 5.5 x 3.5 inches (the smallest figure) at 120 dpi
    assert pixels.shape == (420, 660, 4)
    rgb = np.round(255 * pixels[..., :3]).astype(int)
    dark_blue = np.all(np.abs(rgb - [8, 48, 107]) <= 2, axis=-1)  # the 100 % cell
    assert dark_blue.sum() > 500
    assert np.mean(np.all(rgb == 255, axis=-1)) < 0.95  # more than a blank canvas


def test_figure_png_has_the_size_of_its_inches_at_its_dpi_and_draws_what_it_is_given():
    from matplotlib.patches import Rectangle

    def draw(figure) -> None:  # the left half of the canvas, filled
        figure.add_artist(Rectangle((0, 0), 0.5, 1, transform=figure.transFigure))

    pixels = decode(reporting.figure_png(draw, (2.0, 1.0), dpi=50))
    assert pixels.shape == (50, 100, 4)
    left, right = pixels[:, :45, :3], pixels[:, 55:, :3]
    assert np.all(right == 1.0)  # background: white
    assert np.mean(left < 1.0) > 0.9  # the rectangle


def test_write_pngs_writes_each_picture_and_without_matplotlib_warns_once(
    tmp_path, monkeypatch, caplog
):
    pictures = {"a.png": lambda: reporting.figure_png(lambda figure: None, (1.0, 1.0), dpi=20)}
    written = reporting.write_pngs(tmp_path, pictures, written=[tmp_path / "a.md"])
    assert written == [tmp_path / "a.png"]
    assert decode((tmp_path / "a.png").read_bytes()).shape == (20, 20, 4)

    for name in [n for n in sys.modules if n == "matplotlib" or n.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    pictures = {name: pictures["a.png"] for name in ("b.png", "c.png")}
    with caplog.at_level(logging.WARNING):
        written = reporting.write_pngs(tmp_path, pictures, written=[tmp_path / "b.md"])
    assert written == [] and not (tmp_path / "b.png").exists()
    (record,) = caplog.records
    assert f"wrote {tmp_path / 'b.md'} without the PNG figures" in record.getMessage()
    assert "reinstall musicnext-tf" in record.getMessage()
