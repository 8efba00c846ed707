"""The results of a sweep (`sweep`): its markdown report, CSV and figures.

For each experiment, in the sweep folder:

    <experiment>.md     the results in the layout of the paper's figure or table, the paper's
                        numbers beside ours, and every cell
    <experiment>.csv    the same numbers, one row per grid point or epoch
    <experiment>.png    the figure (confusion: one PNG per head, `<experiment>-<head>.png`); left
                        out with a warning without matplotlib

Tables, confusion matrices and figures are drawn by `reporting`; this module knows the layout of
each kind of experiment ("points", "curves", "confusion"). matplotlib is imported when a figure is
drawn.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from musicnext_tf.files import atomic_write
from musicnext_tf.paper_results import FINDINGS, NOT_REPORTED, paper_accuracy
from musicnext_tf.reporting import (
    confusion_png,
    confusion_table,
    figure_png,
    markdown_table,
    row_percent,
    write_pngs,
)
from musicnext_tf.sweep_plan import CELLS, Cell, Experiment, Variant


@dataclass(frozen=True)
class CellResult:
    """A finished cell and its metrics.json."""

    cell: Cell
    metrics: dict

    def percent(self, key: str) -> float:
        return 100.0 * self.metrics[key]

    def evaluation(self) -> dict:
        """The cell's test report (`evaluate`), with the confusion matrices."""
        reports = [path for path in self.metrics["evaluation"] if path.endswith(".json")]
        return json.loads((self.cell.run_dir / reports[0]).read_text())


def _grouped(results: Sequence[CellResult], key: Callable[[Variant], str]) -> dict:
    """Results by `key(variant)`, in grid order."""
    groups: dict[str, list[CellResult]] = {}
    for result in results:
        groups.setdefault(key(result.cell.variant), []).append(result)
    return groups


def _mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for a single value)."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _with_std(mean: float, std: float | None) -> str:
    return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"


def _dataset(results: Sequence[CellResult]) -> str:
    return results[0].cell.config.data.name


@dataclass
class Rendered:
    """An experiment's results: markdown body, CSV rows (header first) and the plots to draw,
    as file name -> function returning PNG bytes (raising ImportError without matplotlib)."""

    markdown: list[str]
    csv_rows: list[list]
    plots: dict[str, Callable[[], bytes]]


@dataclass
class Point:
    """The cells of one grid point (a row and series) across seeds."""

    row: str
    series: str
    results: list[CellResult]
    paper: float | None

    def stats(self, key: str) -> tuple[float, float | None]:
        return _mean_std([result.percent(key) for result in self.results])


def _points(experiment: Experiment, results: Sequence[CellResult]) -> list[Point]:
    groups = _grouped(results, lambda variant: f"{variant.row}\0{variant.series}")
    dataset = _dataset(results)
    points = []
    for group in groups.values():
        variant = group[0].cell.variant
        paper = paper_accuracy(dataset, group[0].cell.config.model)
        points.append(
            Point(variant.row, variant.series, group, paper if experiment.paper_points else None)
        )
    return points


def _paper_reference(experiment: Experiment, results: Sequence[CellResult]) -> float | None:
    """For a sweep whose points the paper does not report (the margin): its model's accuracy at
    the margin it chose, drawn as a reference line."""
    if experiment.paper_points:
        return None
    return paper_accuracy(_dataset(results), results[0].cell.config.model)


def _ordered(values) -> list[str]:
    return list(dict.fromkeys(values))


