"""The grids of a sweep (`sweep`): the paper's ablation experiments and the cells they train.

Each named experiment (`EXPERIMENTS`) turns a list of values (its default grid, or `--values`)
and a list of seeds into cells (`plan`), one training run each, whose config is resolved like
`fit`'s and whose name says what it varies and ends in a digest of its whole config (see `sweep`).

No TensorFlow, no numpy: the command line's `sweep --help` lists the experiments from here.
"""

from __future__ import annotations

import json
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

CELLS = "cells"
HEADS = ("softmax", "lsoftmax")  # tables read softmax -> L-softmax, as the ablation
ARCHITECTURE_LABELS = {"musicnext": "MusicNeXt", "convnext": "ConvNeXt-T", "resnet": "ResNet-50"}
HEAD_LABELS = {"lsoftmax": "L-softmax", "softmax": "softmax"}


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
    import hashlib  # here: the command line imports this module and must start fast

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
