"""Decoding, mixing, resampling and the clip rule, against soundfile/librosa and exact sample counts."""

from __future__ import annotations

import sys
import types

import librosa
import numpy as np
import pytest
import soundfile

from musicnext_tf.audio import (
    AudioError,
    SoundfileDecoder,
    TfioDecoder,
    clip_window,
    load_clip,
    probe,
)
from musicnext_tf.config import ConfigError


def write_tone(path, seconds, rate=22050, channels=1, subtype=None, frequency=440.0):
    t = np.arange(int(round(seconds * rate))) / rate
    tone = 0.5 * np.sin(2 * np.pi * frequency * t)
    data = (
        np.stack([tone * (c + 1) / channels for c in range(channels)], axis=1)
        if channels > 1
        else tone
    )
    soundfile.write(str(path), data, rate, subtype=subtype)
    return data


@pytest.mark.parametrize(
    "name,subtype,tolerance",
    [
        ("a.wav", "PCM_16", 1e-4),
        ("a.flac", "PCM_16", 1e-4),
        ("a.au", "PCM_16", 1e-4),
        ("a.ogg", "VORBIS", 0.05),
        ("a.mp3", "MPEG_LAYER_III", 0.05),
    ],
)
def test_decodes_every_supported_codec(tmp_path, name, subtype, tolerance):
    original = write_tone(tmp_path / name, 4.0, subtype=subtype)
    decoded = load_clip(tmp_path / name, 22050, "head", clip_seconds=30.0, min_seconds=1.0)
    assert decoded.dtype == np.float32 and decoded.ndim == 1
    assert abs(len(decoded) - len(original)) < 2500  # lossy codecs pad up to a frame or two
    # lossy codecs also delay the signal: compare one second from the middle at the best lag
    middle = original[22050:44100]
    error = min(
        np.max(np.abs(decoded[22050 + lag : 44100 + lag] - middle)) for lag in range(-2048, 2049)
    )
    assert error < tolerance


def test_stereo_is_mixed_to_the_channel_mean_and_resampled_like_librosa(tmp_path):
    data = write_tone(tmp_path / "stereo.wav", 3.0, rate=44100, channels=2, subtype="FLOAT")
    decoded = load_clip(tmp_path / "stereo.wav", 22050, "head", min_seconds=1.0)
    reference = librosa.resample(
        data.mean(axis=1).astype(np.float32), orig_sr=44100, target_sr=22050, res_type="soxr_hq"
    )
    assert decoded.shape == reference.shape == (66150,)
    np.testing.assert_allclose(decoded, reference, atol=1e-6)


@pytest.mark.parametrize("rate", [8000, 11025, 16000, 32000, 48000, 96000])
def test_unusual_sample_rates_resample_to_the_target_length(tmp_path, rate):
    write_tone(tmp_path / "x.wav", 2.0, rate=rate, frequency=300.0)
    decoded = load_clip(tmp_path / "x.wav", 22050, "head", min_seconds=1.0)
    assert len(decoded) == 44100
    spectrum = np.abs(np.fft.rfft(decoded))
    assert np.argmax(spectrum) * 22050 / len(decoded) == pytest.approx(300.0, abs=1.0)


@pytest.mark.parametrize(
    "seconds,expected",
    [
        (29.9, None),
        (30.0, (0.0, 30.0)),
        (45.0, (15.0, 45.0)),
        (59.9, (29.9, 59.9)),
        (60.0, (30.0, 60.0)),
        (300.0, (30.0, 60.0)),
    ],
)
def test_paper_clip_rule_to_the_sample(seconds, expected):
    rate = 44100
    frames = int(round(seconds * rate))
    if expected is None:
        with pytest.raises(AudioError) as error:
            clip_window(frames, rate, "paper")
        assert error.value.reason == "too_short"
        assert clip_window(frames - 1, rate, "head") == (0, frames - 1)
        return
    start, stop = clip_window(frames, rate, "paper")
    assert (start, stop) == (int(round(expected[0] * rate)), int(round(expected[1] * rate)))
    assert stop - start == 30 * rate


def test_paper_rule_boundary_is_exact_in_frames():
    rate = 22050
    with pytest.raises(AudioError):
        clip_window(30 * rate - 1, rate, "paper")
    assert clip_window(30 * rate, rate, "paper") == (0, 30 * rate)
    assert clip_window(60 * rate - 1, rate, "paper") == (30 * rate - 1, 60 * rate - 1)
    assert clip_window(60 * rate, rate, "paper") == (30 * rate, 60 * rate)


def test_head_and_full_rules():
    assert clip_window(1_000_000, 22050, "head", 30.0) == (0, 661500)
    assert clip_window(100_000, 22050, "head", 30.0) == (0, 100_000)
    assert clip_window(1_000_000, 22050, "full") == (0, 1_000_000)
    with pytest.raises(AudioError, match="too_short"):
        clip_window(1000, 22050, "head", 30.0, min_seconds=3.0)
    with pytest.raises(ValueError, match="clip rule"):
        clip_window(1000, 22050, "middle")


def test_load_clip_decodes_only_the_kept_window(tmp_path):
    rate = 8000
    seconds = 70.0
    ramp = np.linspace(-1, 1, int(seconds * rate), endpoint=False)
    soundfile.write(str(tmp_path / "song.wav"), ramp, rate, subtype="FLOAT")
    clip = load_clip(tmp_path / "song.wav", rate, "paper")
    np.testing.assert_array_equal(clip, ramp[30 * rate : 60 * rate].astype(np.float32))


