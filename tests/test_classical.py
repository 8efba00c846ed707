"""The classical baseline: descriptors against librosa and hand numbers, and its evaluation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import librosa
import numpy as np
import pytest

from musicnext_tf.classical import (
    N_FEATURES,
    ClassicalBaseline,
    evaluate_baseline,
    feature_names,
    markdown_section,
    recording_features,
    split_features,
)
from musicnext_tf.prepare import PreparedDataset, SplitFeatures

N_MELS = 32
SEGMENT_FRAMES = 16
GENRES = ("bass", "mids", "treble")
CLASSICAL_PY = Path(__file__).resolve().parents[1] / "musicnext_tf" / "classical.py"


def column(name: str, n_mels: int = N_MELS) -> int:
    return feature_names(n_mels).index(name)


def test_layout_shapes_and_dtypes(rng):
    names = feature_names(N_MELS)
    assert len(names) == N_FEATURES == 100 == len(set(names))
    assert names[:3] == ["mfcc_00_mean", "mfcc_01_mean", "mfcc_02_mean"]
    assert names[50:52] == ["mfcc_00_std", "mfcc_01_std"]
    assert names[47:50] == ["centroid_mean", "flatness_mean", "energy_mean"]
    assert feature_names(128) == names
    log_mel = rng.normal(-40, 10, (50, N_MELS)).astype(np.float32)
    vector = recording_features(log_mel)
    assert vector.shape == (N_FEATURES,) and vector.dtype == np.float64
    for frames in (1, 2, 8):  # shorter than the delta window: finite, zero deltas for one frame
        short = recording_features(log_mel[:frames])
        assert short.shape == (N_FEATURES,) and np.all(np.isfinite(short))
    assert np.all(recording_features(log_mel[:1])[20:40] == 0)
    with pytest.raises(ValueError, match="at least 20 mel bands"):
        feature_names(10)
    with pytest.raises(ValueError, match="at least 20 mel bands"):
        recording_features(np.zeros((5, 10)))
    with pytest.raises(ValueError, match=r"shape \[frames >= 1, n_mels\]"):
        recording_features(np.zeros((0, N_MELS)))
    with pytest.raises(ValueError, match="NaN or infinite"):
        recording_features(np.full((3, N_MELS), np.nan))


def test_mfcc_and_deltas_agree_with_librosa(rng):
    log_mel = rng.normal(-45, 12, (300, 128)).astype(np.float32)
    vector = recording_features(log_mel)
    mfcc = librosa.feature.mfcc(S=log_mel.T.astype(np.float64), n_mfcc=20)  # [20, frames]
    delta = librosa.feature.delta(mfcc, width=9)
    names = feature_names(128)
    for i in range(20):
        for values, prefix in ((mfcc[i], "mfcc"), (delta[i], "delta_mfcc")):
            for statistic, expected in (("mean", values.mean()), ("std", values.std())):
                got = vector[names.index(f"{prefix}_{i:02d}_{statistic}")]
                assert got == pytest.approx(expected, rel=1e-4, abs=1e-9), (prefix, i, statistic)


def test_flat_spectrum_hand_numbers():
    vector = recording_features(np.full((20, N_MELS), -30.0))
    assert vector[column("flatness_mean")] == pytest.approx(0.0, abs=1e-9)
    assert vector[column("centroid_mean")] == pytest.approx((N_MELS - 1) / 2)
    assert vector[column("energy_mean")] == pytest.approx(-30.0)
    assert vector[column("mfcc_00_mean")] == pytest.approx(-30.0 * np.sqrt(N_MELS))
    for i in range(7):
        assert vector[column(f"contrast_{i}_mean")] == pytest.approx(0.0, abs=1e-9)
    assert np.allclose(vector[50:], 0.0, atol=1e-9)  # nothing changes over time
    assert np.allclose(vector[1:20], 0.0, atol=1e-9)  # a flat spectrum has only mfcc_00


def test_single_peak_hand_numbers():
    log_mel = np.full((10, N_MELS), -100.0)
    log_mel[:, 5] = 0.0
    vector = recording_features(log_mel)
    assert vector[column("centroid_mean")] == pytest.approx(5.0, abs=1e-6)
    # flatness = mean dB - 10 log10(mean power) = -100 * 31/32 - 10 log10((1 + 31e-10) / 32)
    assert vector[column("flatness_mean")] == pytest.approx(-96.875 + 10 * np.log10(32), abs=1e-6)
    assert vector[column("energy_mean")] == pytest.approx(-96.875)
    # 32 bands in 7 sub-bands: 5, 5, 5, 5, 4, 4, 4 wide; band 5 is in sub-band 1: 0 - (-100) dB
    contrast = [vector[column(f"contrast_{i}_mean")] for i in range(7)]
    assert contrast == pytest.approx([0, 100, 0, 0, 0, 0, 0], abs=1e-9)


def test_contrast_quantile_and_std_over_frames():
    # 700 bands: sub-bands of 100, so the 2 % quantile is the 2 extreme values of each end
    wide = np.full((4, 700), -50.0)
    wide[:, :100] = np.arange(100.0)
    vector = recording_features(wide)
    assert vector[column("contrast_0_mean", 700)] == pytest.approx(98.5 - 0.5)
    assert vector[column("contrast_1_mean", 700)] == pytest.approx(0.0, abs=1e-9)
    # peaks alternating between bands 2 and 10: centroid mean 6, std 4
    alternating = np.full((40, N_MELS), -100.0)
    alternating[0::2, 2] = 0.0
    alternating[1::2, 10] = 0.0
    vector = recording_features(alternating)
    assert vector[column("centroid_mean")] == pytest.approx(6.0, abs=1e-6)
    assert vector[column("centroid_std")] == pytest.approx(4.0, abs=1e-6)


def test_silence_is_finite():
    vector = recording_features(np.full((300, 128), -100.0, dtype=np.float32))
    assert np.all(np.isfinite(vector))
    names = feature_names(128)
    assert vector[names.index("flatness_mean")] == pytest.approx(0.0, abs=1e-9)
    assert vector[names.index("centroid_mean")] == pytest.approx(63.5)
    assert vector[names.index("energy_mean")] == pytest.approx(-100.0)


def shaped_recording(rng, genre: int, segments: int) -> np.ndarray:
    """Segments [n, SEGMENT_FRAMES, N_MELS] in dB: a 30 dB bump in the genre's third of the bands."""
    log_mel = rng.normal(-60.0, 6.0, (segments, SEGMENT_FRAMES, N_MELS))
    third = N_MELS // 3
    log_mel[..., genre * third : (genre + 1) * third] += 30.0
    return np.maximum(log_mel, -100.0).astype(np.float32)


