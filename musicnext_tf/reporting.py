"""The shared pieces of every report: confusion matrices, markdown tables and PNG figures.

`evaluate` (RUN_DIR/evaluation), `monitor` (TensorBoard), `sweep_report` (the ablations), and the
markdown or PNG parts of `classical`, `trust`, `calibration` and `timeline` all build on these, so
a confusion matrix is counted, normalised, tabulated and drawn the same way everywhere:

- confusion matrices: rows are true genres, columns predicted genres, in the layout of
  `scores.level_report` (`confusion_matrix` builds one from predictions); `row_percent` gives
  each count in percent of its row's total (every row sums to 100, a row without clips stays 0);
- markdown tables: `markdown_table` (first column left-aligned, numbers right-aligned);
- PNG figures: `figure_png` draws on matplotlib's Agg canvas without pyplot's global state;
  matplotlib is imported only when a figure is drawn (ImportError without it), so importing this
  module stays cheap; `write_pngs` leaves the figures out with a warning in that case.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from musicnext_tf.files import atomic_write

if TYPE_CHECKING:  # annotations only: matplotlib is imported when a figure is drawn
    from matplotlib.figure import Figure

TRUE_VS_PREDICTED = "true \\ predicted"  # the corner cell of a confusion table
EMPTY_COLOR = np.array([255.0, 255.0, 255.0])  # 0 % of a row: white
FULL_COLOR = np.array([8.0, 48.0, 107.0])  # 100 %: dark blue, as at the top of matplotlib's Blues
log = logging.getLogger(__name__)


# ---- confusion matrices -------------------------------------------------------------------------


def confusion_counts(truth: Sequence[int], predicted: Sequence[int], classes: int) -> np.ndarray:
    """int64 [classes, classes]: how many examples of each true class (row) were predicted as
    each class (column).

    Raises:
        ValueError: the two sequences differ in length or hold a class id outside 0 .. classes-1.
    """
    truth, predicted = np.asarray(truth, np.int64), np.asarray(predicted, np.int64)
    if truth.shape != predicted.shape or truth.ndim != 1:
        raise ValueError(
            f"truth and predicted must be two 1-D sequences of one length, got {truth.shape} "
            f"and {predicted.shape}"
        )
    for name, ids in (("truth", truth), ("predicted", predicted)):
        if len(ids) and (ids.min() < 0 or ids.max() >= classes):
            raise ValueError(f"{name} holds class ids outside 0 .. {classes - 1}")
    flat = np.bincount(truth * classes + predicted, minlength=classes * classes)
    return flat.reshape(classes, classes)


def row_percent(counts) -> np.ndarray:
    """float64: each count in percent of its row's total; a row without examples stays 0."""
    counts = np.asarray(counts, np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(100.0 * counts, totals, out=np.zeros_like(counts), where=totals > 0)


def confusion_matrix(truth: Sequence[int], predicted: Sequence[int], genres: Sequence[str]) -> dict:
    """A confusion matrix in the layout of `scores.level_report` (what `confusion_table` and
    `confusion_png` draw), with a row for every genre (zeros for a genre without examples)."""
    counts = confusion_counts(truth, predicted, len(genres))
    return {
        "rows": list(genres),
        "columns": list(genres),
        "confusion_counts": counts,
        "confusion_percent": row_percent(counts),
    }


def confusion_table(matrix: Mapping) -> list[str]:
    """A confusion matrix's percentages as markdown lines with one decimal.

    Args:
        matrix: a `scores.level_report` or `confusion_matrix`: `confusion_percent` [rows,
            columns], `rows` (the true genres) and `columns` (the predicted genres).
    """
    body = [[genre, *values] for genre, values in zip(matrix["rows"], _percent(matrix))]
    return markdown_table([TRUE_VS_PREDICTED, *matrix["columns"]], body, floats=".1f")


def _percent(matrix: Mapping) -> np.ndarray:
    return np.asarray(matrix["confusion_percent"], np.float64)


def confusion_image(percent, size: int = 256) -> np.ndarray:
    """A confusion matrix as a heat map, white at 0 % to dark blue at 100 %, drawn with numpy
    alone (no plotting library, cheap enough for every epoch); names and numbers go to
    `confusion_table`.

    Args:
        percent: float [classes, classes] in [0, 100].
        size: approximate width of the image in pixels (each cell is at least 4 pixels).
    Returns:
        uint8 [classes * cell, classes * cell, 3].
    """
    percent = np.asarray(percent, np.float64)
    cell = max(4, size // len(percent))
    share = np.clip(percent / 100.0, 0.0, 1.0)[..., None]
    colors = EMPTY_COLOR + share * (FULL_COLOR - EMPTY_COLOR)
    pixels = np.repeat(np.repeat(colors, cell, axis=0), cell, axis=1)
    return np.round(pixels).astype(np.uint8)


def confusion_png(matrix: Mapping, title: str) -> bytes:
    """A PNG of a confusion matrix (as `confusion_table`'s) in %, with the genre names and each
    cell's value; raises ImportError without matplotlib."""
    percent, rows, columns = _percent(matrix), matrix["rows"], matrix["columns"]

    def draw(figure) -> None:
        axes = figure.add_subplot()
        image = axes.imshow(percent, cmap="Blues", vmin=0.0, vmax=100.0)
        for (row, column), value in np.ndenumerate(percent):
            axes.text(
                column,
                row,
                f"{value:.1f}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if value > 50 else "black",
            )
        axes.set_xticks(range(len(columns)), columns, rotation=45, ha="right")
        axes.set_yticks(range(len(rows)), rows)
        axes.set_xlabel("predicted genre")
        axes.set_ylabel("true genre")
        figure.colorbar(image, ax=axes, label="% of the true genre's clips")

    width = max(5.5, 0.55 * len(columns) + 3.0)
    return figure_png(draw, (width, max(3.5, 0.55 * len(rows) + 2.0)), title=title)


# ---- markdown -----------------------------------------------------------------------------------


def markdown_table(
    header: Sequence[str],
    rows: Sequence[Sequence],
    align: str | None = None,
    floats: str | None = None,
) -> list[str]:
    """A markdown table as lines.

    Args:
        align: one letter per column, "l" (left) or "r" (right); default: the first column left,
            the others right (labels, then numbers).
        floats: a format spec (".3f") for the float cells; other cells, and every cell without
            it, are written with `str`.
    """
    align = align or "l" + "r" * (len(header) - 1)
    if len(align) != len(header) or set(align) - {"l", "r"}:
        raise ValueError(f"align {align!r} must give l or r for each of {len(header)} columns")

    def cell(value) -> str:
        if floats is not None and isinstance(value, (float, np.floating)):
            return format(value, floats)
        return str(value)

    rule = "|" + "".join("---|" if side == "l" else "---:|" for side in align)
    lines = ["| " + " | ".join(map(str, header)) + " |", rule]
    return lines + ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]


def scores_table(level: dict, macro_average: bool = False) -> list[str]:
    """Precision, recall, F1 and clip count of each genre of a `scores.level_report`, and with
    `macro_average` its macro average over all its clips."""
    rows = [
        [genre, scores["precision"], scores["recall"], scores["f1"], scores["support"]]
        for genre, scores in level["per_genre"].items()
    ]
    if macro_average:
        macro = level["macro_average"]
        total = sum(scores["support"] for scores in level["per_genre"].values())
        rows.append(["macro average", macro["precision"], macro["recall"], macro["f1"], total])
    return markdown_table(["genre", "precision", "recall", "F1", "clips"], rows, floats=".3f")


def as_percent(fraction: float) -> str:
    """0.8123 -> `81.23 %`."""
    return f"{100 * fraction:.2f} %"


# ---- PNG figures --------------------------------------------------------------------------------


def figure_png(
    draw: Callable[[Figure], None],
    size: tuple[float, float],
    title: str | None = None,
    dpi: int = 120,
) -> bytes:
    """Calls `draw(figure)` on a new matplotlib figure of `size` inches (constrained layout, Agg
    canvas, no pyplot state), adds the `title` above it and returns the PNG; raises ImportError
    without matplotlib."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(figure)
    draw(figure)
    if title is not None:
        figure.suptitle(title, fontsize=10)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def write_pngs(
    directory: str | Path, pictures: Mapping[str, Callable[[], bytes]], written: Sequence[Path]
) -> list[Path]:
    """Draws each picture (file name -> function returning PNG bytes) into `directory`; returns
    the paths written. Without matplotlib the rest are left out with one warning that names the
    files `written` without them."""
    paths = []
    for name, draw in pictures.items():
        try:
            png = draw()
        except ImportError:
            log.warning(
                "matplotlib cannot be imported: wrote %s without the PNG figures (reinstall "
                "musicnext-tf to get it back)",
                " and ".join(str(path) for path in written),
            )
            break
        atomic_write(Path(directory) / name, png)
        paths.append(Path(directory) / name)
    return paths
