"""Sweeps that reproduce the paper's ablations: a grid of runs, then a table, a CSV and plots.

Each named experiment (`EXPERIMENTS`) turns a list of values (its default grid, or `--values`)
and a list of seeds into cells, one training run each, in

    SWEEP_DIR/cells/<cell>/               a run folder of `train.fit` (no SavedModel export)
    SWEEP_DIR/<experiment>.md             the results in the layout of the paper's figure or
                                          table, the paper's numbers beside ours, and every cell
    SWEEP_DIR/<experiment>.csv            the same numbers, one row per grid point or epoch
    SWEEP_DIR/<experiment>.png            the figure (confusion: one PNG per head); needs
                                          matplotlib, the `plots` extra

A cell's name says what it varies and ends in a digest of its whole config (without the data and
cache folders), e.g. `musicnext-lsoftmax-m4-3.3.9.3-seed0-1a2b3c4d`: experiments run in the same
sweep folder share the cells they have in common (the table 5 grid holds those of figures 4 and 8
and tables 6-7), and a changed setting (say `--epochs`) gives new cells instead of mixing results.
A finished cell is never trained again, an interrupted one continues where it stopped
(`train.resume`), so an interrupted sweep continues when the same command is run again.

Every cell logs its hyperparameters and its final results to TensorBoard (`monitor`), so
`tensorboard --logdir SWEEP_DIR/cells` compares all cells in one hparams table.

This module imports no TensorFlow until a sweep runs, so `musicnext-tf sweep --help` stays fast.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from musicnext_tf.config import (
    ARCHITECTURES,
    ConfigError,
    ExperimentConfig,
    merge,
    parse_stacking_ratio,
    resolve,
)
from musicnext_tf.files import atomic_write
from musicnext_tf.paper_results import FINDINGS, NOT_REPORTED, paper_accuracy

CELLS = "cells"
HEADS = ("softmax", "lsoftmax")  # tables read softmax -> L-softmax, as the ablation
ARCHITECTURE_LABELS = {"musicnext": "MusicNeXt", "convnext": "ConvNeXt-T", "resnet": "ResNet-50"}
HEAD_LABELS = {"lsoftmax": "L-softmax", "softmax": "softmax"}
log = logging.getLogger(__name__)


def model_label(architecture: str, head: str) -> str:
    """The paper's names: MusicNeXt (L-softmax), MusicNeXt-S (softmax), ConvNeXt-T (softmax)..."""
    if architecture == "musicnext":
        return "MusicNeXt" if head == "lsoftmax" else "MusicNeXt-S"
    return f"{ARCHITECTURE_LABELS[architecture]} ({HEAD_LABELS[head]})"


@dataclass(frozen=True)
class Variant:
    """One point of an experiment's grid, before seeds: a row of its table (or a value on its
    x axis), the series (column, bar or line) it belongs to, and its [model] settings."""

    row: str
    series: str
    model: dict


@dataclass(frozen=True)
class Experiment:
    """A named experiment: what `--values` lists and how each value becomes variants.

    kind: "points" (one accuracy per variant: a table and a bar or line chart), "curves" (a
    per-epoch history: `curves` names the history keys and their axis labels) or "confusion"
    (the test confusion matrix of each variant).
    """

    name: str
    paper: str  # the figure or table it reproduces, a key of paper_results.FINDINGS
    title: str
    kind: str
    axis: str  # what --values lists
    values_help: str
    defaults: tuple[str, ...]
    variants: Callable[[Sequence[str]], list[Variant]]
    plot: str = "bars"  # points: "bars" or "line"
    curves: tuple[tuple[str, str], ...] = ()
    paper_points: bool = True  # whether the paper's accuracy of its model goes beside ours


def _choice(value: str, choices: Sequence[str], what: str) -> str:
    if value not in choices:
        raise ConfigError(f"--values: {value!r} is not a {what}; choose from {list(choices)}")
    return value


def _margin(value: str) -> int:
    try:
        margin = int(value)
    except ValueError:
        margin = 0
    if margin < 1:
        raise ConfigError(f"--values: margin {value!r} is not an integer >= 1 (e.g. 1 2 3 4)")
    return margin


def _depths(value: str) -> list[int]:
    try:
        return parse_stacking_ratio(value)
    except ConfigError as error:
        raise ConfigError(f"--values: {error}") from None


