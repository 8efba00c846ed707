"""Out-of-distribution probe recordings: audio that is certainly not music of any genre.

A genre classifier always names some genre; to measure how well it *rejects* input that is no
music at all (open-set rejection), it is shown probes: white and pink noise, (near) silence and
speech. Everything is synthesised here from a seed, with no data download and no TensorFlow, so
a probe set is reproducible anywhere. Speech comes from the `espeak-ng` program when it is
installed and otherwise from a small source-filter formant synthesiser (`speech_source` says
which), whose syllables, pauses and gliding pitch make it speech-like but never musical.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import signal

PROBE_KINDS = ("white_noise", "pink_noise", "silence", "speech")

_WORDS = (
    "the time people water over after could little house world small every number sound "
    "morning river garden window letter paper travel yellow quiet simple answer city market "
    "station question reason afternoon coffee weather country follow remember open finish "
    "carry begin table evening mountain".split()
)
#: Formants F1-F4 (Hz) of /a e i o u/, adult male, after Peterson and Barney (1952).
_VOWELS = np.array(
    [
        [730, 1090, 2440, 3400],
        [530, 1840, 2480, 3500],
        [270, 2290, 3010, 3700],
        [570, 840, 2410, 3300],
        [300, 870, 2240, 3300],
    ],
    dtype=np.float64,
)
_BANDWIDTHS = np.array([80.0, 100.0, 160.0, 250.0])
#: Noise bands (Hz) of consonants: fricatives s, sh, f, then plosive bursts p, t, k.
_BANDS = ((4000, 8000), (2000, 5000), (1000, 7000), (400, 1500), (3000, 6000), (1500, 3000))
_BLOCK = 0.01  # seconds per block of constant formant filters


def speech_source() -> str:
    """Which generator `probe_signal("speech", ...)` uses: "espeak-ng" or "formant"."""
    return "espeak-ng" if shutil.which("espeak-ng") else "formant"


def probe_signal(kind: str, seconds: float, sample_rate: int, seed: int) -> np.ndarray:
    """One probe clip: mono float32 in [-1, 1], `round(seconds * sample_rate)` samples.

    white_noise/pink_noise: Gaussian noise with a flat or 1/f power spectrum at a random RMS level
    of -30..-12 dBFS. silence: exact zeros for an even `seed`, -80 dBFS white noise ("near
    silence", like a quiet room) for an odd one. speech: see `speech_source`, -26..-16 dBFS
    (lower where a peak would otherwise clip).
    """
    _check_kind(kind)
    if not seconds > 0 or sample_rate <= 0:
        raise ValueError(f"seconds and sample_rate must be > 0, got {seconds} and {sample_rate}")
    n = int(round(seconds * sample_rate))
    if n == 0:
        return np.zeros(0, np.float32)
    rng = np.random.default_rng([zlib.crc32(kind.encode()), seed])
    if kind == "silence":
        x = np.zeros(n) if seed % 2 == 0 else _at_level(rng.standard_normal(n), -80.0)
    elif kind == "white_noise":
        x = _at_level(rng.standard_normal(n), rng.uniform(-30.0, -12.0))
    elif kind == "pink_noise":
        spectrum = np.fft.rfft(rng.standard_normal(n))
        freqs = np.fft.rfftfreq(n)
        spectrum[0] = 0.0
        spectrum[1:] /= np.sqrt(freqs[1:])
        x = _at_level(np.fft.irfft(spectrum, n), rng.uniform(-30.0, -12.0))
    else:
        make = _espeak_speech if speech_source() == "espeak-ng" else _formant_speech
        x = _at_level(make(n, sample_rate, rng), rng.uniform(-26.0, -16.0))
        x *= min(1.0, 0.98 / max(np.abs(x).max(), 1e-12))  # quieter rather than clipped
    return np.clip(x, -1.0, 1.0).astype(np.float32)


def probe_set(
    kinds: Sequence[str] = PROBE_KINDS,
    count: int = 10,
    seconds: float = 30.0,
    sample_rate: int = 22050,
    seed: int = 0,
) -> dict[str, list[np.ndarray]]:
    """`count` different clips per kind; clip i of a kind is `probe_signal` with a seed drawn from
    (seed, kind, i), so it does not depend on which other kinds are asked for. That seed has the
    parity of i, so even-numbered silence clips are digital silence and odd ones near silence."""
    for kind in kinds:
        _check_kind(kind)
    return {
        kind: [
            probe_signal(kind, seconds, sample_rate, _clip_seed(seed, kind, i))
            for i in range(count)
        ]
        for kind in kinds
    }


def _check_kind(kind: str) -> None:
    if kind not in PROBE_KINDS:
        raise ValueError(f"unknown probe kind {kind!r}; valid kinds: {', '.join(PROBE_KINDS)}")


def _clip_seed(seed: int, kind: str, index: int) -> int:
    state = np.random.SeedSequence([seed, zlib.crc32(kind.encode()), index]).generate_state(1)
    return (int(state[0]) & ~1) | (index & 1)


def _at_level(x: np.ndarray, dbfs: float) -> np.ndarray:
    """`x` scaled to an RMS of `dbfs` (0 dBFS = RMS 1); all-zero input stays zero."""
    rms = np.sqrt(np.mean(np.square(x, dtype=np.float64))) if x.size else 0.0
    return x * (10.0 ** (dbfs / 20.0) / rms) if rms > 0 else x


def _espeak_speech(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Sentences of random words spoken by espeak-ng, separated by 200-600 ms pauses."""
    import soundfile
    import soxr

    parts, total = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        while total < n:
            text = " ".join(rng.choice(_WORDS, size=rng.integers(6, 15)))
            wpm = str(rng.integers(140, 191))
            subprocess.run(
                ["espeak-ng", "-v", "en", "-s", wpm, "-w", str(wav), text],
                check=True,
                capture_output=True,
            )
            audio, rate = soundfile.read(wav, dtype="float32", always_2d=True)
            audio = audio.mean(axis=1)
            if rate != sr:
                audio = soxr.resample(audio, rate, sr)
            parts += [audio, np.zeros(int(rng.uniform(0.2, 0.6) * sr), np.float32)]
            total += len(parts[-2]) + len(parts[-1])
    return np.concatenate(parts)[:n]


def _formant_speech(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Speech-like audio from a source-filter model.

    Phrases of 1-3 s, separated by 200-600 ms pauses, are made of syllables of 150-300 ms (about
    4.4 per second, with random durations so there is no beat grid). A syllable is an optional
    consonant (band-passed noise: a fricative, or a plosive's closure and burst) and a vowel: a
    Rosenberg glottal pulse train, whose pitch declines over the phrase and glides within each
    syllable (with jitter), filtered by four formant resonators whose frequencies move smoothly
    from one vowel to the next; every vowel is made equally loud at its first formant.
    """
    female = rng.random() < 0.5
    base = rng.uniform(175.0, 220.0) if female else rng.uniform(95.0, 130.0)
    voice = np.zeros(n)  # voiced amplitude envelope
    noise = np.zeros((len(_BANDS), n))  # amplitude envelope of each consonant band
    f0 = np.full(n, base)
    vowel_of = np.zeros(n, dtype=int)  # vowel index, per sample
    t = int(rng.uniform(0.1, 0.5) * sr)
    while t < n:
        phrase_end = t + int(rng.uniform(1.0, 3.0) * sr)
        start, high, low = t, base * rng.uniform(1.0, 1.2), base * rng.uniform(0.75, 0.9)
        while t < min(phrase_end, n):
            length = int(rng.uniform(0.15, 0.30) * sr)
            vowel, end = t, t + length
            onset = rng.integers(0, len(_BANDS) + 3)  # three in nine syllables start with a vowel
            if onset < 3:  # fricative
                vowel = t + int(rng.uniform(0.06, 0.11) * sr)
                noise[onset, t:vowel] = 0.25 * np.hanning(vowel - t)[: max(0, n - t)]
            elif onset < len(_BANDS):  # plosive: closure, then a burst
                burst = t + int(rng.uniform(0.03, 0.06) * sr)
                vowel = burst + int(0.015 * sr)
                noise[onset, burst:vowel] = np.exp(-np.arange(vowel - burst) / (0.004 * sr))[
                    : max(0, n - burst)
                ]
            _syllable_envelope(voice, vowel, end, sr, rng)
            position = (np.arange(t, end) - start) / max(1, phrase_end - start)
            glide = rng.uniform(-0.15, 0.15) * np.linspace(-0.5, 0.5, length)
            f0[t:end] = ((high + (low - high) * position) * (1.0 + glide))[: max(0, n - t)]
            vowel_of[t:end] = rng.integers(0, len(_VOWELS))
            t = end
        t += int(rng.uniform(0.2, 0.6) * sr)

    block = max(1, int(_BLOCK * sr))
    jitter = np.repeat(rng.normal(1.0, 0.01, n // block + 1), block)[:n]
    f0 = np.clip(f0 * jitter, 85.0, 260.0)
    phase = np.cumsum(f0 / sr) % 1.0
    pulse = np.where(  # Rosenberg pulse: 40 % opening, 16 % closing, then closed
        phase < 0.4,
        0.5 * (1.0 - np.cos(np.pi * phase / 0.4)),
        np.where(phase < 0.56, np.cos(np.pi * (phase - 0.4) / 0.32), 0.0),
    )
    source = np.diff(pulse, prepend=0.0) * voice  # derivative: lip radiation
    formants = _VOWELS[vowel_of[::block]] * (1.17 if female else 1.0)
    kernel = np.hanning(int(0.08 / _BLOCK) + 2)[1:-1]  # 80 ms formant transitions
    kernel /= kernel.sum()
    formants = np.stack(
        [np.convolve(np.pad(f, len(kernel), mode="edge"), kernel, "same") for f in formants.T],
        axis=1,
    )[len(kernel) : -len(kernel)]
    # second-order resonators with unit gain at 0 Hz; formants above 0.45 sr are left out
    radius = np.where(formants < 0.45 * sr, np.exp(-np.pi * _BANDWIDTHS / sr), 0.0)
    a1 = -2.0 * radius * np.cos(2.0 * np.pi * formants / sr)  # (blocks, 4)
    sos = np.zeros(formants.shape + (6,))
    sos[..., 0], sos[..., 3], sos[..., 4], sos[..., 5] = 1.0 + a1 + radius**2, 1.0, a1, radius**2
    # equal loudness for every vowel: divide by the filters' gain at the first formant
    z = np.exp(-2j * np.pi * formants[:, :1] / sr)
    f1_gain = np.prod(np.abs(sos[..., 0] / (1.0 + a1 * z + radius**2 * z**2)), axis=1)
    source /= np.repeat(f1_gain, block)[:n]
    voiced, state = np.zeros(n), np.zeros((len(_BANDWIDTHS), 2))
    for i, at in enumerate(range(0, n, block)):
        if source[at : at + block].any() or np.abs(state).max() > 1e-9:  # skip silent blocks
            voiced[at : at + block], state = signal.sosfilt(
                sos[i], source[at : at + block], zi=state
            )

    white = rng.standard_normal(n)
    consonants = np.zeros(n)
    for (low, high), envelope in zip(_BANDS, noise, strict=True):
        if envelope.any():
            high = min(high, 0.45 * sr)
            bands = signal.butter(2, [min(low, 0.5 * high), high], "bandpass", fs=sr, output="sos")
            consonants += signal.sosfilt(bands, white) * envelope
    voiced /= np.sqrt(np.mean(voiced**2)) + 1e-12
    return voiced + consonants


def _syllable_envelope(
    env: np.ndarray, start: int, end: int, sr: int, rng: np.random.Generator
) -> None:
    """Write a vowel's amplitude envelope (raised-cosine attack and decay) into env[start:end]."""
    if start >= min(end, len(env)):
        return
    length = end - start
    attack = int(rng.uniform(0.2, 0.4) * length)
    decay = int(rng.uniform(0.4, 0.6) * length)
    shape = np.full(length, rng.uniform(0.6, 1.0))
    shape[:attack] *= 0.5 - 0.5 * np.cos(np.pi * np.arange(attack) / max(1, attack))
    shape[length - decay :] *= 0.5 + 0.5 * np.cos(np.pi * np.arange(decay) / max(1, decay))
    env[start:end] = shape[: len(env) - start]