def render_points(experiment: Experiment, results: Sequence[CellResult]) -> Rendered:
    """A table with a row per grid value and, per series, our clip and segment accuracy and the
    paper's; a bar chart (or a line for the margin) of the clip accuracy."""
    points = _points(experiment, results)
    rows, series = _ordered(p.row for p in points), _ordered(p.series for p in points)
    by_key = {(p.row, p.series): p for p in points}
    header = [experiment.axis]
    for name in series:
        header += [f"{name} clip %", f"{name} segment %", f"{name} paper %"]
    table = []
    for row in rows:
        line = [row]
        for name in series:
            point = by_key.get((row, name))
            if point is None:
                line += ["", "", ""]
                continue
            paper = NOT_REPORTED if point.paper is None else f"{point.paper:.2f}"
            line += [
                _with_std(*point.stats("test_clip_accuracy")),
                _with_std(*point.stats("test_segment_accuracy")),
                paper,
            ]
        table.append(line)
    markdown = markdown_table(header, table)
    reference = _paper_reference(experiment, results)
    if reference is not None:
        markdown += [
            "",
            f"The paper's MusicNeXt reaches {reference:.2f} % on this dataset at the margin it "
            "chose, whose value was lost in the text (dashed line in the plot).",
        ]
    csv_rows = [
        [experiment.axis, "series", "seeds", "clip_accuracy_pct", "clip_accuracy_pct_std"]
        + ["segment_accuracy_pct", "segment_accuracy_pct_std", "test_loss", "paper_accuracy_pct"]
    ]
    for point in points:
        clip, segment = point.stats("test_clip_accuracy"), point.stats("test_segment_accuracy")
        loss = _mean_std([result.metrics["test_loss"] for result in point.results])[0]
        csv_rows.append(
            [point.row, point.series, len(point.results), *_csv_stats(clip), *_csv_stats(segment)]
            + [round(loss, 4), NOT_REPORTED if point.paper is None else point.paper]
        )

    def draw(panels) -> None:
        _draw_points(panels[0], experiment, rows, series, by_key, reference)

    title = _plot_title(experiment, results)
    return Rendered(
        markdown, csv_rows, {f"{experiment.name}.png": lambda: _png(draw, (7, 4.5), title)}
    )


def _csv_stats(stats: tuple[float, float | None]) -> list:
    mean, std = stats
    return [round(mean, 4), "" if std is None else round(std, 4)]


def _draw_points(axes, experiment, rows, series, by_key, reference) -> None:
    x = np.arange(len(rows), dtype=float)
    width = 0.8 / len(series)
    paper_label = "paper"
    for index, name in enumerate(series):
        points = [by_key.get((row, name)) for row in rows]
        stats = [p.stats("test_clip_accuracy") if p else (math.nan, None) for p in points]
        means = [mean for mean, _ in stats]
        errors = [std or 0.0 for _, std in stats]
        if experiment.plot == "line":
            where = x
            axes.errorbar(x, means, yerr=errors, marker="o", capsize=3, label=name)
        else:
            where = x + (index - (len(series) - 1) / 2) * width
            axes.bar(where, means, width, yerr=errors, capsize=3, label=name)
        paper = [(w, p.paper) for w, p in zip(where, points) if p and p.paper is not None]
        if paper:
            axes.scatter(*zip(*paper), marker="D", color="black", zorder=3, label=paper_label)
            paper_label = None  # one legend entry
    if reference is not None:
        axes.axhline(reference, linestyle="--", color="gray", label="paper (its margin)")
    if experiment.plot == "bars":
        axes.set_ylim(0, 100)
    axes.set_xticks(x, rows)
    axes.set_xlabel(experiment.axis)
    axes.set_ylabel("test clip accuracy (%)")
    axes.legend(fontsize=8)


