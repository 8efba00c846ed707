"""The in-graph log-mel of feature preparation against librosa, on the same 30 s clips.

Ours is `prepare.FeatureExtractor` (the graph preparation and serving share: centred STFT, Slaney
mel, decibels, cut into segments) in this process's TensorFlow threads; librosa is the loop a user
would write: `melspectrogram` then `power_to_db`. The error is the largest |ours - librosa| /
max(|librosa|, 1 dB) over all values of all clips (decibels; the 1 dB floor compares values near
0 dB absolutely).
"""

from __future__ import annotations

import librosa
import numpy as np

from benchmarks.corpus import FORMATS, recording
from benchmarks.results import Figure
from benchmarks.timing import best_times
from musicnext_tf.config import ExperimentConfig
from musicnext_tf.prepare import FeatureExtractor

FAMILY = "features"


def librosa_log_mel(waveform: np.ndarray, config: ExperimentConfig) -> np.ndarray:
    """The user's loop: librosa's log-mel [frames, n_mels] with the run's settings."""
    features = config.features
    power = librosa.feature.melspectrogram(
        y=waveform,
        sr=config.audio.sample_rate,
        n_fft=features.n_fft,
        hop_length=features.hop_length,
        n_mels=features.n_mels,
        fmin=features.fmin,
        fmax=features.fmax,
        power=features.power,
        center=True,
        pad_mode="constant",
    )
    return librosa.power_to_db(power, ref=1.0, amin=features.log_floor, top_db=None).T


def relative_error(ours: np.ndarray, reference: np.ndarray) -> float:
    """max |ours - reference| / max(|reference|, 1 dB)."""
    return float(np.max(np.abs(ours - reference) / np.maximum(np.abs(reference), 1.0)))


def run(config: ExperimentConfig, clips: int, repeats: int) -> list[Figure]:
    """Speed of ours over librosa (clips per second, best of `repeats` passes over the clips),
    and the largest relative error."""
    wav = FORMATS["wav"]
    seconds = config.audio.clip_seconds
    waveforms = [recording(wav, index, seconds)[:, 0] for index in range(clips)]
    extractor = FeatureExtractor(config)
    frames = config.features.segment_frames
    error = 0.0
    for waveform in waveforms:
        ours = extractor(waveform)
        reference = librosa_log_mel(waveform, config)[: len(ours) * frames].reshape(ours.shape)
        error = max(error, relative_error(ours, reference))
    best = best_times(
        {
            "ours": lambda: [extractor(w) for w in waveforms],
            "librosa": lambda: [librosa_log_mel(w, config) for w in waveforms],
        },
        repeats,
    )
    per_clip = {name: seconds_ / clips for name, seconds_ in best.items()}
    details = {"clips": clips, "clip_seconds": seconds, "seconds_per_clip": per_clip}
    return [
        Figure(
            FAMILY,
            f"log-mel speed / librosa ({seconds:g} s clips)",
            per_clip["librosa"] / per_clip["ours"],
            target=3.0,
            details=details,
        ),
        Figure(
            FAMILY,
            "log-mel max relative error vs librosa",
            error,
            unit="",
            target=1e-4,
            comparison="<=",
            details=details,
        ),
    ]
