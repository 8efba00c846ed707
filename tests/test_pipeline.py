"""The tf.data pipeline over cache entries: decoding, statistics, determinism, resume and flips."""

from __future__ import annotations

import numpy as np
import pytest

from musicnext_tf.config import FeatureConfig, TrainConfig
from musicnext_tf.pipeline import (
    evaluation_dataset,
    feature_statistics,
    read_segments,
    segment_labels_and_clips,
    steps_per_epoch,
    training_dataset,
)
from musicnext_tf.prepare import SplitFeatures

FEATURES = FeatureConfig(segment_frames=8, n_mels=4)


@pytest.fixture
def split(tmp_path, rng):
    """Six clips of 1-3 segments each; every value encodes (clip, segment, frame, mel)."""
    files, labels = [], []
    for clip in range(6):
        count = 1 + clip % 3
        values = np.stack([rng.standard_normal((8, 4)) + 100 * clip + 10 * s for s in range(count)])
        path = tmp_path / f"clip{clip}.npy"
        np.save(path, values.astype(np.float32))
        files.append(str(path))
        labels.append(clip % 2)
    return SplitFeatures(files, np.array(labels, np.int32), [f"clip{c}" for c in range(6)])


def batches(dataset, count):
    return [(x.numpy(), y.numpy()) for x, y in dataset.take(count)]


def test_read_segments_decodes_npy_exactly(split):
    for path in split.files:
        np.testing.assert_array_equal(read_segments(path, FEATURES).numpy()[..., 0], np.load(path))


def test_feature_statistics_match_numpy(split):
    everything = np.concatenate([np.load(p).ravel() for p in split.files]).astype(np.float64)
    mean, std = feature_statistics(split)
    assert mean == pytest.approx(everything.mean(), rel=1e-9)
    assert std == pytest.approx(everything.std(), rel=1e-9)


def test_evaluation_dataset_yields_every_segment_once_in_order(split):
    segments, labels, clips = zip(
        *[(s.numpy(), y.numpy(), c.numpy()) for s, y, c in evaluation_dataset(split, FEATURES, 4)]
    )
    segments, labels, clips = (
        np.concatenate(segments),
        np.concatenate(labels),
        np.concatenate(clips),
    )
    expected = np.concatenate([np.load(p) for p in split.files])
    np.testing.assert_array_equal(segments[..., 0], expected)
    expected_labels, expected_clips = segment_labels_and_clips(split)
    np.testing.assert_array_equal(labels, expected_labels)
    np.testing.assert_array_equal(clips, expected_clips)


def test_training_epoch_covers_every_segment_once_with_flips(split):
    train = TrainConfig(batch_size=4, seed=3, flip_probability=0.5, shuffle_buffer=100)
    steps = steps_per_epoch(split, train)
    assert steps == 3  # 12 segments
    epoch = batches(training_dataset(split, FEATURES, train, with_labels_input=False), steps)
    seen = np.concatenate([x for x, _ in epoch])[..., 0]
    originals = np.concatenate([np.load(p) for p in split.files])
    flipped = 0
    for segment in seen:
        match = [np.array_equal(segment, o) for o in originals]
        reverse = [np.array_equal(segment, o[::-1]) for o in originals]
        assert sum(match) + sum(reverse) == 1
        flipped += sum(reverse)
    assert sorted(np.round(seen.mean(axis=(1, 2)))) == sorted(np.round(originals.mean(axis=(1, 2))))
    assert 0 < flipped < len(seen)


def test_training_stream_is_deterministic_and_resumable(split):
    train = TrainConfig(batch_size=5, seed=11, shuffle_buffer=100)
    steps = steps_per_epoch(split, train)
    full = batches(training_dataset(split, FEATURES, train, False), 3 * steps)
    again = batches(training_dataset(split, FEATURES, train, False), 3 * steps)
    resumed = batches(training_dataset(split, FEATURES, train, False, initial_epoch=2), steps)
    for (a, ya), (b, yb) in zip(full, again):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(ya, yb)
    for (a, _), (b, _) in zip(full[2 * steps :], resumed):
        np.testing.assert_array_equal(a, b)
    first, second = (
        np.concatenate([x for x, _ in full[:steps]]),
        np.concatenate([x for x, _ in full[steps : 2 * steps]]),
    )
    assert not np.array_equal(first, second)  # epochs are reshuffled
    other_seed = batches(
        training_dataset(split, FEATURES, TrainConfig(batch_size=5, seed=12), False), steps
    )
    assert not np.array_equal(first, np.concatenate([x for x, _ in other_seed]))


def test_labels_input_for_the_lsoftmax_training_model(split):
    train = TrainConfig(batch_size=4, seed=0)
    x, y = next(iter(training_dataset(split, FEATURES, train, with_labels_input=True)))
    assert set(x) == {"segments", "labels"}
    np.testing.assert_array_equal(x["labels"].numpy(), y.numpy())
    assert x["segments"].shape == (4, 8, 4, 1)