def render_curves(experiment: Experiment, results: Sequence[CellResult]) -> Rendered:
    """Per-epoch tables (one per history key, a column per series, the mean over seeds) and a
    plot with a panel per key."""
    groups = _grouped(results, lambda variant: variant.series)
    curves = {}  # (key, series) -> per-epoch mean
    for key, _ in experiment.curves:
        for name, group in groups.items():
            histories = [result.metrics["history"].get(key) or [] for result in group]
            length = max(len(history) for history in histories)
            if not length:
                continue
            padded = np.full((len(histories), length), np.nan)
            for row, history in enumerate(histories):
                padded[row, : len(history)] = [math.nan if v is None else v for v in history]
            curves[key, name] = np.nanmean(padded, axis=0)
    keys = [(key, label) for key, label in experiment.curves if any(k == key for k, _ in curves)]
    epochs = max((len(curve) for curve in curves.values()), default=0)
    markdown = ["The paper gives no values for this figure (" + NOT_REPORTED + ")."]
    if any(result.cell.config.model.head == "lsoftmax" for result in results):
        markdown += [
            "",
            "Training accuracy and loss of an L-softmax model are those of its margin logits, "
            "which the margin makes harder than the plain logits it predicts with; compare "
            "heads on validation and test accuracy.",
        ]
    for key, label in keys:
        names = [name for name in groups if (key, name) in curves]
        table = [
            [epoch + 1] + [_epoch_value(curves[key, name], epoch) for name in names]
            for epoch in range(epochs)
        ]
        markdown += ["", f"### {label} ({key}), mean over seeds", ""]
        markdown += markdown_table(["epoch", *names], table)
    columns = [(key, name) for key, _ in keys for name in groups if (key, name) in curves]
    csv_rows = [["epoch"] + [f"{name}: {key}" for key, name in columns]]
    csv_rows += [
        [epoch + 1] + [_epoch_value(curves[column], epoch) for column in columns]
        for epoch in range(epochs)
    ]

    def draw(panels) -> None:
        for axes, (key, label) in zip(panels, keys):
            for name in groups:
                if (key, name) in curves:
                    curve = curves[key, name]
                    axes.plot(np.arange(1, len(curve) + 1), curve, marker=".", label=name)
            axes.set_xlabel("epoch")
            axes.xaxis.get_major_locator().set_params(integer=True)
            axes.set_ylabel(label)
            axes.legend(fontsize=8)

    size = (5.5 * max(len(keys), 1), 4.2)
    title = _plot_title(experiment, results)
    plots = {f"{experiment.name}.png": lambda: _png(draw, size, title, panels=max(len(keys), 1))}
    return Rendered(markdown, csv_rows, plots)


def _epoch_value(curve, epoch: int) -> str:
    return f"{curve[epoch]:.4f}" if epoch < len(curve) and not math.isnan(curve[epoch]) else ""


# the paper's table of each head's confusion matrix
CONFUSION_TABLES = {"softmax": "Table 6", "lsoftmax": "Table 7"}


def render_confusion(experiment: Experiment, results: Sequence[CellResult]) -> Rendered:
    """Per head, the clip-level test confusion matrix in % of each true genre, pooled over seeds
    (the counts are summed, then divided by each row's total), and its PNG."""
    markdown = [
        "Rows: true genre, columns: predicted genre, % of the true genre's test clips. The "
        f"paper's values: {NOT_REPORTED} (lost in the text)."
    ]
    csv_rows: list[list] = []
    plots = {}
    for name, group in _grouped(results, lambda variant: variant.series).items():
        level = _pooled_confusion([result.evaluation()["clip_level"] for result in group])
        head = group[0].cell.config.model.head
        if not csv_rows:
            csv_rows.append(["model", "true genre", *level["columns"]])
        csv_rows += [
            [name, genre, *(round(value, 2) for value in row)]
            for genre, row in zip(level["rows"], level["confusion_percent"])
        ]
        heading = f"{CONFUSION_TABLES.get(head, name)}: {name}"
        markdown += ["", f"### {heading}", ""]
        markdown += confusion_table(level)
        title = f"{heading}, {_dataset(results)} test clips, {len(group)} seed(s)"
        plots[f"{experiment.name}-{head}.png"] = lambda level=level, title=title: confusion_png(
            level, title
        )
    return Rendered(markdown, csv_rows, plots)


