"""`musicnext-tf evaluate` and the evaluation report: numbers against independent numpy and
scikit-learn recomputations, the files it writes, and its choices of model and data."""

from __future__ import annotations

import json
import logging
import shutil
import sys

import keras
import numpy as np
import pytest
from helpers import tiny_config, write_timbre_dataset
from sklearn.metrics import log_loss

from musicnext_tf import cli, datasets, register_keras_objects
from musicnext_tf.config import load_run_config
from musicnext_tf.evaluate import classification_report, split_for_model, write_report
from musicnext_tf.prepare import prepare
from musicnext_tf.train import fit

register_keras_objects()  # the custom classes, for load_model

GENRES = ["clicks", "drone", "sweeps"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A small run with a validation split (so it keeps a best model), trained once."""
    root = tmp_path_factory.mktemp("evaluate")
    data = write_timbre_dataset(root / "data", clips_per_class=9)
    config = tiny_config(
        data,
        train={"epochs": 4},
        data={"validation_fraction": 0.2, "cache_dir": str(root / "cache")},
    )
    fit(config, root / "run", progress=False)
    return root / "run"


def numpy_reference(logits, labels, clips, clip_labels, classes):
    """Accuracies, loss, confusion counts and per-class scores, written out with numpy."""
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    clip_probabilities = np.stack(
        [probabilities[clips == c].mean(axis=0) for c in range(len(clip_labels))]
    )
    reference = {
        "segment_accuracy": np.mean(probabilities.argmax(1) == labels),
        "clip_accuracy": np.mean(clip_probabilities.argmax(1) == clip_labels),
        "loss": log_loss(labels, probabilities, labels=list(range(classes))),
    }
    for level, truth, predicted in (
        ("segment", labels, probabilities.argmax(1)),
        ("clip", clip_labels, clip_probabilities.argmax(1)),
    ):
        counts = np.zeros((classes, classes), int)
        for t, p in zip(truth, predicted):
            counts[t, p] += 1
        true_positives = np.diag(counts).astype(float)
        precision = np.divide(
            true_positives, counts.sum(0), where=counts.sum(0) > 0, out=np.zeros(classes)
        )
        recall = np.divide(
            true_positives, counts.sum(1), where=counts.sum(1) > 0, out=np.zeros(classes)
        )
        total = precision + recall
        f1 = np.divide(2 * precision * recall, total, where=total > 0, out=np.zeros(classes))
        reference[level] = (counts, precision, recall, f1)
    return reference


def test_report_agrees_with_numpy_and_scikit_learn(rng):
    classes, clip_count, per_clip = 4, 12, 5
    clip_labels = rng.choice([0, 1, 3], size=clip_count)  # genre 2 never occurs: no row for it
    clips = np.repeat(np.arange(clip_count), per_clip)
    labels = clip_labels[clips]
    logits = rng.normal(size=(len(labels), classes)) + 1.5 * np.eye(classes)[labels]
    genres = ["a", "b", "c", "d"]
    report = classification_report(logits, labels, clips, clip_labels, genres)
    reference = numpy_reference(logits, labels, clips, clip_labels, classes)

    assert report["segment_accuracy"] == pytest.approx(reference["segment_accuracy"], abs=1e-12)
    assert report["clip_accuracy"] == pytest.approx(reference["clip_accuracy"], abs=1e-12)
    assert report["loss"] == pytest.approx(reference["loss"], rel=1e-9)
    for level in ("segment", "clip"):
        counts, precision, recall, f1 = reference[level]
        ours = report[f"{level}_level"]
        assert ours["rows"] == ["a", "b", "d"] and ours["columns"] == genres
        present = counts.sum(axis=1) > 0
        np.testing.assert_array_equal(ours["confusion_counts"], counts[present])
        percent = np.asarray(ours["confusion_percent"])
        np.testing.assert_allclose(percent.sum(axis=1), 100.0, rtol=1e-12)
        np.testing.assert_allclose(
            percent, 100 * counts[present] / counts[present].sum(1, keepdims=True), rtol=1e-12
        )
        for i, genre in enumerate(genres):
            scores = ours["per_genre"][genre]
            assert scores["precision"] == pytest.approx(precision[i], abs=1e-12)
            assert scores["recall"] == pytest.approx(recall[i], abs=1e-12)
            assert scores["f1"] == pytest.approx(f1[i], abs=1e-12)
            assert scores["support"] == counts[i].sum()
        assert ours["macro_average"]["f1"] == pytest.approx(f1[present].mean(), abs=1e-12)


def test_evaluate_writes_json_markdown_and_png_with_rows_summing_to_100(trained_run, capsys):
    import matplotlib.image

    assert cli.main(["evaluate", str(trained_run), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "best model (epoch" in out and "clip accuracy" in out and "report:" in out
    stem = trained_run / "evaluation" / "best-folder-test"
    report = json.loads(stem.with_suffix(".json").read_text())
    assert report["model"] == "best" and report["split"] == "test" and report["clips"] == 9
    for level in ("segment_level", "clip_level"):
        np.testing.assert_allclose(np.sum(report[level]["confusion_percent"], axis=1), 100.0)
        assert report[level]["rows"] == GENRES
    markdown = stem.with_suffix(".md").read_text()
    assert "| true \\ predicted | clicks | drone | sweeps |" in markdown
    assert all(f"\n| {genre} | " in markdown for genre in GENRES)
    png = trained_run / "evaluation" / "best-folder-test-confusion.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width, channels = matplotlib.image.imread(png).shape
    assert height > 200 and width > 200 and channels == 4

    # `fit` wrote the same report at its end, and metrics.json agrees with it
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert metrics["evaluation"][0] == "evaluation/best-folder-test.json"
    assert metrics["test_clip_accuracy"] == report["clip_accuracy"]
    assert metrics["test_segment_accuracy"] == report["segment_accuracy"]
    assert metrics["test_loss"] == report["loss"]
    assert report["epoch"] == metrics["best_epoch"]


def test_evaluate_numbers_match_a_recomputation_from_the_cached_features(trained_run):
    assert cli.main(["evaluate", str(trained_run), "--model", "last", "--quiet"]) == 0
    report = json.loads((trained_run / "evaluation" / "last-folder-test.json").read_text())
    config = load_run_config(trained_run)
    test = prepare(datasets.load_index(config), config, progress=False).split("test")
    segments = [np.load(path) for path in test.files]
    clips = np.repeat(np.arange(len(segments)), [len(s) for s in segments])
    model = keras.saving.load_model(trained_run / "model_last.keras")
    logits = model.predict(np.concatenate(segments)[..., None], batch_size=8, verbose=0)
    reference = numpy_reference(logits, test.labels[clips], clips, test.labels, 3)
    assert report["segment_accuracy"] == reference["segment_accuracy"]
    assert report["clip_accuracy"] == reference["clip_accuracy"]
    assert report["loss"] == pytest.approx(reference["loss"], rel=1e-5)  # float32 logits
    np.testing.assert_array_equal(report["clip_level"]["confusion_counts"], reference["clip"][0])


def test_evaluate_maps_another_datasets_genres_by_name(trained_run, tmp_path, capsys):
    other = write_timbre_dataset(tmp_path / "other", clips_per_class=3, seed=7)
    shutil.rmtree(other / "clicks")  # a dataset with two of the model's three genres
    arguments = ["evaluate", str(trained_run), "--data", "folder", "--data-dir", str(other)]
    assert cli.main([*arguments, "--split", "all", "--quiet"]) == 0
    report = json.loads((trained_run / "evaluation" / "best-folder-all.json").read_text())
    assert report["clips"] == 6 and report["data_dir"] == str(other)
    assert report["clip_level"]["rows"] == ["drone", "sweeps"]
    assert report["clip_level"]["columns"] == GENRES
    config = load_run_config(trained_run)
    prepared = prepare(
        datasets.load_index(tiny_config(other, data={"cache_dir": config.data.cache_dir})),
        config,
        progress=False,
    )
    mapped = split_for_model(prepared, "all", GENRES)
    assert sorted(set(mapped.labels.tolist())) == [1, 2]  # drone and sweeps, in model order

    (other / "noise").mkdir()
    shutil.copy(next((other / "drone").iterdir()), other / "noise" / "noise.00000.wav")
    assert cli.main([*arguments, "--split", "all", "--quiet"]) == 2
    assert "genres ['noise'] of the data are not among the model's genres" in (
        capsys.readouterr().err
    )


def test_evaluate_explains_a_missing_model(trained_run, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(trained_run, run_dir)
    (run_dir / "model_best.keras").unlink()  # as in a run without a validation split
    assert cli.main(["evaluate", str(run_dir), "--model", "best", "--quiet"]) == 2
    assert "has no best model: the run had no validation split" in capsys.readouterr().err
    for model in (run_dir / "model_last.keras", run_dir / "checkpoints"):
        shutil.rmtree(model) if model.is_dir() else model.unlink()
    assert cli.main(["evaluate", str(run_dir), "--quiet"]) == 2
    error = capsys.readouterr().err
    assert "no epoch of this run has completed yet" in error
    assert f"musicnext-tf fit --resume {run_dir}" in error


def test_without_matplotlib_the_report_has_json_and_markdown_and_names_the_extra(
    tmp_path, monkeypatch, caplog, rng
):
    for name in [n for n in sys.modules if n == "matplotlib" or n.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    labels = np.array([0, 1, 2, 2])
    report = classification_report(
        np.eye(3)[labels] * 5.0, labels, np.arange(4), labels, ["x", "y", "z"]
    )
    with caplog.at_level(logging.WARNING):
        paths = write_report(report, tmp_path, "best-demo-test")
    assert [p.name for p in paths] == ["best-demo-test.json", "best-demo-test.md"]
    assert not list(tmp_path.glob("*.png"))
    assert "reinstall musicnext-tf" in caplog.text
