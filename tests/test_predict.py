"""`musicnext-tf predict` and the in-graph clip classifier: probabilities against an independent
librosa + numpy reference for recordings of any length, the clip rules, bad files reported and
skipped, and the CSV and JSON outputs."""

from __future__ import annotations

import csv
import io
import json
import logging

import keras
import librosa
import numpy as np
import pytest
import soundfile
from helpers import TIMBRES, timbre_clip

from musicnext_tf import cli
from musicnext_tf.audio import load_clip
from musicnext_tf.inference import ClipClassifier, load_trained_model
from musicnext_tf.predict import audio_files, predict_files

RATE = 22050


@pytest.fixture(scope="module")
def trained(tiny_run):
    return load_trained_model(tiny_run)


@pytest.fixture(scope="module")
def new_files(tmp_path_factory):
    """Two unseen recordings per class (another seed than the training data), 2 s and 20 s long."""
    root = tmp_path_factory.mktemp("new")
    rng = np.random.default_rng(99)
    for kind in TIMBRES:
        for seconds in (2.0, 20.0):
            path = root / kind / f"{kind}-{seconds:02g}s.wav"
            path.parent.mkdir(exist_ok=True)
            soundfile.write(str(path), timbre_clip(kind, seconds, RATE, rng), RATE)
    return root


def reference_probabilities(trained, waveform: np.ndarray) -> tuple[np.ndarray, int]:
    """The mean segment probabilities computed independently: librosa's log-mel, numpy segmenting
    and softmax, the Keras classifier on the segments. Returns (probabilities, segments)."""
    features = trained.config.features
    power = librosa.feature.melspectrogram(
        y=waveform.astype(np.float64),
        sr=RATE,
        n_fft=features.n_fft,
        hop_length=features.hop_length,
        n_mels=features.n_mels,
        center=True,
        pad_mode="constant",
        power=2.0,
    )
    log_mel = 10.0 * np.log10(np.maximum(power, features.log_floor)).T  # [frames, mels]
    count = len(log_mel) // features.segment_frames
    segments = log_mel[: count * features.segment_frames].reshape(
        count, features.segment_frames, features.n_mels, 1
    )
    logits = np.asarray(trained.classifier(segments.astype(np.float32), training=False), float)
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    return probabilities.mean(axis=0), count


def test_predict_matches_a_librosa_reference_for_any_length(trained, new_files):
    files = audio_files([new_files])
    assert [f.name for f in files] == [
        f"{kind}-{seconds}s.wav" for kind in sorted(TIMBRES) for seconds in ("02", "20")
    ]
    predictions = predict_files(trained, files, progress=False)
    for path, prediction in zip(files, predictions):
        expected, count = reference_probabilities(
            trained, load_clip(path, RATE, "full", min_seconds=1.0)
        )
        assert prediction.error is None and prediction.segments == count
        assert count == (2 if "-02s" in path.name else 26)  # 20 s: two steps of 16 segments
        scores = np.array([prediction.probabilities[g] for g in trained.genres])
        # the graph's log-mel vs librosa's (relative error ~4e-7 in dB), float32 softmax vs
        # float64: measured at most 1e-7 here
        np.testing.assert_allclose(scores, expected, atol=1e-5)
        assert prediction.genre == trained.genres[int(np.argmax(expected))]
        assert prediction.probability == pytest.approx(scores.max())
    # the model has learnt the timbres: the unseen recordings are recognised
    correct = sum(p.genre == path.parent.name for path, p in zip(files, predictions))
    assert correct >= 5, [(str(path), p.genre) for path, p in zip(files, predictions)]


def test_steps_and_batches_give_the_same_probabilities(trained, rng):
    """Processing 1 or 100 segments per step, and one clip or a batch of clips, agree."""
    waveforms = rng.standard_normal((3, 7 * RATE)).astype(np.float32) * 0.1
    one_step = ClipClassifier.from_trained(trained, segments_per_step=100)
    small_steps = ClipClassifier.from_trained(trained, segments_per_step=1)
    batch = small_steps.classify_waveform(waveforms)
    np.testing.assert_allclose(
        one_step.classify_waveform(waveforms)["probabilities"], batch["probabilities"], atol=1e-6
    )
    for waveform, probabilities, embedding in zip(
        waveforms, batch["probabilities"], batch["embedding"]
    ):
        alone = one_step.classify_waveform(waveform[None])
        np.testing.assert_allclose(alone["probabilities"][0], probabilities, atol=1e-6)
        np.testing.assert_allclose(alone["embedding"][0], embedding, rtol=1e-5, atol=1e-6)
    pooled = keras.Model(trained.classifier.input, trained.classifier.get_layer("pooling").output)
    assert batch["embedding"].shape == (3, pooled.output_shape[-1])


def test_clip_rules_choose_the_part_of_the_file(trained, new_files):
    path = new_files / "drone" / "drone-20s.wav"
    waveform = load_clip(path, RATE, "full", min_seconds=1.0)
    config = trained.config.audio  # clip_seconds 3, min_seconds 1
    clip = int(config.clip_seconds * RATE)
    for rule, part in [
        ("head", waveform[:clip]),
        ("dataset", waveform[:clip]),  # the run's rule is "head"
        ("paper", waveform[clip : 2 * clip]),  # seconds 30-60 of the ISMIR2004 rule, scaled
    ]:
        (prediction,) = predict_files(trained, [path], clip_rule=rule, progress=False)
        expected, count = reference_probabilities(trained, part)
        assert prediction.segments == count == 4 and prediction.seconds == 3.0
        scores = np.array([prediction.probabilities[g] for g in trained.genres])
        np.testing.assert_allclose(scores, expected, atol=1e-5)
    (short,) = predict_files(trained, [new_files / "drone" / "drone-02s.wav"], "paper", False)
    assert (short.error, short.error_detail) == ("too_short", "2.00 s < 3 s")


