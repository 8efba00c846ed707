"""`musicnext-tf sweep`: every named experiment of the paper's ablations runs its grid on the demo
data and writes its table, CSV and plot; the paper's numbers stand beside ours; finished cells are
reused (also across experiments) and an interrupted cell is completed."""

from __future__ import annotations

import csv
import json
import logging
import shutil
import sys
from pathlib import Path

import keras
import pytest

from musicnext_tf import cli, train
from musicnext_tf.config import ConfigError
from musicnext_tf.paper_results import MUSICNEXT_ACCURACY, NOT_REPORTED
from musicnext_tf.sweep import run_experiment
from musicnext_tf.sweep_plan import EXPERIMENTS, plan
from musicnext_tf.sweep_report import CellResult, write_results

EPOCHS = 2
# the demo set with 7 clips of 3 s per genre (2 test and 1 validation clip per genre; 42 clips,
# under the 48 from which features are computed in worker processes) and a tiny network as
# tests/helpers.py's TINY_OVERRIDES; all cells share one feature cache
CONFIG = """\
[data]
name = "demo"
cache_dir = "{cache}"
options = {{ clips_per_genre = 7, seconds = 3.0 }}
[audio]
clip_seconds = 3.0
min_seconds = 1.0
[features]
n_fft = 512
n_mels = 32
segment_frames = 64
segments_per_clip = 4
[model]
depths = [1, 1]
widths = [8, 16]
margin = 2
[train]
epochs = {epochs}
batch_size = 8
learning_rate = 3e-3
"""

# experiment -> (--values, how many of its cells the earlier ones in this order have not trained)
DEMO_GRID = {
    "heads": (["musicnext", "resnet"], 4),
    "margin": (["1", "2"], 1),  # m2 is MusicNeXt with L-softmax of `heads`
    "stacking": (["1:1"], 0),  # the tiny network's own ratio: the two MusicNeXt cells
    "accuracy-curves": (None, 0),
    "loss-curves": (["musicnext", "musicnext-softmax"], 0),
    "confusion": (None, 0),
}


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="") as handle:
        return list(csv.reader(handle))


@pytest.fixture(scope="module")
def demo_sweep(tmp_path_factory):
    """Every experiment run in one sweep folder on the demo set: (config file, sweep folder,
    {experiment: (paths, counts)}). About 30 s on 2 cores."""
    root = tmp_path_factory.mktemp("sweep")
    config = root / "tiny.toml"
    config.write_text(CONFIG.format(cache=root / "cache", epochs=EPOCHS))
    outcomes = {
        name: run_experiment(
            name, None, config, None, root / "sweep", values, progress=False, say=lambda _: None
        )
        for name, (values, _) in DEMO_GRID.items()
    }
    return config, root / "sweep", outcomes


