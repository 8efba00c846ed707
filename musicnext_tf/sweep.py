"""Sweeps that reproduce the paper's ablations: a grid of runs, then a table, a CSV and plots.

Each named experiment (`EXPERIMENTS`) turns a list of values (its default grid, or `--values`)
and a list of seeds into cells, one training run each, in

    SWEEP_DIR/cells/<cell>/               a run folder of `train.fit` (no SavedModel export)
    SWEEP_DIR/<experiment>.md             the results in the layout of the paper's figure or
                                          table, the paper's numbers beside ours, and every cell
    SWEEP_DIR/<experiment>.csv            the same numbers, one row per grid point or epoch
    SWEEP_DIR/<experiment>.png            the figure (confusion: one PNG per head)

This module runs the cells; `sweep_plan` defines the experiments and their cells, `sweep_report`
writes the results files.

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

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from musicnext_tf.config import resolve
from musicnext_tf.sweep_plan import (
    CELLS,
    EXPERIMENTS,
    Cell,
    experiment_named,
    experiments_help,
    plan,
)

# the command line's names: the experiments and where the cells go come from `sweep_plan`
__all__ = [
    "CELLS",
    "EXPERIMENTS",
    "experiments_help",
    "plan",
    "run_cells",
    "run_experiment",
    "sweep_folder",
]


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
    from musicnext_tf.sweep_report import CellResult, write_results

    experiment = experiment_named(name)
    sweep_dir = sweep_folder(data, config_file, overrides, sweep_dir)
    cells = plan(experiment, data, config_file, overrides, sweep_dir, values, seeds)
    all_metrics, counts = run_cells(cells, progress, strict, say)
    results = [CellResult(cell, metrics) for cell, metrics in zip(cells, all_metrics)]
    return write_results(experiment, results, sweep_dir), counts
