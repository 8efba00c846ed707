"""Calibration, open-set rejection and timelines of a trained run, end to end: what `fit` stores,
what `evaluate` reports, what `predict` writes and what the SavedModel returns."""

from __future__ import annotations

import csv
import json
import logging

import numpy as np
import pytest
import soundfile
from helpers import timbre_clip, train_tiny_run

from musicnext_tf import cli
from musicnext_tf.calibration import read_calibration
from musicnext_tf.inference import ClipClassifier, load_trained_model
from musicnext_tf.open_set import UNKNOWN
from musicnext_tf.predict import predict_files
from musicnext_tf.probes import probe_signal

RATE = 22050
SEGMENT_SECONDS = 64 * 256 / RATE  # the tiny config's segment: 64 frames of 256 samples


class Warnings(logging.Handler):
    """Keeps the text of every warning logged while it is attached."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def fit_warnings():
    return Warnings()


@pytest.fixture(scope="module")
def run(tmp_path_factory, fit_warnings):
    """A tiny run with a validation split, so `fit` calibrates it."""
    logging.getLogger().addHandler(fit_warnings)
    try:
        return train_tiny_run(tmp_path_factory.mktemp("trust"), data={"validation_fraction": 0.34})
    finally:
        logging.getLogger().removeHandler(fit_warnings)


def test_fit_warns_of_no_retracing(run, fit_warnings):
    # every epoch's validation, the test report, calibration and the probes each run the model
    # on new shapes or in a new classifier: each of them must trace once, silently
    assert not [message for message in fit_warnings.messages if "retracing" in message]


def test_fit_stores_the_calibration_and_reports_it(run):
    calibration = read_calibration(run, "best")
    assert calibration.validation_clips == 9 and calibration.score == "knn"
    assert calibration.threshold is not None and calibration.acceptance == 0.95
    assert calibration.reference.shape == (9, 16)  # the training clips' mean embeddings
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["temperature"] == calibration.temperature
    assert metrics["open_set_threshold"] == calibration.threshold
    assert set(metrics["open_set_auroc"]) == {"white_noise", "pink_noise", "silence", "speech"}
    report = json.loads((run / "evaluation" / "best-folder-test.json").read_text())
    assert set(report["calibration"]["clip"]) == {"before", "after"}
    assert report["calibration"]["clip"]["before"]["ece"] == metrics["test_clip_ece"]
    assert (run / "evaluation" / "best-folder-test-reliability.png").stat().st_size > 5000
    markdown = (run / "evaluation" / "best-folder-test.md").read_text()
    assert "## Calibration" in markdown and "## Open-set rejection" in markdown
    # the reliability diagram is in TensorBoard's images, in the run's results events file
    import tensorflow as tf

    (events,) = (run / "logs").glob("*.results")
    tags = {
        value.tag
        for event in tf.compat.v1.train.summary_iterator(str(events))
        for value in event.summary.value
    }
    assert "evaluation/best-folder-test-reliability" in tags


def test_the_temperature_minimises_the_validation_nll(run, capsys):
    assert (
        cli.main(["evaluate", str(run), "--split", "validation", "--probes", "0", "--quiet"]) == 0
    )
    assert "calibration: clip ECE" in capsys.readouterr().out
    report = json.loads((run / "evaluation" / "best-folder-validation.json").read_text())
    clip = report["calibration"]["clip"]
    assert clip["after"]["nll"] <= clip["before"]["nll"] + 1e-9
    # the threshold accepts at least 95 % of these clips (it was set on them)
    assert report["open_set"]["scores"]["knn"]["known_acceptance"] >= 0.95
    assert report["open_set"]["scores"]["knn"]["sets"] == {}


def test_evaluate_measures_the_rejection_of_unknown_recordings(run, tmp_path, caplog):
    folder = tmp_path / "other-genre"
    folder.mkdir()
    soundfile.write(str(folder / "noise.wav"), probe_signal("pink_noise", 3.0, RATE, 4), RATE)
    soundfile.write(str(folder / "short.wav"), probe_signal("pink_noise", 0.2, RATE, 5), RATE)
    arguments = ["evaluate", str(run), "--probes", "0", "--unknown", str(folder), "--quiet"]
    assert cli.main(arguments) == 0
    report = json.loads((run / "evaluation" / "best-folder-test.json").read_text())
    quality = report["open_set"]["scores"]["knn"]["sets"]["unknown recordings"]
    assert quality["unknown"] == 1 and quality["known"] == 9  # the short file is skipped...
    assert any("short.wav" in r.getMessage() for r in caplog.records)  # ...with a warning
    assert set(report["open_set"]["scores"]["knn"]["sets"]) == {"unknown recordings"}


def test_segment_probabilities_are_tempered_logits(run, rng):
    trained = load_trained_model(run)
    clips = ClipClassifier.from_trained(trained)
    segments = rng.normal(-40, 15, size=(5, 64, 32, 1)).astype(np.float32)
    logits = np.asarray(trained.classifier(segments), np.float64) / trained.calibration.temperature
    expected = np.exp(logits - logits.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    got = clips.segments(segments)["probabilities"].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_predict_marks_clips_below_the_threshold_unknown(run, tmp_path):
    trained = load_trained_model(run)
    threshold = trained.calibration.threshold
    files = []
    for name, waveform in {
        "drone.wav": timbre_clip("drone", 3.0, RATE, np.random.default_rng(3)),
        "noise.wav": probe_signal("white_noise", 3.0, RATE, seed=1),
        "quiet.wav": probe_signal("silence", 3.0, RATE, seed=1),  # -80 dBFS
    }.items():
        soundfile.write(str(tmp_path / name), waveform, RATE)
        files.append(tmp_path / name)
    predictions = predict_files(trained, files, progress=False)
    for prediction in predictions:
        assert prediction.is_known == (prediction.score >= threshold)
        best = max(prediction.probabilities, key=prediction.probabilities.get)
        assert prediction.best_genre == best
        assert prediction.genre == (best if prediction.is_known else UNKNOWN)
    assert predictions[0].genre == "drone"


def test_timeline_shows_the_switch_between_two_genres(run, tmp_path, capsys):
    """Clicks for 8 s, then a drone: the segments' most probable genre changes within one
    segment of the join, in the CSV `predict --timeline` writes; --plot draws the PNG."""
    rng = np.random.default_rng(11)
    join = 8.0
    audio = np.concatenate(
        [timbre_clip("clicks", join, RATE, rng), timbre_clip("drone", 8.0, RATE, rng)]
    )
    path = tmp_path / "two-genres.wav"
    soundfile.write(str(path), audio, RATE)
    folder = tmp_path / "timelines"
    arguments = ["predict", str(run), str(path), "--timeline", str(folder), "--plot", "--quiet"]
    assert cli.main(arguments) == 0
    with (folder / "two-genres.wav.timeline.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0])[:3] == ["start_s", "end_s", "genre"]
    starts = np.array([float(row["start_s"]) for row in rows])
    np.testing.assert_allclose(starts, np.arange(len(rows)) * SEGMENT_SECONDS, atol=1e-3)
    assert len(rows) == int(16.0 * RATE / 256 + 1) // 64
    genres = [row["genre"] for row in rows]
    first_drone = genres.index("drone")
    join_segment = join / SEGMENT_SECONDS
    assert abs(first_drone - join_segment) <= 1.0
    assert set(genres[: int(join_segment)]) == {"clicks"}
    assert set(genres[int(np.ceil(join_segment)) + 1 :]) == {"drone"}
    for row in rows:
        assert sum(float(row[f"p_{g}"]) for g in ("clicks", "drone", "sweeps")) == pytest.approx(
            1.0, abs=1e-4
        )
    picture = folder / "two-genres.wav.timeline.png"
    assert picture.read_bytes().startswith(b"\x89PNG")


def test_plot_without_timeline_is_refused(run, capsys):
    assert cli.main(["predict", str(run), "x.wav", "--plot"]) == 2
    assert "--plot draws the timeline: add --timeline DIR" in capsys.readouterr().err


def test_signatures_return_score_is_known_and_the_timeline(run, tmp_path):
    import io

    import tensorflow as tf

    from musicnext_tf.export import export_run

    exported = export_run(run, tmp_path / "models")
    served = tf.saved_model.load(str(exported))
    trained = load_trained_model(run)
    short = timbre_clip("sweeps", 2.0, RATE, np.random.default_rng(2))
    long = probe_signal("pink_noise", 5.0, RATE, seed=3)
    files = []
    for name, waveform in (("short.wav", short), ("long.wav", long)):
        soundfile.write(str(tmp_path / name), waveform, RATE)
        files.append(tmp_path / name)
    predictions = predict_files(trained, files, progress=False, timeline=True)
    buffers = []
    for waveform in (short, long):
        buffer = io.BytesIO()
        soundfile.write(buffer, waveform, RATE, format="WAV", subtype="FLOAT")
        buffers.append(buffer.getvalue())
    outputs = served.signatures["wav"](wav=tf.constant(buffers))
    counts = outputs["segment_count"].numpy()
    assert counts.tolist() == [p.segments for p in predictions]
    assert outputs["segment_probabilities"].shape == (2, max(counts), 3)
    for row, prediction in enumerate(predictions):
        assert outputs["score"].numpy()[row] == pytest.approx(prediction.score, abs=1e-4)
        assert bool(outputs["is_known"].numpy()[row]) == prediction.is_known
        assert outputs["genre"].numpy()[row].decode() == prediction.genre
        count = counts[row]
        np.testing.assert_allclose(
            outputs["segment_probabilities"].numpy()[row, :count],
            prediction.timeline.probabilities,
            atol=1e-4,
        )
        np.testing.assert_allclose(
            outputs["segment_start_s"].numpy()[row, :count], prediction.timeline.start_s
        )
        assert not outputs["segment_probabilities"].numpy()[row, count:].any()  # padding
    waveform = served.signatures["waveform"](
        audio=tf.constant(long[None, :, None]), sample_rate=tf.constant(RATE)
    )
    assert waveform["segment_probabilities"].shape == (1, counts[1], 3)
    np.testing.assert_allclose(
        waveform["segment_end_s"].numpy()[0], prediction.timeline.end_s, atol=1e-6
    )


def test_without_a_validation_split_the_figures_are_uncalibrated(tiny_run):
    calibration = read_calibration(tiny_run, "last")
    assert calibration.temperature == 1.0 and calibration.threshold is None
    report = json.loads((tiny_run / "evaluation" / "last-folder-test.json").read_text())
    assert set(report["calibration"]["clip"]) == {"before"}
    assert report["open_set"]["threshold"] is None
    assert report["open_set"]["scores"]["knn"]["sets"]["speech"]["false_acceptance"] is None
    markdown = (tiny_run / "evaluation" / "last-folder-test.md").read_text()
    assert "No validation split: the figures are uncalibrated." in markdown
    # every clip is known, and the score is still given
    (prediction,) = predict_files(
        load_trained_model(tiny_run),
        [tiny_run.parent / "data" / "drone" / "drone.00000.wav"],
        progress=False,
    )
    assert prediction.is_known and prediction.genre == prediction.best_genre
    assert 0.0 < prediction.score <= 1.0
