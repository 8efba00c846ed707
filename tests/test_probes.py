"""Out-of-distribution probes: exact lengths and ranges, reproducible and seed-dependent clips,
the spectra of white and pink noise, (near) silence, and speech that has syllables, pauses, a
voice's pitch and a speech spectrum, checked with computations independent of the module."""

from __future__ import annotations

import ast
import sys

import numpy as np
import pytest
from scipy.signal import welch

from musicnext_tf import probes


def rms_dbfs(x: np.ndarray) -> float:
    rms = np.sqrt(np.mean(np.square(x, dtype=np.float64)))
    return -np.inf if rms == 0 else 20.0 * np.log10(rms)


def frames(x: np.ndarray, size: int) -> np.ndarray:
    """Non-overlapping frames of `size` samples (the tail is dropped), float64."""
    return x[: len(x) // size * size].astype(np.float64).reshape(-1, size)


def spectral_slope(x: np.ndarray, sr: int) -> float:
    """Slope of log10 power against log10 frequency between 100 Hz and 8 kHz (Welch)."""
    freqs, power = welch(x.astype(np.float64), fs=sr, nperseg=4096)
    band = (freqs >= 100.0) & (freqs <= 8000.0)
    return float(np.polyfit(np.log10(freqs[band]), np.log10(power[band]), 1)[0])


# --- every kind -------------------------------------------------------------------------------


@pytest.mark.parametrize("sample_rate", [16000, 22050])
@pytest.mark.parametrize("kind", probes.PROBE_KINDS)
def test_length_dtype_and_range(kind, sample_rate):
    for seconds in (1.5, 0.73):
        x = probes.probe_signal(kind, seconds, sample_rate, seed=3)
        assert x.dtype == np.float32 and x.ndim == 1
        assert len(x) == round(seconds * sample_rate)
        assert np.all(np.isfinite(x)) and np.abs(x).max() <= 1.0


@pytest.mark.parametrize("kind", probes.PROBE_KINDS)
def test_deterministic_and_seed_dependent(kind):
    a = probes.probe_signal(kind, 2.0, 16000, seed=5)
    np.testing.assert_array_equal(a, probes.probe_signal(kind, 2.0, 16000, seed=5))
    other = 7 if kind == "silence" else 6  # every even-seeded silence clip is all zeros
    assert not np.array_equal(a, probes.probe_signal(kind, 2.0, 16000, seed=other))


def test_probe_set_clips_differ_and_do_not_depend_on_other_kinds():
    full = probes.probe_set(count=3, seconds=1.0, sample_rate=16000, seed=4)
    assert list(full) == list(probes.PROBE_KINDS)
    alone = probes.probe_set(kinds=("speech",), count=3, seconds=1.0, sample_rate=16000, seed=4)
    for a, b in zip(full["speech"], alone["speech"], strict=True):
        np.testing.assert_array_equal(a, b)
    for kind in ("white_noise", "pink_noise", "speech"):
        clips = full[kind]
        assert len(clips) == 3
        assert not any(np.array_equal(clips[i], clips[j]) for i, j in ((0, 1), (0, 2), (1, 2)))
    other = probes.probe_set(kinds=("white_noise",), count=1, seconds=1.0, sample_rate=16000)
    assert not np.array_equal(other["white_noise"][0], full["white_noise"][0])


def test_unknown_kind_and_bad_duration_are_refused():
    with pytest.raises(ValueError, match="white_noise, pink_noise, silence, speech"):
        probes.probe_signal("music", 1.0, 16000, seed=0)
    with pytest.raises(ValueError, match="valid kinds"):
        probes.probe_set(kinds=("white_noise", "brown_noise"), count=1, seconds=1.0)
    for seconds in (0.0, -1.0):
        with pytest.raises(ValueError, match="seconds"):
            probes.probe_signal("white_noise", seconds, 16000, seed=0)


# --- noise and silence ------------------------------------------------------------------------


def test_noise_levels_and_spectral_slopes():
    for seed in range(3):
        white = probes.probe_signal("white_noise", 10.0, 22050, seed)
        pink = probes.probe_signal("pink_noise", 10.0, 22050, seed)
        for x in (white, pink):
            assert -30.5 <= rms_dbfs(x) <= -11.5
        assert abs(spectral_slope(white, 22050)) < 0.2
        assert abs(spectral_slope(pink, 22050) + 1.0) < 0.2


def test_silence_is_digital_silence_or_near_silence():
    clips = probes.probe_set(kinds=("silence",), count=4, seconds=2.0, sample_rate=16000)["silence"]
    for i, x in enumerate(clips):
        if i % 2 == 0:
            assert not x.any()
        else:
            assert x.any() and rms_dbfs(x) < -70.0


# --- speech -----------------------------------------------------------------------------------

SPEECH_RATE = 16000


@pytest.fixture(scope="module")
def speech_clips():
    if probes.speech_source() != "formant":
        pytest.skip("these checks are written for the formant synthesiser")
    return probes.probe_set(kinds=("speech",), count=3, seconds=30.0, sample_rate=SPEECH_RATE)[
        "speech"
    ]


def test_speech_level(speech_clips):
    for x in speech_clips:
        assert -26.5 <= rms_dbfs(x) <= -15.5 or np.abs(x).max() > 0.97  # quieter only if peaky


def test_speech_has_a_syllabic_envelope(speech_clips):
    """The modulation spectrum of the RMS envelope (10 ms frames), as power per octave (f * PSD,
    as modulation spectra are usually shown), peaks at a syllable rate of 2-8 Hz within 0.5-30 Hz;
    the pauses between phrases are slower modulations."""
    for x in speech_clips:
        envelope = np.sqrt(np.mean(frames(x, SPEECH_RATE // 100) ** 2, axis=1))
        freqs, power = welch(envelope - envelope.mean(), fs=100.0, nperseg=512)
        band = (freqs >= 0.5) & (freqs <= 30.0)
        assert 2.0 <= freqs[band][np.argmax((freqs * power)[band])] <= 8.0


def test_speech_has_pauses(speech_clips):
    for x in speech_clips:
        level = 10.0 * np.log10(np.mean(frames(x, SPEECH_RATE // 20) ** 2, axis=1) + 1e-20)
        assert np.mean(level < level.max() - 30.0) >= 0.10


def test_speech_is_voiced_at_a_speaking_pitch(speech_clips):
    """Autocorrelation pitch of the five loudest 40 ms frames of each clip: clearly periodic,
    with a fundamental between 80 and 300 Hz (searched from 50 Hz to 1 kHz)."""
    size = int(0.04 * SPEECH_RATE)
    for x in speech_clips:
        chunks = frames(x, size)
        for frame in chunks[np.argsort(np.sum(chunks**2, axis=1))[-5:]]:
            frame = frame - frame.mean()
            r = np.correlate(frame, frame, "full")[size - 1 :]
            r /= r[0]
            first_dip = int(np.argmax(r < 0.0))
            lo, hi = max(first_dip, SPEECH_RATE // 1000), SPEECH_RATE // 50
            lag = lo + int(np.argmax(r[lo:hi]))
            assert r[lag] > 0.5
            assert 80.0 <= SPEECH_RATE / lag <= 300.0


def test_speech_energy_is_mostly_below_4_khz(speech_clips):
    for x in speech_clips:
        freqs, power = welch(x.astype(np.float64), fs=SPEECH_RATE, nperseg=2048)
        assert power[freqs < 4000.0].sum() > 0.9 * power.sum()


# --- speech source ----------------------------------------------------------------------------

FAKE_ESPEAK = """#!{python}
import math, sys, wave
args = sys.argv[1:]
with open({log!r}, "a") as log:
    log.write(repr(args) + "\\n")
rate, n = 22050, 11025
with wave.open(args[args.index("-w") + 1], "wb") as out:
    out.setnchannels(1)
    out.setsampwidth(2)
    out.setframerate(rate)
    out.writeframes(b"".join(
        int(8000 * math.sin(2 * math.pi * 150 * i / rate)).to_bytes(2, "little", signed=True)
        for i in range(n)
    ))
"""


def test_speech_source_follows_the_path(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert probes.speech_source() == "formant"
    log = tmp_path / "calls.txt"
    program = tmp_path / "bin" / "espeak-ng"
    program.parent.mkdir()
    program.write_text(FAKE_ESPEAK.format(python=sys.executable, log=str(log)))
    program.chmod(0o755)
    monkeypatch.setenv("PATH", str(program.parent))
    assert probes.speech_source() == "espeak-ng"

    x = probes.probe_signal("speech", 1.2, 16000, seed=2)
    assert x.dtype == np.float32 and len(x) == 19200 and np.abs(x).max() <= 1.0
    calls = [ast.literal_eval(line) for line in log.read_text().splitlines()]
    assert len(calls) == 2  # 0.5 s utterances, each followed by a pause, until 1.2 s are filled
    for args in calls:
        assert args[:4] == ["-v", "en", "-s", args[3]] and 140 <= int(args[3]) <= 190
        assert set(args[-1].split()) <= set(probes._WORDS)
    np.testing.assert_array_equal(x, probes.probe_signal("speech", 1.2, 16000, seed=2))