def write_split(
    root: Path, name: str, rng, genres: np.ndarray, labels: np.ndarray
) -> SplitFeatures:
    files, track_ids = [], []
    for i, genre in enumerate(genres):
        path = root / f"{name}-{i}.npy"
        np.save(path, shaped_recording(rng, int(genre), int(rng.integers(1, 4))))
        files.append(str(path))
        track_ids.append(f"{name}/{i}")
    return SplitFeatures(files, np.asarray(labels, dtype=np.int32), track_ids)


def synthetic(tmp_path: Path, shuffled: bool) -> PreparedDataset:
    """8 training and 4 test recordings per genre; `shuffled`: labels independent of the shape."""
    rng = np.random.default_rng(7)
    splits = {}
    for name, per_genre in (("train", 8), ("test", 4)):
        shapes = np.repeat(np.arange(len(GENRES)), per_genre)
        labels = rng.permutation(shapes) if shuffled else shapes
        splits[name] = write_split(tmp_path, name, rng, shapes, labels)
    return PreparedDataset(tmp_path, GENRES, splits, [])


def recomputed(result: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Confusion, precision, recall and F1 from the predictions alone, in numpy."""
    ids = {genre: i for i, genre in enumerate(GENRES)}
    confusion = np.zeros((len(GENRES), len(GENRES)), dtype=int)
    for row in result["predictions"]:
        confusion[ids[row["true"]], ids[row["predicted"]]] += 1
    hits = np.diag(confusion).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.nan_to_num(hits / confusion.sum(axis=0))
        recall = np.nan_to_num(hits / confusion.sum(axis=1))
        f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
    return confusion, precision, recall, f1


def check_consistent(result: dict) -> None:
    confusion, precision, recall, f1 = recomputed(result)
    assert result["clip_level"]["confusion_counts"] == confusion.tolist()
    for i, genre in enumerate(GENRES):
        scores = result["clip_level"]["per_genre"][genre]
        assert scores["precision"] == pytest.approx(precision[i])
        assert scores["recall"] == pytest.approx(recall[i])
        assert scores["f1"] == pytest.approx(f1[i])
        assert scores["support"] == confusion[i].sum()
    assert result["macro_f1"] == pytest.approx(f1.mean())
    accuracy = np.trace(confusion) / confusion.sum()
    assert result["clip_accuracy"] == pytest.approx(accuracy)
    for row in result["predictions"]:
        assert 1 / len(GENRES) <= row["probability"] <= 1.0


def test_evaluate_separates_spectral_shapes(tmp_path):
    prepared = synthetic(tmp_path, shuffled=False)
    calls = []
    result = evaluate_baseline(prepared, GENRES, progress=lambda *args: calls.append(args))
    assert result["clip_accuracy"] == 1.0
    assert result["macro_f1"] == 1.0
    assert (result["features"], result["train_clips"], result["test_clips"]) == (100, 24, 12)
    assert [row["track_id"] for row in result["predictions"]] == [f"test/{i}" for i in range(12)]
    assert calls[-1] == ("test", 12, 12) and ("train", 24, 24) in calls
    check_consistent(result)
    markdown = markdown_section(result)
    assert markdown.startswith("## Classical baseline\n")
    assert "| clip accuracy | 100.00 % |" in markdown and "| macro F1 | 1.000 |" in markdown
    for genre in GENRES:
        assert f"| {genre} | 1.000 | 1.000 | 1.000 | 4 |" in markdown
    again = evaluate_baseline(prepared, GENRES)
    assert again["predictions"] == result["predictions"]  # deterministic


def test_evaluate_with_shuffled_labels_fails_to_learn(tmp_path):
    result = evaluate_baseline(synthetic(tmp_path, shuffled=True), GENRES)
    assert result["clip_accuracy"] <= 0.75
    check_consistent(result)


def test_split_features_streams_each_recording(tmp_path):
    rng = np.random.default_rng(3)
    split = write_split(tmp_path, "s", rng, np.array([0, 2]), np.array([0, 1]))
    rows = split_features(split)
    assert rows.shape == (2, N_FEATURES) and rows.dtype == np.float64
    for row, path in zip(rows, split.files):
        expected = recording_features(np.load(path).reshape(-1, N_MELS))
        np.testing.assert_allclose(row, expected)
    empty = split_features(SplitFeatures([], np.zeros(0, np.int32), []))
    assert empty.shape == (0, N_FEATURES)


def test_empty_split_and_single_genre_errors(tmp_path):
    prepared = synthetic(tmp_path, shuffled=False)
    no_test = PreparedDataset(tmp_path, GENRES, {"train": prepared.split("train")}, [])
    with pytest.raises(ValueError, match="the 'test' split has no recordings"):
        evaluate_baseline(no_test, GENRES)
    with pytest.raises(ValueError, match="the 'validation' split has no recordings"):
        evaluate_baseline(prepared, GENRES, test="validation")
    train = prepared.split("train")
    mids = [i for i, label in enumerate(train.labels) if label == 1]
    one_genre = SplitFeatures(
        [train.files[i] for i in mids], train.labels[mids], [train.track_ids[i] for i in mids]
    )
    single = PreparedDataset(
        tmp_path, GENRES, {"train": one_genre, "test": prepared.split("test")}, []
    )
    with pytest.raises(ValueError, match=r"only one genre present \('mids'\)"):
        evaluate_baseline(single, GENRES)
    with pytest.raises(ValueError, match="only one class"):
        ClassicalBaseline().fit(np.zeros((3, 4)), np.ones(3))
    with pytest.raises(RuntimeError, match="not fitted"):
        ClassicalBaseline().predict(np.zeros((1, 4)))


def test_baseline_columns_cover_unseen_classes(rng):
    x = np.concatenate([rng.normal(-2, 1, (10, 3)), rng.normal(2, 1, (10, 3))])
    y = np.repeat([0, 2], 10)
    model = ClassicalBaseline(n_classes=4).fit(x, y)
    probabilities = model.predict_proba(x)
    assert probabilities.shape == (20, 4)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    assert np.all(probabilities[:, [1, 3]] == 0)
    assert set(model.predict(x)) <= {0, 2}
    assert ClassicalBaseline().fit(x, y).predict_proba(x).shape == (20, 2)


def test_module_needs_no_tensorflow():
    """The module file alone (outside the package, whose __init__ loads TensorFlow) runs."""
    code = f"""
import importlib.util, sys
import numpy as np
spec = importlib.util.spec_from_file_location("classical", {str(CLASSICAL_PY)!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
x = np.stack([module.recording_features(np.full((9, 32), v)) for v in (-80.0, -20.0, -70.0, -30.0)])
module.ClassicalBaseline(2).fit(x, np.array([0, 1, 0, 1])).predict(x)
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "musicnext_tf"))
assert not loaded, loaded
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
