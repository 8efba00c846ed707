"""Log-mel features against librosa, the independent reference."""

from __future__ import annotations

import keras
import librosa
import numpy as np
import pytest
import tensorflow as tf

from musicnext_tf.features import LogMelSpectrogram, frames_for_samples, mel_filterbank, segment

SR = 22050


def librosa_log_mel(waveform, sr=SR, n_fft=2048, hop=256, n_mels=128, fmin=0.0, fmax=None):
    """The reference: librosa's mel spectrogram with our settings, then 10*log10(max(S, 1e-10))."""
    power = librosa.feature.melspectrogram(
        y=waveform,
        sr=sr,
        n_fft=n_fft,
        hop_length=hop,
        n_mels=n_mels,
        fmin=fmin,
        fmax=fmax,
        center=True,
        pad_mode="constant",
        power=2.0,
    )
    return librosa.power_to_db(power, ref=1.0, amin=1e-10, top_db=None).T


def relative_error(ours, reference):
    """Max |ours - ref| / max(|ref|, 1 dB): relative error on the decibel scale, with a 1 dB floor
    so that values crossing 0 dB are compared absolutely instead of dividing by ~0."""
    return float(np.max(np.abs(ours - reference) / np.maximum(np.abs(reference), 1.0)))


def reference_signals(rng):
    t = np.arange(30 * SR) / SR
    return {
        "white noise": 0.3 * rng.standard_normal(t.size),
        "pure tone 440 Hz": 0.5 * np.sin(2 * np.pi * 440 * t),
        "chord with harmonics": sum(
            0.2 / h * np.sin(2 * np.pi * f * h * t) for f in (220, 277.2, 329.6) for h in (1, 2, 3)
        ),
        "silence": np.zeros(t.size),
        "full-scale clipping": np.clip(
            3 * np.sin(2 * np.pi * 110 * t) + rng.standard_normal(t.size), -1, 1
        ),
        "impulses": (np.arange(t.size) % 11025 == 0).astype(float),
    }


@pytest.mark.parametrize(
    "sr,n_fft,n_mels,fmin,fmax",
    [
        (22050, 2048, 128, 0.0, None),
        (16000, 1024, 64, 50.0, 7000.0),
        (44100, 4096, 96, 20.0, None),
        (8000, 512, 40, 0.0, 4000.0),
    ],
)
def test_mel_filterbank_matches_librosa(sr, n_fft, n_mels, fmin, fmax):
    ours = mel_filterbank(sr, n_fft, n_mels, fmin, fmax)
    reference = librosa.filters.mel(
        sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=False, norm="slaney"
    ).T
    assert ours.shape == reference.shape == (n_fft // 2 + 1, n_mels)
    # float32 filters: agreement to float32 round-off of the largest weight
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-6 * np.abs(reference).max())


def test_float64_log_mel_matches_librosa_on_real_looking_audio(rng):
    """The float64 FFT against librosa's float64 STFT: every bin, near-silent ones included."""
    layer = LogMelSpectrogram(fft_dtype="float64")
    for name, signal in reference_signals(rng).items():
        ours = layer(signal.astype(np.float32)[None])[0].numpy()
        reference = librosa_log_mel(signal.astype(np.float32).astype(np.float64))
        assert ours.shape == reference.shape == (2584, 128), name
        assert ours.dtype == np.float32
        assert relative_error(ours, reference) <= 1e-4, name


def test_default_float32_log_mel_matches_librosa_and_float64_where_audible(rng):
    """The default float32 FFT against librosa's default (float32 audio: a float32 STFT) and our
    float64 path: within 0.01 dB (measured at most 2e-3 dB) in every bin within 80 dB of the
    clip's loudest; only bins near the float32 round-off floor (~135 dB down) differ more."""
    float32, float64 = LogMelSpectrogram(), LogMelSpectrogram(fft_dtype="float64")
    assert float32.fft_dtype == "float32"
    for name, signal in reference_signals(rng).items():
        waveform = signal.astype(np.float32)[None]
        ours = float32(waveform)[0].numpy()
        precise = float64(waveform)[0].numpy()
        audible = precise >= precise.max() - 80.0
        assert np.abs(ours - librosa_log_mel(waveform[0]))[audible].max() <= 0.01, name
        assert np.abs(ours - precise)[audible].max() <= 0.01, name