@pytest.fixture
def mixed_folder(tmp_path, new_files):
    """Good recordings next to bad ones of every kind, and files predict must ignore."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    for kind in TIMBRES:
        (folder / f"{kind}.wav").write_bytes((new_files / kind / f"{kind}-02s.wav").read_bytes())
    (folder / "empty.mp3").write_bytes(b"")
    (folder / "text.wav").write_text("not audio")
    whole = (new_files / "sweeps" / "sweeps-02s.wav").read_bytes()
    (folder / "truncated.wav").write_bytes(whole[: len(whole) // 2])
    soundfile.write(str(folder / "blip.flac"), np.full(RATE // 2, 0.1, np.float32), RATE)
    soundfile.write(str(folder / "silence.wav"), np.zeros(2 * RATE, np.float32), RATE)
    (folder / "notes.txt").write_text("ignored: not an audio extension")
    (folder / ".hidden.wav").write_bytes(b"ignored: hidden")
    return folder


BAD = {
    "blip.flac": ("too_short", "0.50 s < 1 s"),
    "empty.mp3": ("empty", "file has 0 bytes"),
    "silence.wav": ("silent", "every sample is zero"),
    "text.wav": ("undecodable", None),
    "truncated.wav": ("truncated", None),
    "missing.wav": ("missing", "no such file"),
}


def test_bad_files_are_reported_listed_and_skipped(trained, mixed_folder, tmp_path, caplog):
    output = tmp_path / "predictions.json"
    missing = tmp_path / "missing.wav"
    arguments = ["predict", str(trained.run_dir), str(mixed_folder), str(missing)]
    with caplog.at_level(logging.WARNING):
        assert cli.main([*arguments, "--output", str(output), "--quiet"]) == 0
    document = json.loads(output.read_text())
    assert document["genres"] == ["clicks", "drone", "sweeps"] and document["clip_rule"] == "full"
    assert document["model"] == str(trained.run_dir / "model_last.keras")
    rows = {row["path"].rsplit("/", 1)[-1]: row for row in document["predictions"]}
    assert sorted(rows) == sorted([*BAD, "clicks.wav", "drone.wav", "sweeps.wav"])
    for name, (reason, detail) in BAD.items():
        row = rows[name]
        assert row["error"] == reason and row["genre"] is None and row["probabilities"] is None
        if detail is not None:
            assert row["error_detail"] == detail
        # one warning line naming the file and the reason
        lines = [r.getMessage() for r in caplog.records if name in r.getMessage()]
        assert len(lines) == 1 and reason in lines[0] and "\n" not in lines[0]
    for kind in TIMBRES:
        row = rows[f"{kind}.wav"]
        assert row["error"] is None and row["segments"] == 2 and row["seconds"] == 2.0
        assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert row["probability"] == max(row["probabilities"].values())
    # --strict: the same output, and a failing exit status naming the count
    assert cli.main([*arguments, "--output", str(output), "--quiet", "--strict"]) == 2


def test_csv_output_on_stdout_and_model_file(trained, new_files, capsys):
    model_file = trained.run_dir / "model_last.keras"
    files = [str(new_files / kind / f"{kind}-20s.wav") for kind in TIMBRES]
    assert cli.main(["predict", str(model_file), *files, "--format", "csv", "--quiet"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert list(rows[0]) == [
        "path",
        "genre",
        "probability",
        "best_genre",
        "score",
        "is_known",
        "segments",
        "seconds",
        "error",
        "error_detail",
        "p_clicks",
        "p_drone",
        "p_sweeps",
    ]
    expected = predict_files(trained, files, progress=False)
    for row, prediction in zip(rows, expected):
        assert row["path"] == prediction.path and row["genre"] == prediction.genre
        assert row["segments"] == "26" and row["error"] == ""
        for genre in trained.genres:
            assert float(row[f"p_{genre}"]) == pytest.approx(
                prediction.probabilities[genre], abs=1e-6
            )


def test_errors_name_the_problem(tiny_run, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert cli.main(["predict", str(tiny_run), str(tmp_path / "empty"), "--quiet"]) == 2
    assert "no audio files to classify" in capsys.readouterr().err
    some_audio = str(tiny_run.parent / "data" / "drone" / "drone.00000.wav")
    assert cli.main(["predict", str(tmp_path), some_audio]) == 2
    assert "is not a run folder (it needs config.json and run.json)" in capsys.readouterr().err
    assert cli.main(["predict", str(tiny_run), some_audio, "--model", "best"]) == 2
    assert "has no best model" in capsys.readouterr().err
    model_file = str(tiny_run / "model_last.keras")
    assert cli.main(["predict", model_file, some_audio, "--model", "last"]) == 2
    assert "give the run folder instead, or drop --model" in capsys.readouterr().err
    stray = tmp_path / "stray.keras"
    stray.write_bytes((tiny_run / "model_last.keras").read_bytes())
    assert cli.main(["predict", str(stray), some_audio]) == 2
    assert "no run folder (config.json and run.json) above it" in capsys.readouterr().err
