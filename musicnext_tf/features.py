"""Log-mel spectrograms and segmenting, computed in the TensorFlow graph.

One implementation serves feature preparation, the tf.data pipeline and the `waveform` serving
signature, so training and serving can never disagree. The settings follow librosa's defaults
(centred STFT with zero padding, periodic Hann window, Slaney mel scale and area normalisation), so
the numbers match `librosa.feature.melspectrogram` followed by `10 * log10(max(S, floor))`.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from musicnext_tf.config import FeatureConfig

_SLANEY_LINEAR_HZ_PER_MEL = 200.0 / 3.0
_SLANEY_BREAK_HZ = 1000.0
_SLANEY_LOG_STEP = np.log(6.4) / 27.0


def hz_to_mel(frequencies: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above.

    Reference: M. Slaney, Auditory Toolbox, Technical Report 1998-010, Interval Research (1998).
    """
    frequencies = np.asarray(frequencies, dtype=np.float64)
    linear = frequencies / _SLANEY_LINEAR_HZ_PER_MEL
    break_mel = _SLANEY_BREAK_HZ / _SLANEY_LINEAR_HZ_PER_MEL
    logarithmic = (
        break_mel + np.log(np.maximum(frequencies, 1e-10) / _SLANEY_BREAK_HZ) / _SLANEY_LOG_STEP
    )
    return np.where(frequencies >= _SLANEY_BREAK_HZ, logarithmic, linear)


def mel_to_hz(mels: np.ndarray) -> np.ndarray:
    """Inverse of `hz_to_mel`."""
    mels = np.asarray(mels, dtype=np.float64)
    break_mel = _SLANEY_BREAK_HZ / _SLANEY_LINEAR_HZ_PER_MEL
    linear = mels * _SLANEY_LINEAR_HZ_PER_MEL
    logarithmic = _SLANEY_BREAK_HZ * np.exp(_SLANEY_LOG_STEP * (mels - break_mel))
    return np.where(mels >= break_mel, logarithmic, linear)


def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None
) -> np.ndarray:
    """Triangular mel filters with Slaney area normalisation.

    Returns:
        float32 array [n_fft // 2 + 1, n_mels]; `power_spectrum @ filters` gives mel energies.
    """
    fmax = sample_rate / 2.0 if fmax is None else float(fmax)
    fft_hz = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    edges_hz = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(edges_hz)
    distance = edges_hz[:, None] - fft_hz[None, :]  # [n_mels + 2, n_freqs]
    rising = -distance[:-2] / widths[:-1, None]
    falling = distance[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]  # equal area per filter
    return weights.T.astype(np.float32)


def frames_for_samples(num_samples: int, hop_length: int) -> int:
    """Number of centred STFT frames for a signal of `num_samples` (as librosa computes it)."""
    return 1 + num_samples // hop_length


@keras.saving.register_keras_serializable(package="musicnext_tf")
class LogMelSpectrogram(keras.layers.Layer):
    """Waveform [batch, samples] -> log-mel [batch, frames, n_mels] in decibels (reference 1.0).

    The output is float32 whatever the layer's policy: the decibel scale needs the range. The FFT
    runs in `fft_dtype`: float32 by default, like librosa's STFT of float32 audio, fast on GPUs and
    the only kind TPUs and LiteRT run. Its round-off floor lies about 135 dB below the loudest bin
    (within 0.01 dB of float64 for bins within 80 dB of it; see docs/serving.md); "float64" lowers
    the floor for near-silent bands of pure tones, at about twice the cost on CPUs.

    With `center=True` (librosa's default) the signal is zero-padded by n_fft // 2 on both sides and
    frame t is centred on sample t * hop_length. `center=False` frames the input as given
    (1 + (samples - n_fft) // hop_length frames), so that a long recording, padded once, can be
    processed in pieces that give exactly the frames of the whole (see `inference`).
    """

    def __init__(
        self,
        sample_rate: int = 22050,
        n_fft: int = 2048,
        hop_length: int = 256,
        n_mels: int = 128,
        fmin: float = 0.0,
        fmax: float | None = None,
        power: float = 2.0,
        log_floor: float = 1e-10,
        fft_dtype: str = "float32",
        center: bool = True,
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.n_mels = n_mels
        self.fmin = fmin
        self.fmax = fmax
        self.power = power
        self.log_floor = log_floor
        self.fft_dtype = fft_dtype
        self.center = bool(center)
        self._filters = mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax)

    @classmethod
    def from_feature_config(cls, features: FeatureConfig, sample_rate: int, **kwargs):
        return cls(
            sample_rate=sample_rate,
            n_fft=features.n_fft,
            hop_length=features.hop_length,
            n_mels=features.n_mels,
            fmin=features.fmin,
            fmax=features.fmax,
            power=features.power,
            log_floor=features.log_floor,
            fft_dtype=features.fft_dtype,
            **kwargs,
        )

    def call(self, waveform):
        fft_dtype = tf.as_dtype(self.fft_dtype)
        padded = tf.cast(waveform, fft_dtype)
        if self.center:
            half = self.n_fft // 2
            padded = tf.pad(padded, [[0, 0], [half, half]])
        spectrum = tf.signal.stft(
            padded,
            frame_length=self.n_fft,
            frame_step=self.hop_length,
            fft_length=self.n_fft,
            window_fn=lambda length, dtype: tf.signal.hann_window(length, dtype=fft_dtype),
            pad_end=False,
        )
        # With a float64 FFT only the sums need the precision; each bin keeps its own relative
        # precision in complex64, and the power step moves half the bytes.
        if spectrum.dtype != tf.complex64:
            spectrum = tf.cast(spectrum, tf.complex64)
        power = tf.math.real(spectrum) ** 2 + tf.math.imag(spectrum) ** 2
        if self.power != 2.0:
            power = tf.pow(power, self.power / 2.0)
        mel = tf.tensordot(power, tf.constant(self._filters), axes=1)
        return (10.0 / np.log(10.0)) * tf.math.log(tf.maximum(mel, self.log_floor))

    def compute_output_shape(self, input_shape):
        samples = input_shape[1]
        if samples is None:
            frames = None
        elif self.center:
            frames = frames_for_samples(samples, self.hop_length)
        else:
            frames = 1 + (samples - self.n_fft) // self.hop_length
        return (input_shape[0], frames, self.n_mels)

    def get_config(self):
        config = super().get_config()
        config.update(
            sample_rate=self.sample_rate,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            n_mels=self.n_mels,
            fmin=self.fmin,
            fmax=self.fmax,
            power=self.power,
            log_floor=self.log_floor,
            fft_dtype=self.fft_dtype,
            center=self.center,
        )
        return config


def segment(log_mel: tf.Tensor, segment_frames: int, max_segments: int | None = None) -> tf.Tensor:
    """Cuts one clip's log-mel [frames, n_mels] into whole segments [n, segment_frames, n_mels, 1].

    Segments are consecutive and non-overlapping from frame 0 (frames 0-255, 256-511, ...); the
    trailing partial segment is dropped. `max_segments` keeps only the first ones (10 for 30 s).
    """
    count = tf.shape(log_mel)[0] // segment_frames
    if max_segments is not None:
        count = tf.minimum(count, max_segments)
    kept = log_mel[: count * segment_frames]
    return tf.reshape(kept, [count, segment_frames, tf.shape(log_mel)[1], 1])
