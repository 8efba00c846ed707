"""MusicNeXt against the built-in classical baseline on real recordings, over several splits.

`python -m benchmarks --only real-music --data-dir DIR [--folds N]` trains `fit --data folder`
with the `folder` preset's defaults on DIR (one folder per genre) once per fold. Fold k uses
split seed k and training seed k, so each fold is another track-level train/validation/test
split; each fold's run folder (`--work-dir`, default `runs/real-music/fold-K`) also scores the
classical baseline on the same test tracks (`metrics.json`). A finished fold is reused and an
interrupted one resumed, so the command can be rerun after Ctrl-C.

Reported: per fold, both test clip accuracies and the training minutes; over folds, the mean
with a 95 % confidence interval (Student's t over folds), and the paired difference MusicNeXt
minus baseline with its interval. The folds share recordings, so the intervals are optimistic
(Nadeau & Bengio 2003); the per-fold table shows the spread.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from benchmarks.results import Figure

DEFAULT_FOLDS = 5
TIME_LIMIT_MINUTES = 30.0  # CPU training per fold on 2 cores


def mean_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float]:
    """(mean, half-width of the Student-t confidence interval); half-width 0 for one value."""
    from scipy import stats

    count = len(values)
    mean = sum(values) / count
    if count < 2:
        return mean, 0.0
    spread = math.sqrt(sum((value - mean) ** 2 for value in values) / (count - 1))
    return mean, float(stats.t.ppf(0.5 + confidence / 2, count - 1) * spread / math.sqrt(count))


def train_fold(data_dir: Path, run_dir: Path, fold: int, config_file: str | None) -> dict:
    """Trains (or resumes, or reuses) one fold; returns its metrics.json."""
    from musicnext_tf import train
    from musicnext_tf.config import resolve

    if train.is_finished(run_dir):
        return json.loads((run_dir / "metrics.json").read_text())
    if (run_dir / "config.json").exists():
        return train.resume(run_dir, progress=False)
    overrides = {"data": {"data_dir": str(data_dir), "split_seed": fold}, "train": {"seed": fold}}
    config = resolve("folder", config_file, overrides)
    return train.fit(config, run_dir, progress=False)


def fold_row(fold: int, metrics: dict) -> dict:
    return {
        "fold": fold,
        "musicnext": metrics["test_clip_accuracy"],
        "baseline": metrics["baseline_clip_accuracy"],
        "test_clips": metrics["test_clips"],
        "train_minutes": round(metrics["train_seconds"] / 60.0, 2),
        "best_epoch": metrics.get("best_epoch"),
    }


def run(data_dir: str, folds: int, work_dir: str, config_file: str | None = None) -> list[Figure]:
    """Trains every fold and returns the figures; prints one line per finished fold."""
    data_dir, work_dir = Path(data_dir).expanduser().resolve(), Path(work_dir)
    rows = []
    for fold in range(folds):
        started = time.perf_counter()
        metrics = train_fold(data_dir, work_dir / f"fold-{fold}", fold, config_file)
        rows.append(fold_row(fold, metrics))
        print(
            f"  real-music fold {fold}: MusicNeXt {rows[-1]['musicnext']:.3f}, baseline "
            f"{rows[-1]['baseline']:.3f} on {rows[-1]['test_clips']} test recordings, "
            f"{rows[-1]['train_minutes']:.1f} min training ({time.perf_counter() - started:.0f} s "
            "in this call)",
            flush=True,
        )
    return figures(rows, str(data_dir))


def figures(rows: list[dict], data_dir: str) -> list[Figure]:
    """The summary figures of the folds' rows."""
    ours = [row["musicnext"] for row in rows]
    floor = [row["baseline"] for row in rows]
    difference = [a - b for a, b in zip(ours, floor)]
    details = {"data_dir": data_dir, "folds": rows}
    summary = {}
    for name, values in (("musicnext", ours), ("baseline", floor), ("difference", difference)):
        mean, half = mean_interval(values)
        summary[name] = {"mean": mean, "ci95": [mean - half, mean + half]}
    details["summary"] = summary

    def interval(name: str) -> str:
        low, high = summary[name]["ci95"]
        return f"95 % CI [{low:.3f}, {high:.3f}] over {len(rows)} folds"

    slowest = max(row["train_minutes"] for row in rows)
    return [
        Figure(
            "real-music",
            "MusicNeXt test clip accuracy (mean)",
            summary["musicnext"]["mean"],
            "",
            details=details,
            note=interval("musicnext"),
        ),
        Figure(
            "real-music",
            "classical baseline test clip accuracy (mean)",
            summary["baseline"]["mean"],
            "",
            note=interval("baseline"),
        ),
        Figure(
            "real-music",
            "MusicNeXt - baseline, paired over folds (mean)",
            summary["difference"]["mean"],
            "",
            target=0.0,
            note=interval("difference"),
        ),
        Figure(
            "real-music",
            "training minutes per fold (slowest)",
            slowest,
            "min",
            target=TIME_LIMIT_MINUTES,
            comparison="<=",
        ),
    ]
