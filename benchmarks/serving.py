"""The `waveform` serving signature against the mel-only (`serving_default`) one, per 30 s clip.

Both are `inference.ClipClassifier`'s functions traced with the signatures' input specs, as the
export writes them: `waveform` takes one 30 s clip and computes its log-mel, segments and
classifies them; `serving_default` takes the clip's 10 segments as already computed log-mel. Their
time ratio is the cost of computing the features in the served graph.
"""

from __future__ import annotations

import tensorflow as tf

from benchmarks.compute import NUM_CLASSES, Workbench
from benchmarks.corpus import FORMATS, recording
from benchmarks.results import Figure
from benchmarks.timing import best_times
from musicnext_tf.inference import ClipClassifier
from musicnext_tf.prepare import FeatureExtractor

FAMILY = "serving"


def run(bench: Workbench, repeats: int) -> list[Figure]:
    config = bench.config
    genres = [f"genre{index}" for index in range(NUM_CLASSES)]
    clips = ClipClassifier(bench.classifier, config.features, config.audio.sample_rate, genres)
    waveform = recording(FORMATS["wav"], 0, config.audio.clip_seconds)[:, 0]
    segments = tf.constant(FeatureExtractor(config)(waveform)[..., None])
    waveforms = tf.constant(waveform[None, :])
    by_waveform = tf.function(clips.waveform, input_signature=[clips.waveform_spec])
    by_segments = tf.function(clips.segments, input_signature=[clips.segments_spec])
    best = best_times(
        {
            "waveform": lambda: by_waveform(waveforms)["class_id"].numpy(),
            "segments": lambda: by_segments(segments)["class_id"].numpy(),
        },
        repeats,
    )
    return [
        Figure(
            FAMILY,
            f"waveform / mel-only signature ({config.audio.clip_seconds:g} s clip)",
            best["waveform"] / best["segments"],
            target=1.10,
            comparison="<=",
            details={"seconds": best, "segments_per_clip": int(segments.shape[0])},
        )
    ]
