"""tf.data input pipelines over the feature cache.

Training: every epoch is its own deterministic stream, seeded by (seed, epoch): clip order,
crop positions, segment shuffle and augmentation depend only on those two numbers, so a run
resumed at epoch k sees exactly the batches an uninterrupted run would have seen. An epoch takes
either every clip's fixed grid of segments (the paper) or `crops_per_recording` random 256-frame
crops from anywhere in each recording (a cache entry's segments are consecutive, so the entry is
the recording's contiguous log-mel). Segments are shuffled in blocks of `shuffle_buffer`
consecutive segments of randomly ordered clips (the whole epoch when it is smaller), which bounds
memory on large datasets and uses only stateless, seeded random ops. Evaluation: every segment
once, in order, with its clip's index for clip-level voting.

Cache entries are `.npy` files decoded in the graph (header skipped, float32 payload reshaped), so
reading runs in parallel without the Python GIL.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from musicnext_tf.config import FeatureConfig, TrainConfig
from musicnext_tf.model import LABELS_INPUT, SEGMENTS_INPUT
from musicnext_tf.prepare import SplitFeatures

_NPY_V1_PREAMBLE = 10  # magic (6) + version (2) + header length (2)
_EPOCH_STRIDE = 1_000_003  # separates the per-element seeds of consecutive epochs


def read_segments(path: tf.Tensor, features: FeatureConfig) -> tf.Tensor:
    """One cache entry -> float32 segments [n, segment_frames, n_mels, 1]."""
    contents = tf.io.read_file(path)
    header = tf.cast(tf.io.decode_raw(tf.strings.substr(contents, 8, 2), tf.uint16)[0], tf.int32)
    payload = tf.strings.substr(contents, _NPY_V1_PREAMBLE + header, -1)
    values = tf.io.decode_raw(payload, tf.float32)
    return tf.reshape(values, [-1, features.segment_frames, features.n_mels, 1])


def segment_count(split: SplitFeatures) -> int:
    """Number of segments in a split, read from the `.npy` headers (no data is loaded)."""
    return sum(np.load(path, mmap_mode="r").shape[0] for path in split.files)


def crop_counts(split: SplitFeatures, train: TrainConfig) -> np.ndarray:
    """Random crops per recording and epoch: `crops_per_recording` each, or, with
    `balance_genres`, about as many in total but shared equally among the genres, so that a genre
    with few recordings is seen as often as one with many."""
    counts = np.full(len(split), train.crops_per_recording, np.int64)
    if train.balance_genres and len(split):
        genres, members = np.unique(split.labels, return_counts=True)
        per_genre = train.crops_per_recording * len(split) / len(genres)
        share = dict(zip(genres.tolist(), (per_genre / members).tolist()))
        counts = np.array([max(1, round(share[label])) for label in split.labels.tolist()])
    return counts


def segments_per_epoch(split: SplitFeatures, train: TrainConfig) -> int:
    """Training segments in one epoch: every segment, or the random crops of every recording."""
    if train.crops_per_recording:
        return int(crop_counts(split, train).sum())
    return segment_count(split)


def steps_per_epoch(split: SplitFeatures, train: TrainConfig) -> int:
    """Batches in one training epoch (the last one may be smaller)."""
    return math.ceil(segments_per_epoch(split, train) / train.batch_size)


def segment_labels_and_clips(split: SplitFeatures) -> tuple[np.ndarray, np.ndarray]:
    """Per-segment label ids and clip indices, in the order `evaluation_dataset` yields them."""
    sizes = [np.load(path, mmap_mode="r").shape[0] for path in split.files]
    clips = np.repeat(np.arange(len(split.files)), sizes).astype(np.int32)
    return split.labels[clips], clips


def feature_statistics(split: SplitFeatures) -> tuple[float, float]:
    """Mean and standard deviation of all log-mel values of a split (float64 accumulation)."""
    total, total_sq, count = 0.0, 0.0, 0
    for path in split.files:
        values = np.load(path, mmap_mode="r").astype(np.float64)
        total += values.sum()
        total_sq += np.square(values).sum()
        count += values.size
    if count == 0:
        raise ValueError("cannot compute feature statistics of an empty split")
    mean = total / count
    return float(mean), float(math.sqrt(max(total_sq / count - mean * mean, 1e-12)))


def _clips(split: SplitFeatures, features: FeatureConfig, order=None) -> tf.data.Dataset:
    """Dataset of (segments [n, T, M, 1], label, clip index) per clip, in `order` if given."""
    files = tf.constant(split.files)
    labels = tf.constant(split.labels, tf.int32)
    clip_ids = tf.range(len(split.files), dtype=tf.int32)
    if order is not None:
        files, labels, clip_ids = (tf.gather(t, order) for t in (files, labels, clip_ids))
    clips = tf.data.Dataset.from_tensor_slices((files, labels, clip_ids))
    return clips.map(
        lambda path, label, clip: (read_segments(path, features), label, clip),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )


def _segments(clips: tf.data.Dataset) -> tf.data.Dataset:
    """Flattens per-clip tensors to (segment, label, clip index) per segment."""
    return clips.flat_map(
        lambda segments, label, clip: tf.data.Dataset.from_tensor_slices(
            (
                segments,
                tf.fill([tf.shape(segments)[0]], label),
                tf.fill([tf.shape(segments)[0]], clip),
            )
        )
    )


def random_time_flip(segment: tf.Tensor, seed: tf.Tensor, probability: float) -> tf.Tensor:
    """Reverses the time axis (the paper's "horizontal flip") with the given probability."""
    flip = tf.random.stateless_uniform([], seed=seed) < probability
    return tf.cond(flip, lambda: tf.reverse(segment, axis=[0]), lambda: segment)


def random_masks(
    segment: tf.Tensor, seed: tf.Tensor, axis: int, count: int, max_width: int, fill: float
) -> tf.Tensor:
    """SpecAugment (Park et al. 2019): `count` bands of 0 to `max_width` rows along `axis`
    (0: time frames, 1: mel bins) set to `fill`, at random positions."""
    size = tf.shape(segment)[axis]
    keep = tf.ones([size], tf.bool)
    positions = tf.range(size)
    for mask in range(count):
        mask_seed = tf.random.experimental.stateless_fold_in(seed, mask)
        width = tf.random.stateless_uniform([], mask_seed, 0, max_width + 1, tf.int32)
        start = tf.random.stateless_uniform(
            [], tf.random.experimental.stateless_fold_in(mask_seed, 1), 0, size, tf.int32
        )
        keep &= (positions < start) | (positions >= start + width)
    shape = [-1, 1, 1] if axis == 0 else [1, -1, 1]
    return tf.where(tf.reshape(keep, shape), segment, tf.cast(fill, segment.dtype))


def augment_segment(
    segment: tf.Tensor, seed: tf.Tensor, train: TrainConfig, fill: float
) -> tf.Tensor:
    """The training augmentations of one log-mel segment [frames, mels, 1] in dB: time flip,
    random gain (a level change is a constant in dB) and SpecAugment masks filled with `fill`."""
    segment = random_time_flip(segment, seed, train.flip_probability)
    if train.gain_db:
        gain_seed = tf.random.experimental.stateless_fold_in(seed, 1)
        segment += tf.random.stateless_uniform([], gain_seed, -train.gain_db, train.gain_db)
    if train.time_masks and train.time_mask_frames:
        time_seed = tf.random.experimental.stateless_fold_in(seed, 2)
        segment = random_masks(
            segment, time_seed, 0, train.time_masks, train.time_mask_frames, fill
        )
    if train.freq_masks and train.freq_mask_bins:
        mel_seed = tf.random.experimental.stateless_fold_in(seed, 3)
        segment = random_masks(segment, mel_seed, 1, train.freq_masks, train.freq_mask_bins, fill)
    return segment


def random_crops(segments: tf.Tensor, count, seed: tf.Tensor, features: FeatureConfig) -> tf.Tensor:
    """`count` windows of `segment_frames` frames at uniformly random frame positions of a
    recording's contiguous log-mel (its entry's segments [n, frames, mels, 1] end to end)."""
    frames = features.segment_frames
    log_mel = tf.reshape(segments, [-1, features.n_mels, 1])
    last_start = tf.shape(log_mel)[0] - frames
    starts = tf.random.stateless_uniform([count], seed, 0, last_start + 1, tf.int32)
    windows = starts[:, None] + tf.range(frames)[None, :]
    return tf.gather(log_mel, windows)


def model_inputs(segments, labels, with_labels_input: bool):
    """(x, y) as the training model expects it: x carries the labels for an L-softmax margin."""
    if with_labels_input:
        return {SEGMENTS_INPUT: segments, LABELS_INPUT: labels}, labels
    return segments, labels


def training_dataset(
    split: SplitFeatures,
    features: FeatureConfig,
    train: TrainConfig,
    with_labels_input: bool,
    initial_epoch: int = 0,
    fill_value: float = 0.0,
) -> tf.data.Dataset:
    """An endless stream of shuffled, augmented training batches, epoch after epoch.

    Pass it to `fit` with `steps_per_epoch(split, train)` steps per epoch, and with
    `initial_epoch` when resuming. `fill_value` (dB) fills SpecAugment masks: the training set's
    mean, which the model's standardisation maps to 0.
    """
    block = max(1, min(train.shuffle_buffer, segments_per_epoch(split, train)))
    crops = tf.constant(crop_counts(split, train), tf.int32) if train.crops_per_recording else None

    def one_epoch(epoch):
        epoch_seed = tf.stack([tf.constant(train.seed, tf.int64), epoch])
        order = tf.random.experimental.stateless_shuffle(
            tf.range(len(split.files)), seed=epoch_seed
        )
        clips = _clips(split, features, order)
        if crops is not None:

            def crop(segments, label, clip):
                seed = tf.random.experimental.stateless_fold_in(epoch_seed, clip)
                return random_crops(segments, crops[clip], seed, features), label, clip

            clips = clips.map(crop, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        segments = _segments(clips).map(lambda segment, label, clip: (segment, label))

        def mix(position, block_of_segments):
            # a seeded permutation of `block` consecutive segments of randomly ordered clips
            seed = tf.stack([tf.constant(train.seed, tf.int64), epoch * _EPOCH_STRIDE + position])
            permutation = tf.random.experimental.stateless_shuffle(
                tf.range(tf.shape(block_of_segments[1])[0]), seed
            )
            return tuple(tf.gather(part, permutation) for part in block_of_segments)

        segments = segments.batch(block).enumerate().map(mix).unbatch()

        def augment(position, element):
            segment, label = element
            seed = tf.stack([epoch + 1, position + epoch * _EPOCH_STRIDE])
            return augment_segment(segment, seed, train, fill_value), label

        batches = segments.enumerate().map(augment, num_parallel_calls=tf.data.AUTOTUNE)
        return batches.batch(train.batch_size)

    epochs = tf.data.Dataset.range(initial_epoch, 1 << 62)
    dataset = epochs.flat_map(one_epoch)
    dataset = dataset.map(lambda s, y: model_inputs(s, y, with_labels_input))
    return dataset.prefetch(tf.data.AUTOTUNE)


def evaluation_dataset(
    split: SplitFeatures, features: FeatureConfig, batch_size: int
) -> tf.data.Dataset:
    """Every segment of a split once, in order, batched: (segments, labels, clip indices)."""
    segments = _segments(_clips(split, features))
    return segments.batch(batch_size).prefetch(tf.data.AUTOTUNE)