def test_bad_files_raise_audio_errors_with_reasons(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "text.mp3").write_text("this is not audio")
    soundfile.write(str(tmp_path / "silent.wav"), np.zeros(5 * 22050), 22050)
    write_tone(tmp_path / "full.wav", 10.0)
    data = (tmp_path / "full.wav").read_bytes()
    (tmp_path / "truncated.wav").write_bytes(data[: len(data) // 3])
    write_tone(tmp_path / "full.au", 10.0, subtype="PCM_16")
    data = (tmp_path / "full.au").read_bytes()
    (tmp_path / "truncated.au").write_bytes(data[: len(data) // 2])
    cases = {
        "missing.wav": "missing",
        "empty.wav": "empty",
        "text.mp3": "undecodable",
        "silent.wav": "silent",
        "truncated.wav": "truncated",
        "truncated.au": "truncated",
    }
    for name, reason in cases.items():
        with pytest.raises(AudioError) as error:
            load_clip(tmp_path / name, 22050, "head", min_seconds=1.0)
        assert error.value.reason == reason, name
        assert name in str(error.value)


def test_probe_reports_header_facts(tmp_path):
    write_tone(tmp_path / "x.flac", 2.5, rate=44100, channels=2)
    info = probe(tmp_path / "x.flac")
    assert (info.sample_rate, info.frames, info.channels) == (44100, 110250, 2)
    assert info.duration == pytest.approx(2.5)


# 32-bit integers at full scale and near zero; 0x7FC00000 and 0x7FFFFFFF are NaN as float32 bits
INT32_SAMPLES = np.array(
    [0, 1, -1, 12345, -99999, 2**30, -(2**30), 0x7FC00000, 2**31 - 1, -(2**31)], np.int64
).astype(np.int32)


def write_int32_wav(path, rate=8000, seconds=1.5) -> np.ndarray:
    """A 32-bit integer PCM WAV repeating INT32_SAMPLES; returns its samples as written."""
    samples = np.resize(INT32_SAMPLES, int(rate * seconds))
    soundfile.write(str(path), samples, rate, subtype="PCM_32")
    return samples


def test_soundfile_reads_32_bit_integer_wav_at_full_scale(tmp_path):
    samples = write_int32_wav(tmp_path / "int32.wav")
    assert soundfile.info(str(tmp_path / "int32.wav")).subtype == "PCM_32"
    decoded = load_clip(tmp_path / "int32.wav", 8000, "head", min_seconds=1.0)
    # all 32 bits count: 12345 / 2**31 would read as 0 from the top 16 or 24 bits
    np.testing.assert_array_equal(decoded, samples.astype(np.float32) / np.float32(2**31))


class TfioLikeWav:
    """tensorflow-io's `AudioIOTensor` on a 32-bit WAV as its WAV kernel reads one
    (tensorflow/io, core/kernels/audio_video_wav_kernels.cc): float32 whatever the header's
    format tag, the file's bytes copied unchanged."""

    def __init__(self, path: str):
        self.path = path

    def __getitem__(self, window: slice):
        integers = soundfile.info(self.path).subtype == "PCM_32"
        samples, _ = soundfile.read(
            self.path,
            dtype="int32" if integers else "float32",
            start=window.start,
            stop=window.stop,
            always_2d=True,
        )
        return types.SimpleNamespace(numpy=lambda: samples.view(np.float32))


@pytest.mark.parametrize("subtype", ["PCM_32", "FLOAT"])
def test_tfio_path_scales_32_bit_integers_that_tensorflow_io_types_as_floats(
    tmp_path, monkeypatch, subtype
):
    """Runs without tensorflow-io: a stand-in returns what its WAV kernel returns."""
    path = tmp_path / "x.wav"
    if subtype == "PCM_32":
        write_int32_wav(path)
    else:
        write_tone(path, 1.5, rate=8000, subtype="FLOAT")
    fake = types.SimpleNamespace(audio=types.SimpleNamespace(AudioIOTensor=TfioLikeWav))
    monkeypatch.setitem(sys.modules, "tensorflow_io", fake)
    ours = TfioDecoder().read(path, 100, 9000)
    np.testing.assert_array_equal(ours, SoundfileDecoder().read(path, 100, 9000))


@pytest.fixture(scope="module")
def tfio_loads(tmp_path_factory):
    """Skips unless tensorflow-io decodes here: its import succeeds on TensorFlow >= 2.18 too,
    where its ops then fail to load, so a tiny WAV is decoded through it."""
    path = tmp_path_factory.mktemp("tfio") / "probe.wav"
    write_tone(path, 0.1, rate=8000, subtype="PCM_16")
    try:
        TfioDecoder().read(path, 0, 800)
    except ConfigError as error:  # not installed, or its ops do not load on this TensorFlow
        pytest.skip(f"tensorflow-io does not decode here: {error}")


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT"])
def test_tfio_decodes_wav_like_soundfile(tfio_loads, tmp_path, subtype):
    path = tmp_path / "x.wav"
    if subtype == "PCM_32":
        write_int32_wav(path)
    else:
        write_tone(path, 1.5, rate=8000, channels=2, subtype=subtype)
    theirs = load_clip(path, 8000, "head", min_seconds=1.0, decoder="soundfile")
    ours = load_clip(path, 8000, "head", min_seconds=1.0, decoder="tfio")
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-7)
