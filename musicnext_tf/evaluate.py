"""Evaluation: segment- and clip-level accuracy and test loss of a trained classifier.

A clip's prediction is the mean of its segments' probabilities (the paper reports accuracy without
saying at which level, so we report both). The loss is the softmax cross-entropy of the plain
(inference) logits, comparable between the softmax and L-softmax heads.
"""

from __future__ import annotations

import numpy as np

from musicnext_tf.config import FeatureConfig
from musicnext_tf.pipeline import evaluation_dataset
from musicnext_tf.prepare import SplitFeatures


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def predict_segments(
    classifier, split: SplitFeatures, features: FeatureConfig, batch_size: int = 50
):
    """Runs the classifier over every segment of a split.

    Returns:
        (logits float32 [segments, classes], labels int [segments], clip indices int [segments]).
    """
    logits, labels, clips = [], [], []
    for segments, segment_labels, segment_clips in evaluation_dataset(split, features, batch_size):
        logits.append(np.asarray(classifier(segments, training=False), dtype=np.float32))
        labels.append(segment_labels.numpy())
        clips.append(segment_clips.numpy())
    return np.concatenate(logits), np.concatenate(labels), np.concatenate(clips)


def clip_probabilities(probabilities: np.ndarray, clips: np.ndarray, num_clips: int) -> np.ndarray:
    """Mean of the segment probabilities of each clip: [clips, classes]."""
    sums = np.zeros((num_clips, probabilities.shape[1]), np.float64)
    np.add.at(sums, clips, probabilities)
    counts = np.bincount(clips, minlength=num_clips)[:, None]
    return (sums / np.maximum(counts, 1)).astype(np.float32)


def summarize(
    logits: np.ndarray, labels: np.ndarray, clips: np.ndarray, clip_labels: np.ndarray
) -> dict:
    """Accuracy at both levels and the mean cross-entropy of the segments."""
    probabilities = softmax(logits.astype(np.float64))
    log_probabilities = np.log(np.maximum(probabilities[np.arange(len(labels)), labels], 1e-30))
    per_clip = clip_probabilities(probabilities, clips, len(clip_labels))
    return {
        "segment_accuracy": float(np.mean(probabilities.argmax(axis=1) == labels)),
        "clip_accuracy": float(np.mean(per_clip.argmax(axis=1) == clip_labels)),
        "loss": float(-np.mean(log_probabilities)),
        "segments": int(len(labels)),
        "clips": int(len(clip_labels)),
    }


def evaluate_split(
    classifier, split: SplitFeatures, features: FeatureConfig, batch_size: int = 50
) -> dict:
    """Segment accuracy, clip accuracy and loss of the classifier on a cached split."""
    logits, labels, clips = predict_segments(classifier, split, features, batch_size)
    return summarize(logits, labels, clips, split.labels)
