"""The in-graph log-mel of feature preparation against librosa, on the same 30 s clips.

Ours is `prepare.FeatureExtractor` (the graph preparation and serving share: centred STFT, Slaney
mel, decibels, cut into segments) in this process's TensorFlow threads; librosa is the loop a user
would write: `melspectrogram` then `power_to_db`. The error is the largest |ours - librosa| /
max(|librosa|, 1 dB) over all values of all clips (decibels; the 1 dB floor compares values near
0 dB absolutely).
"""

from __future__ import annotations

import copy

import librosa
import numpy as np

from benchmarks.corpus import FORMATS, recording
from benchmarks.results import Figure
from benchmarks.timing import best_times
from musicnext_tf.config import ExperimentConfig
from musicnext_tf.prepare import FeatureExtractor

FAMILY = "features"
OTHER_PRECISION = {"float32": "float64", "float64": "float32"}


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


def max_error(extractor: FeatureExtractor, waveforms, config: ExperimentConfig) -> float:
    """Largest relative error of EXTRACTOR's segments against librosa's frames, over WAVEFORMS."""
    frames = config.features.segment_frames
    error = 0.0
    for waveform in waveforms:
        ours = extractor(waveform)
        reference = librosa_log_mel(waveform, config)[: len(ours) * frames].reshape(ours.shape)
        error = max(error, relative_error(ours, reference))
    return error


def run(config: ExperimentConfig, clips: int, repeats: int) -> list[Figure]:
    """Speed of ours over librosa (clips per second, best of `repeats` passes over the clips),
    and the largest relative error; the same with the other FFT precision for context."""
    seconds = config.audio.clip_seconds
    waveforms = [recording(FORMATS["wav"], index, seconds)[:, 0] for index in range(clips)]
    ours = config.features.fft_dtype
    other = copy.deepcopy(config)
    other.features.fft_dtype = OTHER_PRECISION[ours]
    extractors = {ours: FeatureExtractor(config), other.features.fft_dtype: FeatureExtractor(other)}
    errors = {
        name: max_error(extractor, waveforms, config) for name, extractor in extractors.items()
    }
    runs = {
        name: (lambda e=extractor: [e(w) for w in waveforms])
        for name, extractor in extractors.items()
    }
    runs["librosa"] = lambda: [librosa_log_mel(w, config) for w in waveforms]
    per_clip = {name: best / clips for name, best in best_times(runs, repeats).items()}
    details = {
        "clips": clips,
        "clip_seconds": seconds,
        "seconds_per_clip": per_clip,
        "max_relative_error": errors,
    }
    other = other.features.fft_dtype
    return [
        Figure(
            FAMILY,
            f"log-mel speed / librosa ({seconds:g} s clips, {ours} FFT)",
            per_clip["librosa"] / per_clip[ours],
            target=3.0,
            details=details,
        ),
        Figure(
            FAMILY,
            "log-mel max relative error vs librosa",
            errors[ours],
            unit="",
            target=1e-4,
            comparison="<=",
            details=details,
        ),
        Figure(
            FAMILY,
            f"log-mel speed / librosa with a {other} FFT",
            per_clip["librosa"] / per_clip[other],
            details=details,
            note=f"[features] fft_dtype = '{other}' (not the default): max relative error "
            f"{errors[other]:.1e} on these clips",
        ),
    ]