def _model_token(value: str) -> tuple[str, str]:
    """`convnext` -> (convnext, softmax); `musicnext` -> (musicnext, lsoftmax);
    `ARCH-HEAD` names the head."""
    architecture, _, head = value.partition("-")
    _choice(architecture, ARCHITECTURES, "network (NETWORK or NETWORK-HEAD)")
    head = head or ("lsoftmax" if architecture == "musicnext" else "softmax")
    return architecture, _choice(head, HEADS, "head (NETWORK-HEAD)")


def _margin_variants(values: Sequence[str]) -> list[Variant]:
    return [
        Variant(str(m), "MusicNeXt", {"architecture": "musicnext", "head": "lsoftmax", "margin": m})
        for m in map(_margin, values)
    ]


def _stacking_variants(values: Sequence[str]) -> list[Variant]:
    return [
        Variant(
            value,
            model_label("musicnext", head),
            {"architecture": "musicnext", "head": head, "depths": _depths(value)},
        )
        for value in values
        for head in HEADS
    ]


def _head_variants(values: Sequence[str]) -> list[Variant]:
    return [
        Variant(ARCHITECTURE_LABELS[a], HEAD_LABELS[head], {"architecture": a, "head": head})
        for a in (_choice(value, ARCHITECTURES, "network") for value in values)
        for head in HEADS
    ]


def _musicnext_head_variants(values: Sequence[str]) -> list[Variant]:
    return [
        Variant(head, model_label("musicnext", head), {"architecture": "musicnext", "head": head})
        for head in (_choice(value, HEADS, "head") for value in values)
    ]


def _network_variants(values: Sequence[str]) -> list[Variant]:
    return [
        Variant(value, model_label(a, head), {"architecture": a, "head": head})
        for value in values
        for a, head in [_model_token(value)]
    ]


EXPERIMENTS = {
    experiment.name: experiment
    for experiment in (
        Experiment(
            name="margin",
            paper="figure 5",
            title="Accuracy of MusicNeXt under different angular margins",
            kind="points",
            axis="margin m",
            values_help="L-softmax margins m (integers >= 1)",
            defaults=("1", "2", "3", "4", "5", "6"),
            variants=_margin_variants,
            plot="line",
            paper_points=False,
        ),
        Experiment(
            name="stacking",
            paper="figure 7",
            title="Stacking ratios of MusicNeXt and MusicNeXt with softmax",
            kind="points",
            axis="stacking ratio",
            values_help="stacking ratios N:N:N:N (one count per stage), each with both heads",
            defaults=("3:3:3:3", "3:3:6:3", "3:3:9:3", "3:3:12:3"),
            variants=_stacking_variants,
        ),
        Experiment(
            name="heads",
            paper="table 5",
            title="Softmax vs L-softmax for MusicNeXt and the baselines",
            kind="points",
            axis="network",
            values_help=f"networks ({', '.join(ARCHITECTURES)}), each with both heads",
            defaults=ARCHITECTURES,
            variants=_head_variants,
        ),
        Experiment(
            name="accuracy-curves",
            paper="figure 4",
            title="Accuracy of MusicNeXt with softmax and L-softmax per epoch",
            kind="curves",
            axis="head",
            values_help=f"heads of MusicNeXt ({', '.join(HEADS)})",
            defaults=HEADS,
            variants=_musicnext_head_variants,
            curves=(
                ("accuracy", "training accuracy (segments)"),
                ("val_clip_accuracy", "validation accuracy (clips)"),
            ),
        ),
        Experiment(
            name="loss-curves",
            paper="figure 8",
            title="Training loss of MusicNeXt and the baselines per epoch",
            kind="curves",
            axis="network",
            values_help="networks as NETWORK or NETWORK-HEAD (musicnext: L-softmax, baselines: "
            "softmax unless named)",
            defaults=("musicnext", "musicnext-softmax", "convnext", "resnet"),
            variants=_network_variants,
            curves=(("loss", "training loss"),),
        ),
        Experiment(
            name="confusion",
            paper="tables 6-7",
            title="Confusion matrices (%) of MusicNeXt with softmax and with L-softmax",
            kind="confusion",
            axis="head",
            values_help=f"heads of MusicNeXt ({', '.join(HEADS)})",
            defaults=HEADS,
            variants=_musicnext_head_variants,
        ),
    )
}