def test_each_experiment_runs_its_grid_on_demo_data_and_writes_table_csv_and_plot(demo_sweep):
    config, sweep_dir, outcomes = demo_sweep
    for name, (values, new_cells) in DEMO_GRID.items():
        paths, counts = outcomes[name]
        grid = plan(EXPERIMENTS[name], None, config, None, sweep_dir, values)
        assert counts == {"started": new_cells, "resumed": 0, "reused": len(grid) - new_cells}
        names = {path.name for path in paths}
        pngs = (
            {f"{name}-softmax.png", f"{name}-lsoftmax.png"}
            if name == "confusion"
            else {f"{name}.png"}
        )
        assert names == {f"{name}.md", f"{name}.csv"} | pngs, name
        for png in pngs:
            assert (sweep_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        markdown = (sweep_dir / f"{name}.md").read_text()
        assert EXPERIMENTS[name].paper in markdown and NOT_REPORTED in markdown
        assert "tensorboard --logdir" in markdown
    cell_dirs = sorted((sweep_dir / "cells").iterdir())
    assert len(cell_dirs) == 5 and all(train.is_finished(cell) for cell in cell_dirs)
    assert not any((cell / "export").exists() for cell in cell_dirs)


def cell_metrics(sweep_dir: Path, prefix: str) -> dict:
    (cell,) = (sweep_dir / "cells").glob(f"{prefix}-seed0-*")
    return json.loads((cell / "metrics.json").read_text())


def test_heads_table_holds_every_network_and_head_with_the_cells_accuracies(demo_sweep):
    _, sweep_dir, _ = demo_sweep
    rows = read_csv(sweep_dir / "heads.csv")
    assert rows[0][:4] == ["network", "series", "seeds", "clip_accuracy_pct"]
    assert rows[0][-1] == "paper_accuracy_pct"
    assert [row[:2] for row in rows[1:]] == [
        ["MusicNeXt", "softmax"],
        ["MusicNeXt", "L-softmax"],
        ["ResNet-50", "softmax"],
        ["ResNet-50", "L-softmax"],
    ]
    prefixes = ["musicnext-softmax-1.1", "musicnext-lsoftmax-m2-1.1"]
    prefixes += ["resnet-softmax-1.1", "resnet-lsoftmax-m2-1.1"]
    for row, prefix in zip(rows[1:], prefixes):
        metrics = cell_metrics(sweep_dir, prefix)
        assert float(row[3]) == pytest.approx(100 * metrics["test_clip_accuracy"], abs=1e-3)
        assert float(row[5]) == pytest.approx(100 * metrics["test_segment_accuracy"], abs=1e-3)
        assert row[-1] == NOT_REPORTED  # the paper has no demo set
    header = (sweep_dir / "heads.md").read_text().splitlines()
    assert any(line.startswith("| network | softmax clip % |") for line in header)


def test_curve_and_confusion_tables_have_the_papers_layout(demo_sweep):
    _, sweep_dir, _ = demo_sweep
    accuracy = read_csv(sweep_dir / "accuracy-curves.csv")
    assert accuracy[0] == [
        "epoch",
        "MusicNeXt-S: accuracy",
        "MusicNeXt: accuracy",
        "MusicNeXt-S: val_clip_accuracy",
        "MusicNeXt: val_clip_accuracy",
    ]
    assert [row[0] for row in accuracy[1:]] == [str(epoch) for epoch in range(1, EPOCHS + 1)]
    history = cell_metrics(sweep_dir, "musicnext-lsoftmax-m2-1.1")["history"]
    assert [float(row[2]) for row in accuracy[1:]] == pytest.approx(history["accuracy"], abs=1e-4)
    loss = read_csv(sweep_dir / "loss-curves.csv")
    assert loss[0] == ["epoch", "MusicNeXt: loss", "MusicNeXt-S: loss"]
    assert [float(row[1]) for row in loss[1:]] == pytest.approx(history["loss"], abs=1e-4)

    confusion = read_csv(sweep_dir / "confusion.csv")
    genres = ["ambient", "electronic", "folk", "jazz", "reggae", "rock"]
    assert confusion[0] == ["model", "true genre", *genres]
    assert [row[:2] for row in confusion[1:]] == [
        [model, genre] for model in ("MusicNeXt-S", "MusicNeXt") for genre in genres
    ]
    for row in confusion[1:]:
        assert sum(map(float, row[2:])) == pytest.approx(100.0, abs=0.05)
    # the diagonal agrees with the cell's clip accuracy (2 test clips per genre)
    diagonal = [float(row[2 + index]) for index, row in enumerate(confusion[7:])]
    lsoftmax = cell_metrics(sweep_dir, "musicnext-lsoftmax-m2-1.1")["test_clip_accuracy"]
    assert sum(diagonal) / len(genres) == pytest.approx(100 * lsoftmax, abs=0.05)
    markdown = (sweep_dir / "confusion.md").read_text()
    assert "### Table 6: MusicNeXt-S" in markdown and "### Table 7: MusicNeXt" in markdown


class InterruptAtEpoch(keras.callbacks.Callback):
    """Ctrl-C when the given epoch (0-based) begins: the earlier epochs' checkpoints are kept."""

    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt


def test_rerun_trains_nothing_finished_and_completes_an_interrupted_cell(demo_sweep, tmp_path):
    config, shared_dir, _ = demo_sweep
    sweep_dir = tmp_path / "sweep"
    shutil.copytree(shared_dir, sweep_dir)  # leaves the shared sweep as the other tests expect
    cells = plan(EXPERIMENTS["margin"], None, config, None, sweep_dir, ["1", "2", "3"])
    interrupted = cells[2]
    with pytest.raises(KeyboardInterrupt):
        train.fit(interrupted.config, interrupted.run_dir, False, callbacks=[InterruptAtEpoch(1)])
    assert not train.is_finished(interrupted.run_dir)
    finished = {
        cell.run_dir: (cell.run_dir / "metrics.json").stat().st_mtime_ns for cell in cells[:2]
    }

    paths, counts = run_experiment(
        "margin", None, config, None, sweep_dir, ["1", "2", "3"], progress=False, say=print
    )
    assert counts == {"started": 0, "resumed": 1, "reused": 2}
    for run_dir, mtime in finished.items():
        assert (run_dir / "metrics.json").stat().st_mtime_ns == mtime
    metrics = json.loads((interrupted.run_dir / "metrics.json").read_text())
    assert (metrics["epochs_completed"], metrics["sessions"]) == (EPOCHS, 2)
    rows = read_csv(sweep_dir / "margin.csv")
    assert [row[0] for row in rows[1:]] == ["1", "2", "3"]

    _, counts = run_experiment(
        "margin", None, config, None, sweep_dir, ["1", "2", "3"], progress=False, say=print
    )
    assert counts == {"started": 0, "resumed": 0, "reused": 3}


def test_cells_log_their_test_metrics_for_tensorboards_hparams_table(demo_sweep):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util.tensor_util import make_ndarray

    _, sweep_dir, _ = demo_sweep
    (cell,) = (sweep_dir / "cells").glob("resnet-softmax-*")
    metrics = json.loads((cell / "metrics.json").read_text())
    events = EventAccumulator(str(cell / "logs"))
    events.Reload()
    for key in ("test_clip_accuracy", "test_segment_accuracy", "test_loss"):
        (event,) = events.Tensors(key)
        assert event.step == EPOCHS
        assert float(make_ndarray(event.tensor_proto)) == pytest.approx(metrics[key], rel=1e-6)


def test_cli_sweep_reuses_the_cells_and_reports_bad_values(demo_sweep, capsys):
    config, sweep_dir, _ = demo_sweep
    args = ["sweep", "confusion", "--config", str(config), "--sweep-dir", str(sweep_dir)]
    assert cli.main(args + ["--quiet"]) == 0
    out = capsys.readouterr().out
    assert "0 cell(s) trained, 0 continued, 2 reused" in out
    assert str(sweep_dir / "confusion.md") in out

    assert cli.main(["sweep", "margin", "--config", str(config), "--values", "2", "x"]) == 2
    assert "--values: margin 'x' is not an integer >= 1" in capsys.readouterr().err


def test_help_lists_the_experiments_and_their_default_grids(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["sweep", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for experiment in EXPERIMENTS.values():
        assert experiment.name in out and experiment.paper in out
        assert "default: " + " ".join(experiment.defaults) in out


def test_default_grids_match_the_papers_experiments():
    def grid(name, values=None, seeds=(0,)):
        cells = plan(EXPERIMENTS[name], "gtzan", None, None, "sweeps", values, seeds)
        return [(cell.config.model, cell.seed) for cell in cells]

    margins = grid("margin")
    assert [model.margin for model, _ in margins] == [1, 2, 3, 4, 5, 6]
    assert {(model.architecture, model.head) for model, _ in margins} == {("musicnext", "lsoftmax")}
    stacking = grid("stacking")
    assert [(model.depths[2], model.head) for model, _ in stacking] == [
        (blocks, head) for blocks in (3, 6, 9, 12) for head in ("softmax", "lsoftmax")
    ]
    heads = grid("heads", seeds=(0, 1))
    assert len(heads) == 12 and {seed for _, seed in heads} == {0, 1}
    # each network keeps its own standard sizes (ResNet-50: 3:4:6:3)
    assert {(m.architecture, tuple(m.depths)) for m, _ in heads} == {
        ("musicnext", (3, 3, 9, 3)),
        ("convnext", (3, 3, 9, 3)),
        ("resnet", (3, 4, 6, 3)),
    }
    assert [(m.architecture, m.head) for m, _ in grid("loss-curves")] == [
        ("musicnext", "lsoftmax"),
        ("musicnext", "softmax"),
        ("convnext", "softmax"),
        ("resnet", "softmax"),
    ]
    assert [m.head for m, _ in grid("confusion")] == ["softmax", "lsoftmax"]
    assert [m.head for m, _ in grid("loss-curves", ["resnet-lsoftmax"])] == ["lsoftmax"]


def test_cell_names_say_what_varies_and_change_with_any_setting():
    def names(epochs=None, data_dir=None, strategy=None):
        overrides = {
            "train": {"epochs": epochs, "strategy": strategy},
            "data": {"data_dir": data_dir},
        }
        cells = plan(EXPERIMENTS["margin"], "gtzan", None, overrides, "sweeps", ["2", "4"])
        return [cell.name for cell in cells]

    default = names()
    assert [name.rsplit("-", 1)[0] for name in default] == [
        "musicnext-lsoftmax-m2-3.3.9.3-seed0",
        "musicnext-lsoftmax-m4-3.3.9.3-seed0",
    ]
    assert names(data_dir="/elsewhere/gtzan") == default  # where the data lives is no setting
    assert names(strategy="multi-worker") == default  # nor where the run trains
    changed = names(epochs=3)
    assert [n.rsplit("-", 1)[0] for n in changed] == [n.rsplit("-", 1)[0] for n in default]
    assert not set(changed) & set(default)


@pytest.mark.parametrize(
    ("name", "values", "message"),
    [
        ("margin", ["0"], "margin '0' is not an integer >= 1"),
        ("stacking", ["3:0:9:3"], "stacking ratio '3:0:9:3' is not a list of block counts"),
        ("heads", ["vgg"], "'vgg' is not a network"),
        ("loss-curves", ["convnext-arcface"], "'arcface' is not a head"),
        ("confusion", ["softmax", "softmax"], "lists a grid point twice"),
    ],
)
def test_bad_values_are_errors_that_name_the_option(name, values, message):
    with pytest.raises(ConfigError) as error:
        plan(EXPERIMENTS[name], "gtzan", None, None, "sweeps", values)
    assert str(error.value).startswith("--values") and message in str(error.value)


def fake_results(name: str, dataset: str, values, clip_accuracies) -> list[CellResult]:
    """Cells of a paper dataset with made-up metrics, two seeds per grid point."""
    cells = plan(EXPERIMENTS[name], dataset, None, None, "sweeps", values, seeds=(0, 1))
    return [
        CellResult(
            cell,
            {
                "test_clip_accuracy": accuracy,
                "test_segment_accuracy": accuracy - 0.1,
                "test_loss": 0.5,
                "epochs_completed": 50,
                "history": {"loss": [1.0, 0.5]},
            },
        )
        for cell, accuracy in zip(cells, clip_accuracies)
    ]


def test_the_papers_accuracies_stand_beside_ours_where_it_reports_them(tmp_path):
    results = fake_results("heads", "gtzan", ["musicnext", "resnet"], [0.8, 0.82, 0.9, 0.94] * 2)
    write_results(EXPERIMENTS["heads"], results, tmp_path)
    rows = read_csv(tmp_path / "heads.csv")
    # mean and sample standard deviation over the two seeds: (80, 82) and (90, 94)
    assert rows[1][:5] == ["MusicNeXt", "softmax", "2", "81.0", "1.4142"]
    assert rows[2][:5] == ["MusicNeXt", "L-softmax", "2", "92.0", "2.8284"]
    assert [row[-1] for row in rows[1:]] == [NOT_REPORTED, "92.45"] + [NOT_REPORTED] * 2
    table = (tmp_path / "heads.md").read_text()
    assert "| MusicNeXt | 81.00 ± 1.41 | 71.00 ± 1.41 | not reported | 92.00 ± 2.83 |" in table
    assert "| 92.45 |" in table

    stacking = fake_results("stacking", "ismir2004", ["3:3:6:3", "3:3:9:3"], [0.7] * 8)
    write_results(EXPERIMENTS["stacking"], stacking, tmp_path)
    paper = {(row[0], row[1]): row[-1] for row in read_csv(tmp_path / "stacking.csv")[1:]}
    assert paper == {
        ("3:3:6:3", "MusicNeXt-S"): NOT_REPORTED,
        ("3:3:6:3", "MusicNeXt"): NOT_REPORTED,
        ("3:3:9:3", "MusicNeXt-S"): NOT_REPORTED,
        ("3:3:9:3", "MusicNeXt"): "92.13",
    }
    margin = fake_results("margin", "extended_ballroom", ["2", "4"], [0.9] * 4)
    write_results(EXPERIMENTS["margin"], margin, tmp_path)
    assert {row[-1] for row in read_csv(tmp_path / "margin.csv")[1:]} == {NOT_REPORTED}
    assert (
        f"reaches {MUSICNEXT_ACCURACY['extended_ballroom']:.2f} %"
        in (tmp_path / "margin.md").read_text()
    )


def test_without_matplotlib_the_tables_are_written_and_the_plot_is_explained(
    tmp_path, monkeypatch, caplog
):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now fails
    results = fake_results("loss-curves", "gtzan", ["musicnext"], [0.9, 0.9])
    with caplog.at_level(logging.WARNING):
        paths = write_results(EXPERIMENTS["loss-curves"], results, tmp_path)
    assert [path.name for path in paths] == ["loss-curves.md", "loss-curves.csv"]
    assert not (tmp_path / "loss-curves.png").exists()
    assert "reinstall musicnext-tf" in caplog.text


def test_cli_ctrl_c_says_where_the_cells_are_and_how_to_continue(tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("musicnext_tf.sweep.run_experiment", interrupted)
    assert cli.main(["sweep", "heads", "--data", "demo", "--sweep-dir", str(tmp_path)]) == 130
    err = capsys.readouterr().err
    assert f"finished cells are kept in {tmp_path / 'cells'}" in err
    assert "run the same command again to continue" in err


def test_experiments_on_one_dataset_share_their_common_cells():
    def names(name, values=None):
        return {cell.name for cell in plan(EXPERIMENTS[name], "gtzan", None, None, "s", values)}

    heads = names("heads")
    assert names("accuracy-curves") | names("loss-curves") | names("confusion") <= heads
    assert names("stacking", ["3:3:9:3"]) <= heads and names("margin", ["4"]) <= heads
    assert len(heads | names("margin") | names("stacking")) == 17  # as docs/reproducing.md says
