"""In-graph WAV decoding, mixing and resampling (`musicnext_tf.graph_audio`) against the numpy
reference path: soundfile, numpy's mean and soxr HQ."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
import soundfile
import soxr
import tensorflow as tf

from musicnext_tf.audio import resample, to_mono
from musicnext_tf.features import LogMelSpectrogram
from musicnext_tf.graph_audio import (
    SUPPORTED_RATES,
    Resampler,
    decode_wav,
    mix_to_mono,
    output_length,
)

SUBTYPES = ("PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE")
WAVE_FORMAT_EXTENSIBLE = 0xFFFE

# one trace serves every well-formed file; the eager path is exercised separately
_decode = tf.function(decode_wav, input_signature=[tf.TensorSpec([], tf.string)])


@pytest.fixture(scope="module")
def resampler():
    return Resampler(22050)


@pytest.fixture(scope="module")
def resampler_16k():
    return Resampler(16000)


def _wav(samples: np.ndarray, rate: int, subtype: str, format: str = "WAV") -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, subtype=subtype, format=format)
    return buffer.getvalue()


def _soundfile(contents: bytes) -> tuple[np.ndarray, int]:
    return soundfile.read(io.BytesIO(contents), dtype="float64", always_2d=True)


def _chunk(chunk_id: bytes, body: bytes) -> bytes:
    """A RIFF chunk, padded to even length."""
    return chunk_id + struct.pack("<I", len(body)) + body + b"\0" * (len(body) % 2)


def _fmt(tag: int = 1, channels: int = 2, rate: int = 44100, bits: int = 16) -> bytes:
    align = channels * bits // 8
    return _chunk(b"fmt ", struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits))


def _riff(*chunks: bytes) -> bytes:
    body = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _pcm16(frames: int, channels: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-32768, 32768, (frames, channels), dtype=np.int16)


def _music(rate: int, seconds: float, channels: int = 2, seed: int = 0) -> np.ndarray:
    """Music-like float32 [frames, channels]: harmonic notes with decaying envelopes, noise bursts,
    and steady tones near and above 11025 Hz (the 22050 Hz target's Nyquist)."""
    rng = np.random.default_rng(seed)
    frames = int(rate * seconds)
    t = np.arange(frames) / rate
    out = np.zeros((frames, channels))
    for channel in range(channels):
        x = out[:, channel]
        for _ in range(int(6 * seconds)):
            f0, start = 55 * 2 ** rng.uniform(0, 5), rng.uniform(0, seconds)
            k = np.arange(1, min(int(min(rate / 2, 16000) / f0), 40) + 1)
            amplitudes = rng.uniform(0.3, 1, len(k)) / k ** rng.uniform(0.5, 1.5)
            note = slice(int(start * rate), min(frames, int((start + 1) * rate)))
            envelope = np.exp(-(t[note] - start) / rng.uniform(0.05, 0.5))
            partials = np.sin(
                2 * np.pi * f0 * k[:, None] * t[note] + rng.uniform(0, 6, (len(k), 1))
            )
            x[note] += 0.1 * envelope * (amplitudes @ partials)
        for _ in range(int(3 * seconds)):  # white noise bursts
            start = int(rng.uniform(0, seconds) * rate)
            burst = x[start : start + int(rng.uniform(0.02, 0.2) * rate)]
            burst += 0.1 * rng.standard_normal(len(burst)) * np.exp(-np.arange(len(burst)) / 500)
        for f in (9500, 10300, 10800, 11000, 11500, 13000, 20000):
            if f < rate / 2:
                x += 0.02 * np.sin(2 * np.pi * f * t + rng.uniform(0, 6))
    return (0.9 * out / np.abs(out).max()).astype(np.float32)


def _log_mel_difference(reference: np.ndarray, other: np.ndarray, rate: int = 22050):
    """Max and mean |dB difference| of the 128-band log-mels, over bins within 80 dB of the
    reference's loudest."""
    layer = LogMelSpectrogram(sample_rate=rate)
    a = layer(tf.constant(reference[None], tf.float32)).numpy()[0]
    b = layer(tf.constant(other[None], tf.float32)).numpy()[0]
    kept = a >= a.max() - 80.0
    difference = np.abs(a - b)[kept]
    return difference.max(), difference.mean()


# --- decode_wav ------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [8000, 44100, 96000])
@pytest.mark.parametrize("channels", [1, 2, 6])
@pytest.mark.parametrize("subtype", SUBTYPES)
def test_decode_wav_matches_soundfile(subtype, channels, rate):
    samples = np.random.default_rng(channels).uniform(-1, 1, (301, channels))
    contents = _wav(samples, rate, subtype)
    expected, expected_rate = _soundfile(contents)
    audio, decoded_rate = _decode(contents)
    assert int(decoded_rate) == expected_rate == rate
    # float32 of soundfile's float64: exact for 8/16/24-bit and float, rounded for 32/64-bit
    np.testing.assert_array_equal(audio.numpy(), expected.astype(np.float32))


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"])
def test_decode_wav_extensible(subtype):
    for channels in (2, 6):
        contents = _wav(
            np.random.default_rng(3).uniform(-1, 1, (200, channels)), 48000, subtype, "WAVEX"
        )
        assert struct.unpack("<H", contents[20:22])[0] == WAVE_FORMAT_EXTENSIBLE
        expected, _ = _soundfile(contents)
        audio, rate = _decode(contents)
        assert int(rate) == 48000
        np.testing.assert_array_equal(audio.numpy(), expected.astype(np.float32))


def test_decode_wav_eager_matches_graph():
    contents = _wav(np.random.default_rng(4).uniform(-1, 1, (100, 2)), 22050, "PCM_24")
    audio, rate = decode_wav(tf.constant(contents))
    np.testing.assert_array_equal(audio.numpy(), _decode(contents)[0].numpy())
    assert int(rate) == 22050


def test_decode_wav_skips_other_chunks():
    """LIST (with an odd-sized INFO string), fact and an odd-sized unknown chunk, before and
    between fmt and data; soundfile reads the same file."""
    pcm = _pcm16(50, 2)
    info = _chunk(b"LIST", b"INFO" + _chunk(b"INAM", b"odd title"))
    contents = _riff(
        _chunk(b"odd ", b"12345"),
        _fmt(channels=2, rate=32000),
        info,
        _chunk(b"fact", struct.pack("<I", 50)),
        _chunk(b"junk", b"abc"),
        _chunk(b"data", pcm.tobytes()),
        _chunk(b"LIST", b"INFO"),
    )
    audio, rate = _decode(contents)
    assert int(rate) == 32000
    np.testing.assert_array_equal(audio.numpy(), pcm / np.float32(32768))
    np.testing.assert_array_equal(audio.numpy(), _soundfile(contents)[0].astype(np.float32))


def test_decode_wav_truncated_data_keeps_whole_frames():
    pcm = _pcm16(40, 2)
    contents = _riff(_fmt(channels=2), _chunk(b"data", pcm.tobytes()))
    cut = contents[: len(contents) - 4 * 10 - 3]  # 10 frames and 3 of the 4 bytes of an 11th gone
    audio, _ = _decode(cut)
    np.testing.assert_array_equal(audio.numpy(), pcm[:29] / np.float32(32768))


def test_decode_wav_streaming_data_size():
    pcm = _pcm16(33, 3)
    header = _fmt(channels=3, rate=16000)
    contents = _riff(header) + b"data" + b"\xff\xff\xff\xff" + pcm.tobytes()
    audio, rate = _decode(contents)
    assert int(rate) == 16000
    np.testing.assert_array_equal(audio.numpy(), pcm / np.float32(32768))


def test_decode_wav_empty_data_chunk():
    audio, rate = _decode(_riff(_fmt(channels=2), _chunk(b"data", b"")))
    assert audio.shape == (0, 2) and int(rate) == 44100


def _error(contents: bytes, eager: bool = False) -> str:
    with pytest.raises(tf.errors.InvalidArgumentError) as raised:
        if eager:
            decode_wav(tf.constant(contents))
        else:
            _decode(contents)
    return raised.value.message


@pytest.mark.parametrize("eager", [False, True])
def test_decode_wav_rejects_what_is_not_wav(eager):
    for contents in (
        b"",
        b"ID3\x04\x00\x00\x00\x00\x00\x0f" + bytes(200),
        b"RIFF",
        b"fLaC" + bytes(50),
    ):
        message = _error(contents, eager)
        assert "not a WAV file" in message and "PCM 8 (unsigned), 16, 24 or 32 bits" in message


@pytest.mark.parametrize(
    ("subtype", "words"), [("ULAW", "format tag 7 (mu-law)"), ("ALAW", "format tag 6 (A-law)")]
)
def test_decode_wav_rejects_companded_audio(subtype, words):
    message = _error(_wav(np.zeros((100, 1)), 8000, subtype))
    assert "unsupported WAV encoding" in message and words in message
    assert "IEEE float 32 or 64 bits" in message


def test_decode_wav_rejects_12_bit_pcm():
    contents = _riff(_fmt(channels=1, bits=12), _chunk(b"data", bytes(30)))
    message = _error(contents, eager=True)
    assert "unsupported WAV encoding: format tag 1, 12 bits per sample" in message


def test_decode_wav_rejects_missing_chunks():
    assert "has no data chunk" in _error(_riff(_fmt(), _chunk(b"LIST", b"INFO")))
    assert "has no fmt chunk" in _error(_riff(_chunk(b"data", bytes(8))), eager=True)


# --- mix_to_mono ---------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 2, 6])
def test_mix_to_mono_is_numpy_mean(channels):
    audio = np.random.default_rng(channels).uniform(-1, 1, (3, 1000, channels)).astype(np.float32)
    expected = np.stack([to_mono(clip) for clip in audio])
    np.testing.assert_array_equal(mix_to_mono(audio).numpy(), expected)


# --- Resampler -------------------------------------------------------------------------------


def test_output_length_is_soxr():
    for rate in SUPPORTED_RATES:
        for target in (22050, 16000):
            for n in (1, 2, 3, 5, 7, 11, 100, 101, 999, 4001):
                expected = len(soxr.resample(np.zeros(n, np.float32), rate, target, quality="HQ"))
                assert output_length(n, rate, target) == expected, (rate, target, n)


@pytest.mark.parametrize("rate", SUPPORTED_RATES)
def test_resampler_matches_soxr(resampler, rate):
    mono = to_mono(_music(rate, 2.0, seed=rate))
    expected = resample(mono, rate, 22050)
    resampled = resampler(mono[None], rate).numpy()[0]
    assert resampled.shape == expected.shape
    assert np.abs(resampled - expected).max() < 1e-5
    worst, mean = _log_mel_difference(expected, resampled)
    assert worst < 0.01 and mean < 1e-3, (worst, mean)


@pytest.mark.parametrize("rate", [r for r in SUPPORTED_RATES if r != 16000])
def test_resampler_to_16k_matches_soxr(resampler_16k, rate):
    mono = to_mono(_music(rate, 1.0, seed=rate + 1))
    expected = resample(mono, rate, 16000)
    resampled = resampler_16k(mono[None], rate).numpy()[0]
    assert resampled.shape == expected.shape
    assert np.abs(resampled - expected).max() < 1e-5
    worst, mean = _log_mel_difference(expected, resampled, rate=16000)
    assert worst < 0.01 and mean < 1e-3, (worst, mean)


def test_resampler_short_inputs_and_batches(resampler):
    """Every length from 0 up, soxr's start and end included, for a batch of clips."""
    rng = np.random.default_rng(5)
    for rate in (8000, 44100, 48000, 96000):
        for n in (0, 1, 2, 3, 4, 9, 57, 400, 2001):
            batch = rng.uniform(-0.5, 0.5, (3, n)).astype(np.float32)
            resampled = resampler(batch, rate).numpy()
            assert resampled.shape == (3, output_length(n, rate, 22050)), (rate, n)
            if n:
                expected = np.stack([resample(clip, rate, 22050) for clip in batch])
                np.testing.assert_allclose(resampled, expected, rtol=0, atol=1e-5)


def test_resampler_identity_at_target_rate(resampler):
    waveform = np.random.default_rng(6).uniform(-1, 1, (2, 777)).astype(np.float32)
    np.testing.assert_array_equal(resampler(waveform, 22050).numpy(), waveform)


def test_resampler_rejects_unsupported_rate(resampler):
    listed = ", ".join(str(rate) for rate in SUPPORTED_RATES)
    with pytest.raises(tf.errors.InvalidArgumentError, match="unsupported sample rate") as raised:
        resampler(tf.zeros([1, 100]), 12345)
    assert "12345" in str(raised.value) and listed in str(raised.value)
    traced = tf.function(resampler)
    with pytest.raises(tf.errors.InvalidArgumentError, match=listed):
        traced(tf.zeros([1, 100]), tf.constant(12345))


def test_resampler_constants_stay_small(resampler):
    assert 100_000 < resampler.constant_floats < 1_000_000


# --- a SavedModel that takes WAV bytes ---------------------------------------------------------


def test_saved_model_decodes_mixes_and_resamples(resampler, tmp_path):
    @tf.function(input_signature=[tf.TensorSpec([], tf.string, name="wav")])
    def waveform(wav):
        audio, rate = decode_wav(wav)
        return resampler(mix_to_mono(audio[None]), rate)[0]

    module = tf.Module()
    module.waveform = waveform
    tf.saved_model.save(module, str(tmp_path), signatures={"serving_default": waveform})
    served = tf.saved_model.load(str(tmp_path)).signatures["serving_default"]

    contents = _wav(_music(44100, 3.0, channels=2, seed=9), 44100, "PCM_24")
    samples, rate = soundfile.read(io.BytesIO(contents), dtype="float32", always_2d=True)
    expected = resample(to_mono(samples), rate, 22050)
    result = served(wav=tf.constant(contents))["output_0"].numpy()
    assert result.shape == expected.shape
    assert np.abs(result - expected).max() < 1e-5
    worst, _ = _log_mel_difference(expected, result)
    assert worst < 0.01

    # the same graph takes another rate, channel count and encoding
    mono = _music(48000, 0.5, channels=1, seed=10)
    other = served(wav=tf.constant(_wav(mono, 48000, "PCM_16")))["output_0"].numpy()
    assert other.shape == (output_length(24000, 48000, 22050),)
    with pytest.raises(tf.errors.InvalidArgumentError, match="not a WAV file"):
        served(wav=tf.constant(b"ID3\x04" + bytes(100)))


# --- LiteRT --------------------------------------------------------------------------------------


def test_resampler_converts_to_litert_builtins(resampler):
    """mix_to_mono + Resampler convert with builtin ops only (tf.cond, not switch_case) and run in
    the plain LiteRT interpreter; decode_wav's string ops are not LiteRT builtins."""
    interpreter = pytest.importorskip("ai_edge_litert.interpreter")

    @tf.function(
        input_signature=[
            tf.TensorSpec([1, None, None], tf.float32, name="audio"),
            tf.TensorSpec([], tf.int32, name="rate"),
        ]
    )
    def waveform(audio, rate):
        return resampler(mix_to_mono(audio), rate)

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [waveform.get_concrete_function()], tf.Module()
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    runner = interpreter.Interpreter(model_content=converter.convert()).get_signature_runner()
    for rate in (8000, 22050, 44100, 96000):
        audio = _music(rate, 0.5, channels=2, seed=rate)
        expected = resample(to_mono(audio), rate, 22050)
        result = runner(audio=audio[None], rate=np.array(rate, np.int32))["output_0"][0]
        assert result.shape == expected.shape
        np.testing.assert_allclose(result, expected, rtol=0, atol=1e-5)