def experiment_named(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise ConfigError(f"no experiment named {name!r}; choose one of {list(EXPERIMENTS)}")
    return EXPERIMENTS[name]


def experiments_help() -> str:
    """The experiments, what they reproduce, what `--values` lists and their default grids."""
    lines = ["experiments (EXPERIMENT: the paper's figure or table; --values; default grid):"]
    for experiment in EXPERIMENTS.values():
        lines += [
            f"  {experiment.name:<16} {experiment.paper}: {experiment.title}",
            f"  {'':<16} --values: {experiment.values_help}",
            f"  {'':<16} default: {' '.join(experiment.defaults)}",
        ]
    return "\n".join(lines)


@dataclass(frozen=True)
class Cell:
    """One training run of a sweep: a variant with a seed, its resolved config and run folder."""

    variant: Variant
    seed: int
    config: ExperimentConfig
    run_dir: Path

    @property
    def name(self) -> str:
        return self.run_dir.name


def config_digest(config: ExperimentConfig) -> str:
    """8 hex digits identifying every setting of a run except where its data and cache live and
    where it trains (strategy, tf.data service: the same training on other hardware)."""
    values = config.to_dict()
    values["data"] = {k: v for k, v in values["data"].items() if k not in ("data_dir", "cache_dir")}
    values["train"] = {
        k: v for k, v in values["train"].items() if k not in ("strategy", "data_service")
    }
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode("utf-8")).hexdigest()[:8]


def cell_name(config: ExperimentConfig) -> str:
    """`<network>-<head>[-m<margin>]-<depths>-seed<seed>-<config digest>`."""
    model = config.model
    margin = f"-m{model.margin}" if model.head == "lsoftmax" else ""
    depths = ".".join(str(depth) for depth in model.depths)
    return (
        f"{model.architecture}-{model.head}{margin}-{depths}-seed{config.train.seed}-"
        f"{config_digest(config)}"
    )


def plan(
    experiment: Experiment,
    data: str | None,
    config_file: str | Path | None,
    overrides: dict | None,
    sweep_dir: str | Path,
    values: Sequence[str] | None = None,
    seeds: Sequence[int] = (0,),
) -> list[Cell]:
    """The cells of an experiment's grid (`values`, else its defaults) times `seeds`.

    Each cell's config is resolved like `fit`'s: the dataset's preset, then `config_file`, then
    `overrides` ({section: {key: value}}), then the variant's [model] settings and the seed. The
    seed changes initialisation, data order and augmentation; the split stays [data] split_seed,
    so every cell is tested on the same clips.
    """
    variants = experiment.variants(list(values) if values else experiment.defaults)
    if len(set(seeds)) != len(seeds) or not seeds:
        raise ConfigError(f"seeds {list(seeds)}: give at least one, each once")
    cells = []
    for variant in variants:
        for seed in seeds:
            cell_overrides = merge(
                overrides or {}, {"model": variant.model, "train": {"seed": seed}}
            )
            config = resolve(data, config_file, cell_overrides)
            cells.append(Cell(variant, seed, config, Path(sweep_dir) / CELLS / cell_name(config)))
    names = [cell.name for cell in cells]
    if len(set(names)) != len(names):
        raise ConfigError(f"--values {list(values or [])} lists a grid point twice")
    return cells


def run_cells(
    cells: Sequence[Cell],
    progress: bool = True,
    strict: bool = False,
    say: Callable[[str], None] = print,
) -> tuple[list[dict], dict[str, int]]:
    """Trains the cells that have not finished: a new one with `fit`, an interrupted one with
    `resume`; a finished one is read, not trained. No SavedModel is exported.

    Returns:
        (each cell's metrics.json, counts of the cells "started", "resumed" and "reused").
    """
    from musicnext_tf import train
    from musicnext_tf.monitor import write_final_results

    counts = {"started": 0, "resumed": 0, "reused": 0}
    all_metrics = []
    for number, cell in enumerate(cells, 1):
        where = f"[{number}/{len(cells)}] {cell.name} ({cell.variant.series}, {cell.variant.row})"
        if train.is_finished(cell.run_dir):
            counts["reused"] += 1
            say(f"{where}: finished earlier, reused")
            metrics = json.loads((cell.run_dir / "metrics.json").read_text())
        elif (cell.run_dir / "config.json").exists():
            counts["resumed"] += 1
            say(f"{where}: continuing the interrupted run")
            metrics = train.resume(cell.run_dir, progress, strict, export_base=None)
        else:
            counts["started"] += 1
            say(f"{where}: training")
            metrics = train.fit(cell.config, cell.run_dir, progress, strict, export_base=None)
        write_final_results(cell.run_dir, metrics)  # once; `fit` does it too
        all_metrics.append(metrics)
    return all_metrics, counts


