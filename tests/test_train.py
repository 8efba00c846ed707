"""End-to-end training on tiny generated datasets: the model must really learn, and the run folder
must hold everything the README promises."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from helpers import tiny_config, write_timbre_dataset

from musicnext_tf import cli, datasets, register_keras_objects
from musicnext_tf.config import load_run_config
from musicnext_tf.evaluate import evaluate_split
from musicnext_tf.prepare import prepare
from musicnext_tf.train import fit

register_keras_objects()  # the custom classes, for load_model


@pytest.fixture(scope="module")
def timbre_root(tmp_path_factory):
    return write_timbre_dataset(tmp_path_factory.mktemp("timbres"), clips_per_class=9)


@pytest.mark.parametrize("head", ["lsoftmax", "softmax"])
def test_fit_learns_and_writes_the_run_folder(timbre_root, tmp_path, head):
    config = tiny_config(timbre_root, model={"head": head})
    metrics = fit(config, tmp_path / "run", progress=False)
    assert metrics["test_clip_accuracy"] >= 0.88  # chance is 0.33; 9 held-out clips
    assert metrics["test_segment_accuracy"] >= 0.85
    assert metrics["epochs_completed"] == 6
    assert metrics["model"] == "last" and metrics["best_epoch"] is None  # no validation split
    losses = metrics["history"]["loss"]
    assert losses[-1] < 0.5 * losses[0]
    assert load_run_config(tmp_path / "run") == config
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert {"test_segment_accuracy", "test_clip_accuracy", "test_loss", "epochs_completed"} <= set(
        written
    )
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["genres"] == ["clicks", "drone", "sweeps"] and run["clips"] == {
        "train": 18,
        "test": 9,
    }
    model = keras.saving.load_model(tmp_path / "run" / "model_last.keras")
    assert model.input_shape == (None, 64, 32, 1) and model.output_shape == (None, 3)
    assert not (tmp_path / "run" / "model_best.keras").exists()
    if head == "lsoftmax":
        assert "lsoftmax_lambda" in metrics["history"]
        lambdas = metrics["history"]["lsoftmax_lambda"]
        assert lambdas[0] > lambdas[-1] > 0  # annealing towards the full margin
        assert run["anneal_steps"] == 6 * run["steps_per_epoch"]


def test_same_seed_same_numbers_other_seed_other_numbers(timbre_root, tmp_path):
    config = tiny_config(timbre_root, train={"epochs": 2})
    first = fit(config, tmp_path / "a", progress=False)
    second = fit(config, tmp_path / "b", progress=False)
    other = fit(
        tiny_config(timbre_root, train={"epochs": 2, "seed": 1}), tmp_path / "c", progress=False
    )
    # Same machine, same seed: identical data order, augmentation and initialisation. Measured
    # bitwise identical (max |difference| 0.0, in one process and between processes), so the
    # tolerance is zero.
    assert first["history"]["loss"] == second["history"]["loss"]
    assert first["test_loss"] == second["test_loss"]
    weights = [
        keras.saving.load_model(tmp_path / name / "model_last.keras").get_weights()
        for name in "abc"
    ]
    assert all(np.array_equal(a, b) for a, b in zip(weights[0], weights[1]))
    assert not all(np.array_equal(a, c) for a, c in zip(weights[0], weights[2]))
    assert first["history"]["loss"] != other["history"]["loss"]


def test_best_model_is_the_best_validation_epoch(timbre_root, tmp_path):
    config = tiny_config(
        timbre_root, train={"epochs": 4, "learning_rate": 1e-3}, data={"validation_fraction": 0.2}
    )
    metrics = fit(config, tmp_path / "run", progress=False)
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["clips"] == {"train": 12, "validation": 6, "test": 9}
    history = metrics["history"]
    accuracy, loss = history["val_clip_accuracy"], history["val_loss"]
    # highest validation clip accuracy, ties to the lower validation loss
    expected = max(range(4), key=lambda i: (accuracy[i], -loss[i])) + 1
    assert metrics["model"] == "best" and metrics["best_epoch"] == expected
    # model_best.keras holds that epoch's weights: it reproduces that epoch's validation numbers
    best = keras.saving.load_model(tmp_path / "run" / "model_best.keras")
    prepared = prepare(datasets.load_index(config), config, progress=False)
    again = evaluate_split(best, prepared.split("validation"), config.features, 8)
    assert again["loss"] == pytest.approx(loss[expected - 1], rel=1e-6)
    assert again["clip_accuracy"] == accuracy[expected - 1]
    rows = (tmp_path / "run" / "history.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,session,seconds,") and len(rows) == 5


def test_cli_fit_on_a_folder_dataset(timbre_root, tmp_path, capsys):
    user = tmp_path / "tiny.toml"
    user.write_text(
        "[audio]\nclip_seconds = 3.0\nmin_seconds = 1.0\n"
        "[features]\nn_fft = 512\nn_mels = 32\nsegment_frames = 64\nsegments_per_clip = 4\n"
        "[model]\ndepths = [1]\nwidths = [8]\n[data]\ntest_fraction = 0.34\n"
    )
    code = cli.main(
        [
            "fit",
            "--data",
            "folder",
            "--data-dir",
            str(timbre_root),
            "--config",
            str(user),
            "--run-dir",
            str(tmp_path / "run"),
            "--epochs",
            "1",
            "--batch-size",
            "16",
            "--learning-rate",
            "0.002",
            "--margin",
            "3",
            "--head",
            "lsoftmax",
            "--seed",
            "5",
            "--quiet",
        ]
    )
    assert code == 0
    config = load_run_config(tmp_path / "run")
    assert (
        config.train.epochs,
        config.train.batch_size,
        config.train.seed,
        config.model.margin,
    ) == (1, 16, 5, 3)
    assert config.train.learning_rate == 0.002 and config.model.widths == [8]
    assert config.data.split_seed == 5  # --seed also seeds the split unless --split-seed is given
    out = capsys.readouterr().out
    assert "test clip accuracy" in out
    assert "classical baseline (MFCC statistics + logistic regression) on the same split" in out


def test_cli_errors_name_the_problem_and_the_fix(tmp_path, capsys):
    assert cli.main(["fit", "--data", "folder", "--quiet"]) == 2
    assert "--data-dir" in capsys.readouterr().err
    assert cli.main(["fit", "--data", "folder", "--data-dir", str(tmp_path / "absent")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "only").mkdir()
    assert cli.main(["fit", "--data", "folder", "--data-dir", str(tmp_path / "only")]) == 2
    assert "at least 2" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit:  # refused while parsing, before TensorFlow loads
        cli.main(["fit", "--data", "nonsense"])
    assert exit.value.code == 2
    assert "unknown dataset 'nonsense'; choose one of demo," in capsys.readouterr().err


def test_cli_help_explains_every_option(capsys):
    with pytest.raises(SystemExit):
        cli.main(["fit", "--help"])
    text = capsys.readouterr().out
    for option in [
        "--data",
        "--config",
        "--run-dir",
        "--epochs",
        "--batch-size",
        "--learning-rate",
        "--margin",
        "--head",
        "--seed",
        "--split-seed",
        "--resume",
    ]:
        assert option in text
    with pytest.raises(SystemExit):
        cli.main(["evaluate", "--help"])
    text = capsys.readouterr().out
    for option in [
        "RUN_DIR",
        "--data",
        "--data-dir",
        "--model",
        "--split",
        "--unknown",
        "--probes",
    ]:
        assert option in text
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out
    assert "fit" in text and "evaluate" in text