def test_log_mel_matches_librosa_with_other_settings(rng):
    waveform = (0.3 * rng.standard_normal(5 * 16000)).astype(np.float32)
    layer = LogMelSpectrogram(
        sample_rate=16000, n_fft=1024, hop_length=160, n_mels=64, fmin=50.0, fmax=7000.0
    )
    ours = layer(waveform[None])[0].numpy()
    reference = librosa_log_mel(
        waveform, sr=16000, n_fft=1024, hop=160, n_mels=64, fmin=50.0, fmax=7000.0
    )
    assert relative_error(ours, reference) <= 1e-4


@pytest.mark.parametrize("samples", [2048, 22050, 661500, 659344, 100001])
def test_frame_count_matches_librosa(samples):
    waveform = np.zeros(samples, np.float32)
    waveform[::97] = 0.1
    reference = librosa.feature.melspectrogram(
        y=waveform, sr=SR, n_fft=2048, hop_length=256, pad_mode="constant"
    )
    ours = LogMelSpectrogram()(waveform[None])
    assert ours.shape[1] == reference.shape[1] == frames_for_samples(samples, 256)


def test_batch_is_processed_independently(rng):
    batch = (0.2 * rng.standard_normal((3, 3 * SR))).astype(np.float32)
    layer = LogMelSpectrogram()
    together = layer(batch).numpy()
    for i in range(3):
        np.testing.assert_array_equal(together[i], layer(batch[i : i + 1])[0].numpy())


def test_uncentred_frames_of_a_padded_signal_equal_the_centred_frames(rng):
    """`center=False` on a signal padded by n_fft // 2 gives the centred frames; so do pieces of
    it that start on a frame boundary (how `inference` processes long recordings in steps)."""
    waveform = (0.2 * rng.standard_normal(3 * SR)).astype(np.float32)
    centred = LogMelSpectrogram()(waveform[None])[0].numpy()
    padded = np.pad(waveform, 1024)[None]
    uncentred = LogMelSpectrogram(center=False)
    assert uncentred.compute_output_shape((1, padded.shape[1])) == (1, len(centred), 128)
    np.testing.assert_allclose(uncentred(padded)[0].numpy(), centred, rtol=1e-6, atol=1e-5)
    piece = uncentred(padded[:, 100 * 256 : 100 * 256 + 49 * 256 + 2048])[0].numpy()
    np.testing.assert_allclose(piece, centred[100:150], rtol=1e-6, atol=1e-5)


def test_segment_cuts_consecutive_whole_segments(rng):
    log_mel = rng.standard_normal((2584, 128)).astype(np.float32)
    segments = segment(tf.constant(log_mel), 256, 10).numpy()
    assert segments.shape == (10, 256, 128, 1)
    for i in range(10):
        np.testing.assert_array_equal(segments[i, :, :, 0], log_mel[i * 256 : (i + 1) * 256])
    assert segment(tf.constant(log_mel[:700]), 256, 10).shape == (2, 256, 128, 1)
    assert segment(tf.constant(log_mel[:255]), 256, 10).shape == (0, 256, 128, 1)
    assert segment(tf.constant(log_mel), 256, None).shape == (10, 256, 128, 1)


def test_layer_config_round_trip():
    layer = LogMelSpectrogram(
        sample_rate=16000, n_fft=1024, hop_length=128, n_mels=40, fmin=30.0, fmax=6000.0
    )
    clone = LogMelSpectrogram.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(restored, LogMelSpectrogram) and restored.n_mels == 40