def sweep_folder(
    data: str | None, config_file: str | Path | None, overrides: dict | None, sweep_dir=None
) -> Path:
    """`sweep_dir`, else sweeps/<dataset>: shared by every experiment on a dataset, which then
    share cells."""
    if sweep_dir:
        return Path(sweep_dir)
    return Path("sweeps") / resolve(data, config_file, overrides).data.name


def run_experiment(
    name: str,
    data: str | None,
    config_file: str | Path | None = None,
    overrides: dict | None = None,
    sweep_dir: str | Path | None = None,
    values: Sequence[str] | None = None,
    seeds: Sequence[int] = (0,),
    progress: bool = True,
    strict: bool = False,
    say: Callable[[str], None] = print,
) -> tuple[list[Path], dict[str, int]]:
    """Runs an experiment's grid and writes its results (see the module docstring).

    Returns:
        (the result files written, the counts of `run_cells`).
    """
    experiment = experiment_named(name)
    sweep_dir = sweep_folder(data, config_file, overrides, sweep_dir)
    cells = plan(experiment, data, config_file, overrides, sweep_dir, values, seeds)
    all_metrics, counts = run_cells(cells, progress, strict, say)
    results = [CellResult(cell, metrics) for cell, metrics in zip(cells, all_metrics)]
    return write_results(experiment, results, sweep_dir), counts


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


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
    return lines + ["| " + " | ".join(str(value) for value in row) + " |" for row in rows]


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
    markdown = _markdown_table(header, table)
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
    import numpy as np

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
    import numpy as np

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
        markdown += _markdown_table(["epoch", *names], table)
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
    from musicnext_tf.evaluate import confusion_png

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
        table = [
            [genre, *(f"{value:.1f}" for value in row)]
            for genre, row in zip(level["rows"], level["confusion_percent"])
        ]
        heading = f"{CONFUSION_TABLES.get(head, name)}: {name}"
        markdown += ["", f"### {heading}", ""]
        markdown += _markdown_table(["true \\ predicted", *level["columns"]], table)
        title = f"{heading}, {_dataset(results)} test clips, {len(group)} seed(s)"
        plots[f"{experiment.name}-{head}.png"] = lambda level=level, title=title: confusion_png(
            level, title
        )
    return Rendered(markdown, csv_rows, plots)


def _pooled_confusion(levels: Sequence[dict]) -> dict:
    import numpy as np

    rows, columns = levels[0]["rows"], levels[0]["columns"]
    if any(level["rows"] != rows or level["columns"] != columns for level in levels):
        raise ValueError("the cells' test splits hold different genres; they cannot be pooled")
    counts = sum(np.asarray(level["confusion_counts"], dtype=float) for level in levels)
    percent = 100.0 * counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
    return {"rows": rows, "columns": columns, "confusion_percent": percent.tolist()}


RENDERERS = {"points": render_points, "curves": render_curves, "confusion": render_confusion}


def _plot_title(experiment: Experiment, results: Sequence[CellResult]) -> str:
    return f"{experiment.title} ({experiment.paper}), {_dataset(results)}"


def _png(draw: Callable, size: tuple[float, float], title: str, panels: int = 1) -> bytes:
    """Calls `draw(axes)` with a row of `panels` axes on matplotlib's Agg canvas (no pyplot
    state) and returns the PNG; raises ImportError without matplotlib."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(figure)
    draw(figure.subplots(1, panels, squeeze=False)[0])
    figure.suptitle(title, fontsize=10)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    return buffer.getvalue()


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
    for filename, draw in rendered.plots.items():
        try:
            png = draw()
        except ImportError:
            log.warning(
                "matplotlib is not installed: wrote %s and %s without the plot "
                "(reinstall musicnext-tf to get it back)",
                markdown,
                table,
            )
            break
        atomic_write(sweep_dir / filename, png)
        paths.append(sweep_dir / filename)
    return paths


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
    lines += _markdown_table(header + ["epochs", "training s"], cells)
    lines += [
        "",
        "Hyperparameters and test metrics of every cell, side by side: "
        f"`tensorboard --logdir {sweep_dir / CELLS}` (HPARAMS tab).",
    ]
    return "\n".join(lines) + "\n"


def _count(number: int, noun: str) -> str:
    """`1 epoch`, `2 epochs`."""
    return f"{number} {noun}{'' if number == 1 else 's'}"