def _pooled_confusion(levels: Sequence[dict]) -> dict:
    """The confusion matrix of several cells' `scores.level_report`s: their counts summed."""
    rows, columns = levels[0]["rows"], levels[0]["columns"]
    if any(level["rows"] != rows or level["columns"] != columns for level in levels):
        raise ValueError("the cells' test splits hold different genres; they cannot be pooled")
    counts = sum(np.asarray(level["confusion_counts"], dtype=float) for level in levels)
    return {"rows": rows, "columns": columns, "confusion_percent": row_percent(counts).tolist()}


RENDERERS = {"points": render_points, "curves": render_curves, "confusion": render_confusion}


def _plot_title(experiment: Experiment, results: Sequence[CellResult]) -> str:
    return f"{experiment.title} ({experiment.paper}), {_dataset(results)}"


def _png(draw: Callable, size: tuple[float, float], title: str, panels: int = 1) -> bytes:
    """Calls `draw(axes)` with a row of `panels` axes and returns the PNG (`reporting.figure_png`)."""
    return figure_png(
        lambda figure: draw(figure.subplots(1, panels, squeeze=False)[0]), size, title
    )


def write_results(
    experiment: Experiment, results: Sequence[CellResult], sweep_dir: str | Path
) -> list[Path]:
    """Writes SWEEP_DIR/<experiment>.md, .csv and its PNG(s); returns the paths written. Without
    matplotlib the PNGs are left out with a warning."""
    sweep_dir = Path(sweep_dir)
    rendered = RENDERERS[experiment.kind](experiment, results)
    markdown = sweep_dir / f"{experiment.name}.md"
    table = sweep_dir / f"{experiment.name}.csv"
    atomic_write(markdown, _document(experiment, results, sweep_dir, rendered).encode("utf-8"))
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rendered.csv_rows)
    atomic_write(table, buffer.getvalue().encode("utf-8"))
    paths = [markdown, table]
    return paths + write_pngs(sweep_dir, rendered.plots, written=paths)


def _document(
    experiment: Experiment, results: Sequence[CellResult], sweep_dir: Path, rendered: Rendered
) -> str:
    """The markdown file: what the paper found, how we ran it, the results, then every cell."""
    config = results[0].cell.config
    seeds = sorted({result.cell.seed for result in results})
    lines = [
        f"# {experiment.title} ({experiment.paper}), {config.data.name}",
        "",
        f"**Paper** ({experiment.paper}): {FINDINGS[experiment.paper]}",
        "",
        f"**Ours**: `musicnext-tf sweep {experiment.name}`, {_count(len(results), 'run')} of "
        f"{_count(config.train.epochs, 'epoch')}, seed(s) {', '.join(map(str, seeds))}. Accuracies in % "
        "on the test split, mean ± standard deviation over seeds where there are several; clip "
        "accuracy averages the probabilities of a clip's segments (the paper does not say "
        "whether it reports clips or segments).",
        "",
        *rendered.markdown,
        "",
        "## Cells",
        "",
    ]
    cells = [
        [
            f"`{result.cell.name}`",
            result.cell.variant.series,
            result.cell.variant.row,
            result.cell.seed,
            f"{result.percent('test_clip_accuracy'):.2f}",
            f"{result.percent('test_segment_accuracy'):.2f}",
            f"{result.metrics['test_loss']:.4f}",
            result.metrics["epochs_completed"],
            result.metrics.get("train_seconds", ""),
        ]
        for result in results
    ]
    header = ["cell", "series", experiment.axis, "seed", "clip %", "segment %", "test loss"]
    lines += markdown_table(header + ["epochs", "training s"], cells)
    lines += [
        "",
        "Hyperparameters and test metrics of every cell, side by side: "
        f"`tensorboard --logdir {sweep_dir / CELLS}` (HPARAMS tab).",
    ]
    return "\n".join(lines) + "\n"


def _count(number: int, noun: str) -> str:
    """`1 epoch`, `2 epochs`."""
    return f"{number} {noun}{'' if number == 1 else 's'}"
