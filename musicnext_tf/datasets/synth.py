"""Deterministic synthesiser for the built-in `demo` genre dataset (no download needed).

Each genre is a small arranger: it picks a key, a tempo, a meter, a chord progression and a set of
instruments, then places notes and drum hits on a (possibly swung) grid. The genres differ the way
real ones do - in rhythm (tempo range, meter, swing, drum pattern), timbre (sine pads, band-limited
saw/square synths, Karplus-Strong plucked strings, distorted power chords, noise cymbals, kick and
snare) and harmony (triads, sevenths, power chords, drones) - while every clip draws its own key,
tempo, arrangement, instrument balance, tone colour, background noise (10-30 dB SNR) and peak level,
so no single trivial cue (loudness, one fixed frequency) gives the genre away.

Everything is vectorised numpy: instruments render short per-note buffers (cached per pitch within a
clip) that are added into per-instrument stems, which are then balanced and mixed. Randomness comes
only from `np.random.default_rng([seed, genre index, clip index])`, so a clip is reproducible and
independent of every other clip.
"""

from __future__ import annotations

import io
import math
import os
import pathlib
import re
import time
from collections.abc import Callable, Sequence

import numpy as np
import soundfile

from musicnext_tf.files import atomic_file

#: Bump when the audio a given (genre, seed, clip index) produces changes, so old caches regenerate.
GENERATOR_VERSION = "musicnext-demo-synth 1"

DEMO_GENRES: tuple[str, ...] = ("ambient", "electronic", "folk", "jazz", "reggae", "rock")

VERSION_FILE = "DEMO_VERSION"
# Hidden marker with the parameters of a run in progress, so a rerun with other parameters after an
# interruption knows the clips on disk are not its own.
_PENDING_FILE = ".DEMO_VERSION.pending"

# Temporary files are hidden (leading dot) and not `.wav`, so folder loaders never index them.
_TEMP_SUFFIX = ".partial"
# A temporary file older than this cannot belong to a writer that is still running (one clip takes
# well under a second), so it is an interrupted run's leftover and safe to delete.
_STALE_TEMP_SECONDS = 600.0

_TWO_PI = np.float32(2.0 * np.pi)
_F32 = np.float32

# Chord qualities as semitones above the chord root.
_CHORDS = {
    "maj": (0, 4, 7),
    "min": (0, 3, 7),
    "maj7": (0, 4, 7, 11),
    "min7": (0, 3, 7, 10),
    "dom7": (0, 4, 7, 10),
    "m7b5": (0, 3, 6, 10),
    "sus2": (0, 2, 7),
    "add9": (0, 4, 7, 14),
    "min9": (0, 3, 7, 10, 14),
    "5": (0, 7, 12),
}
_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_MINOR = (0, 2, 3, 5, 7, 8, 10)
_PENTA_MAJOR = (0, 2, 4, 7, 9)
_PENTA_MINOR = (0, 3, 5, 7, 10)


# --------------------------------------------------------------------------------------------
# Signal building blocks. They work in float32 (numpy's float32 sin/exp are several times faster
# than float64); only oscillator phases need care to stay in tune over long notes (`_phase`).
# --------------------------------------------------------------------------------------------


def _midi_hz(note: float) -> float:
    return 440.0 * 2.0 ** ((note - 69.0) / 12.0)


def _phase(freq, n: int, sr: int, phase0: float = 0.0) -> np.ndarray:
    """Oscillator phase in cycles wrapped to [0, 1); `freq` is a constant or a per-sample array."""
    if np.ndim(freq) != 0:
        cycles = np.cumsum(np.asarray(freq, dtype=np.float64)) / sr + phase0
        cycles -= np.floor(cycles)
        return cycles.astype(_F32)
    # Constant pitch: sample k = row * 1024 + col has phase frac(row * 1024 * inc) + frac(col *
    # inc). Both small tables are exact in float64; only their sum is formed in float32, which
    # keeps long notes in tune at a fraction of the cost of a full-length float64 computation.
    inc = float(freq) / sr
    width = 1024
    rows = -(-n // width)
    head = np.arange(rows) * (inc * width) + phase0
    tail = np.arange(width) * inc
    head -= np.floor(head)
    tail -= np.floor(tail)
    p = head.astype(_F32)[:, None] + tail.astype(_F32)[None, :]
    p -= np.floor(p)
    return p.ravel()[:n]


def _sine(freq, n: int, sr: int, phase0: float = 0.0) -> np.ndarray:
    return np.sin(_TWO_PI * _phase(freq, n, sr, phase0))


def _saw(freq, n: int, sr: int, phase0: float = 0.0) -> np.ndarray:
    """Sawtooth with polyBLEP edges: the bright analogue-synth buzz without harsh aliasing."""
    p = _phase(freq, n, sr, phase0)
    dt = _F32(min(float(np.mean(freq)) / sr, 0.5))
    y = 2.0 * p - 1.0
    lo = p < dt
    t = p[lo] / dt
    y[lo] -= t + t - t * t - 1.0
    hi = p > 1.0 - dt
    t = (p[hi] - 1.0) / dt
    y[hi] -= t * t + t + t + 1.0
    return y


def _square(freq, n: int, sr: int, phase0: float = 0.0) -> np.ndarray:
    # The difference of two half-cycle-shifted saws is a band-limited square (odd harmonics only).
    return 0.5 * (_saw(freq, n, sr, phase0) - _saw(freq, n, sr, phase0 + 0.5))


def _noise(rng: np.random.Generator, n: int) -> np.ndarray:
    # Uniform noise is cheaper than Gaussian and sounds the same once filtered and enveloped.
    return rng.random(n, dtype=_F32) * 2.0 - 1.0


def _envelope(
    n: int, sr: int, attack: float = 0.002, decay: float = math.inf, release: float = 0.0
) -> np.ndarray:
    """Linear attack, exponential decay with time constant `decay` seconds, linear fade-out."""
    t = np.arange(n, dtype=_F32) / _F32(sr)
    env = np.exp(-t / _F32(decay)) if math.isfinite(decay) else np.ones(n, _F32)
    a = min(n, int(attack * sr))
    if a > 0:
        env[:a] *= np.linspace(0.0, 1.0, a, dtype=_F32)
    r = min(n, int(release * sr))
    if r > 0:
        env[n - r :] *= np.linspace(1.0, 0.0, r, dtype=_F32)
    return env


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average: a cheap low-pass (its first null is at sr / width Hz)."""
    width = int(width)
    if width <= 1 or x.size < width:
        return x
    if width <= 24:
        return np.convolve(x, np.full(width, 1.0 / width, _F32), mode="same").astype(_F32)
    csum = np.concatenate(([0.0], np.cumsum(x, dtype=np.float64)))
    y = (csum[width:] - csum[:-width]) / width
    left = (width - 1) // 2
    return np.pad(y, (left, width - 1 - left), mode="edge").astype(_F32)


def _highpass(x: np.ndarray, width: int) -> np.ndarray:
    """Removes what a `width`-sample moving average keeps: a cheap high-pass."""
    return x - _smooth(x, width)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


def _active_rms(x: np.ndarray, sr: int) -> float:
    """RMS over the 50 ms frames where `x` is sounding (within 30 dB of its loudest frame): the
    level of a sparse part (one kick per bar, a few bells) while it plays, not diluted by rests."""
    frame = max(1, int(0.05 * sr))
    m = x.size // frame * frame
    if m == 0:
        return _rms(x)
    power = np.mean(np.square(x[:m].reshape(-1, frame), dtype=np.float64), axis=1)
    active = power[power > 1e-3 * power.max()]
    return float(np.sqrt(np.mean(active))) if active.size else 0.0


def _limit(x: np.ndarray, ceiling: float, sr: int) -> np.ndarray:
    """Look-ahead brick-wall limiter: |output| <= ceiling, with smooth gain changes.

    The gain each sample needs is held (minimum over its 12 ms block and both neighbours), then
    interpolated linearly between block centres; each interpolated value mixes two held values
    that are both at most the sample's own need, so the ceiling holds exactly while the gain moves
    smoothly (no clipping distortion)."""
    n = x.size
    w = max(2, int(0.012 * sr))
    need = _F32(ceiling) / np.maximum(np.abs(x), _F32(ceiling))
    blocks = -(-n // w)
    padded = np.ones(blocks * w, _F32)
    padded[:n] = need
    low = padded.reshape(blocks, w).min(axis=1)
    held = low.copy()
    held[1:] = np.minimum(held[1:], low[:-1])
    held[:-1] = np.minimum(held[:-1], low[1:])
    before = np.concatenate((held[:1], held[:-1]))[:, None]
    after = np.concatenate((held[1:], held[-1:]))[:, None]
    offset = (np.arange(w, dtype=_F32) - _F32((w - 1) / 2)) / _F32(w)  # from the block centre
    neighbour = np.where(offset < 0, before, after)
    gain = held[:, None] + np.abs(offset) * (neighbour - held[:, None])
    return x * gain.ravel()[:n]


def _karplus_strong(
    freq: float, seconds: float, sr: int, rng: np.random.Generator, brightness: float, tau: float
) -> np.ndarray:
    """Plucked string (Karplus-Strong): a noise burst recirculating through a delay of one period
    with a two-point average, which makes high harmonics die faster than low ones, like a string.

    The recursion y[n] = g * (y[n-N] + y[n-N-1]) / 2 only looks one period back, so a whole period
    is computed per numpy call instead of one sample per Python step.
    """
    n = max(1, int(seconds * sr))
    period = max(2, int(round(sr / freq - 0.5)))  # the average adds half a sample of delay
    blocks = n // period + 2
    y = np.zeros(blocks * period)
    burst = rng.random(period) * 2.0 - 1.0
    # A soft pluck (finger, or picking near the middle) starts with fewer high harmonics.
    soft = np.convolve(burst, np.ones(3) / 3.0, mode="same")
    burst = brightness * burst + (1.0 - brightness) * soft
    y[:period] = burst - burst.mean()
    gain = 0.5 * math.exp(-period / (sr * tau))  # the same decay time at every pitch
    y[period : 2 * period] = gain * (y[:period] + np.concatenate(([0.0], y[: period - 1])))
    for k in range(2, blocks):
        s = k * period
        block = y[s : s + period]
        np.add(y[s - period : s], y[s - period - 1 : s - 1], out=block)
        block *= gain
    out = y[:n].astype(_F32)
    out *= _envelope(n, sr, attack=0.0, release=min(0.02, seconds / 4))
    return out


# --- drums -----------------------------------------------------------------------------------


def _kick(sr: int, rng: np.random.Generator, click: float = 0.5, length: float = 0.4):
    """A pitched-down sine thump (fast downward sweep) with a short noise click for the beater."""
    n = int(length * sr)
    t = np.arange(n) / sr
    f_hi, f_lo = rng.uniform(110.0, 190.0), rng.uniform(42.0, 62.0)
    freq = f_lo + (f_hi - f_lo) * np.exp(-t / rng.uniform(0.02, 0.05))
    body = _sine(freq, n, sr) * np.exp(-t / rng.uniform(0.12, 0.3)).astype(_F32)
    m = int(0.004 * sr)
    body[:m] += click * _noise(rng, m) * np.linspace(1.0, 0.0, m, dtype=_F32)
    return body


def _snare(sr: int, rng: np.random.Generator) -> np.ndarray:
    """Bright noise rattle (the wires) over a short ~200 Hz drum-head tone."""
    n = int(0.3 * sr)
    rattle = np.diff(_noise(rng, n + 1)) * _envelope(n, sr, 0.001, rng.uniform(0.05, 0.12))
    tone = _sine(rng.uniform(160.0, 240.0), n, sr) * _envelope(n, sr, 0.001, 0.04)
    return 0.5 * rattle + 0.6 * tone


def _clap(sr: int, rng: np.random.Generator) -> np.ndarray:
    """Drum-machine clap: three quick noise bursts then a tail, band-limited to the mid-highs."""
    n = int(0.25 * sr)
    env = 0.6 * _envelope(n, sr, 0.001, 0.06)
    for k in range(3):
        m = int(k * 0.011 * sr)
        env[m:] = np.maximum(env[m:], _envelope(n - m, sr, 0.0005, 0.008))
    band = _highpass(_smooth(_noise(rng, n), 3), 12)
    return 2.0 * band * env


def _hat(sr: int, rng: np.random.Generator, decay: float) -> np.ndarray:
    """Hi-hat: twice-differentiated noise (energy above ~5 kHz) with a short or long decay."""
    n = int(min(6 * decay + 0.01, 1.0) * sr)
    hiss = np.diff(_noise(rng, n + 2), n=2) * 0.5
    return hiss * _envelope(n, sr, 0.0005, decay)


def _ride(sr: int, rng: np.random.Generator) -> np.ndarray:
    """Ride cymbal: a cluster of inharmonic metallic partials ("ping") over a long noise wash."""
    n = int(1.4 * sr)
    base = rng.uniform(550.0, 800.0)
    ping = np.zeros(n, _F32)
    for ratio, amp in ((1.0, 0.5), (1.59, 0.4), (2.37, 0.35), (3.43, 0.3), (4.81, 0.25)):
        ping += amp * _sine(base * ratio * rng.uniform(0.99, 1.01), n, sr, rng.random())
    ping *= _envelope(n, sr, 0.001, rng.uniform(0.25, 0.45))
    wash = np.diff(_noise(rng, n + 1)) * _envelope(n, sr, 0.001, rng.uniform(0.5, 0.9))
    return 0.35 * ping + 0.4 * wash


def _crash(sr: int, rng: np.random.Generator) -> np.ndarray:
    n = int(2.0 * sr)
    return np.diff(_noise(rng, n + 1)) * _envelope(n, sr, 0.002, rng.uniform(0.6, 1.1))


def _rim(sr: int, rng: np.random.Generator) -> np.ndarray:
    """Rimshot / cross-stick: a woody high click."""
    n = int(0.08 * sr)
    tone = _sine(rng.uniform(1400.0, 2100.0), n, sr) * _envelope(n, sr, 0.0005, 0.012)
    knock = _sine(rng.uniform(350.0, 500.0), n, sr) * _envelope(n, sr, 0.0005, 0.02)
    return tone + 0.6 * knock + 0.3 * np.diff(_noise(rng, n + 1)) * _envelope(n, sr, 0.0, 0.005)


def _shaker(sr: int, rng: np.random.Generator) -> np.ndarray:
    n = int(0.12 * sr)
    return np.diff(_noise(rng, n + 1)) * _envelope(n, sr, 0.015, 0.03)


# --- pitched instruments ---------------------------------------------------------------------


def _pad_note(freq: float, n: int, sr: int, rng: np.random.Generator, detune: float):
    """Soft pad voice: two slightly detuned sines (slow beating) plus a quiet octave."""
    return (
        _sine(freq * (1.0 - detune), n, sr, rng.random())
        + _sine(freq * (1.0 + detune), n, sr, rng.random())
        + 0.25 * _sine(2.0 * freq, n, sr, rng.random())
    )


def _bell(freq: float, sr: int, rng: np.random.Generator, seconds: float = 3.0) -> np.ndarray:
    """Struck-bar bell: inharmonic partials (1, 2.76, 5.4) that decay faster the higher they are."""
    n = int(seconds * sr)
    out = np.zeros(n, _F32)
    for ratio, amp, decay in ((1.0, 1.0, 1.6), (2.76, 0.45, 0.6), (5.4, 0.25, 0.25)):
        if freq * ratio < sr / 2.2:
            out += amp * _sine(freq * ratio, n, sr, rng.random()) * _envelope(n, sr, 0.003, decay)
    return out


def _epiano(freq: float, seconds: float, sr: int) -> np.ndarray:
    """Electric piano: a sine phase-modulated by itself with a decaying index (bright "tine"
    attack, mellow sustain), plus a quiet bell-like partial."""
    n = int(seconds * sr)
    p = _TWO_PI * _phase(freq, n, sr)
    index = 1.8 * _envelope(n, sr, 0.0, 0.15)
    tone = np.sin(p + index * np.sin(p)) + 0.15 * _sine(freq * 4.0, n, sr) * _envelope(
        n, sr, 0.0, 0.08
    )
    return tone * _envelope(n, sr, 0.003, 0.9, release=min(0.05, seconds / 3))


def _organ(freq: float, seconds: float, sr: int, drawbars=(1.0, 0.6, 0.35, 0.2)) -> np.ndarray:
    """Tonewheel organ: a few harmonically related sines, no decay."""
    n = int(seconds * sr)
    out = np.zeros(n, _F32)
    for h, amp in enumerate(drawbars, start=1):
        if freq * h < sr / 2.2:
            out += amp * _sine(freq * h, n, sr)
    return out * _envelope(n, sr, 0.004, release=min(0.015, seconds / 3))


def _voicing(root: int, quality: str, low: int, span: int = 12) -> list[int]:
    """Chord tones (MIDI) folded into [low, low + span): close voicings that move smoothly."""
    notes = []
    for interval in _CHORDS[quality]:
        note = root + interval
        note = low + (note - low) % 12
        while note >= low + span:
            note -= 12
        notes.append(note)
    return sorted(set(notes))


def _near(pitch_class: int, target: int) -> int:
    """The MIDI note of `pitch_class` nearest to `target`."""
    return target + ((pitch_class - target + 6) % 12) - 6


# --------------------------------------------------------------------------------------------
# One clip: per-instrument stems, a timing grid, and the final mix.
# --------------------------------------------------------------------------------------------


class _Clip:
    """The state of one clip being rendered: rng, stems, levels, and the musical grid."""

    def __init__(self, rng: np.random.Generator, n: int, sr: int):
        self.rng, self.n, self.sr = rng, n, sr
        self.seconds = n / sr
        self.stems: dict[str, np.ndarray] = {}
        self.levels: dict[str, float] = {}
        self.key = int(rng.integers(12))  # pitch class of the tonic: no fixed frequency per genre

    # --- grid ---
    def grid(self, tempo: float, beats_per_bar: int, swing: float = 0.5, jitter: float = 0.0):
        """Sets the tempo (quarter notes per minute), meter, swing ratio (0.5 straight, ~0.67
        triplet swing) and timing jitter (s), and a random start offset so the downbeat is not
        always at t = 0."""
        self.tempo, self.beats_per_bar = tempo, beats_per_bar
        self.beat = 60.0 / tempo
        self.bar = self.beat * beats_per_bar
        self.swing, self.jitter = swing, jitter
        self.origin = -self.rng.uniform(0.0, self.bar)
        self.n_bars = int(math.ceil((self.seconds - self.origin) / self.bar))

    def time(self, bar: int, position: float, jitter: bool = True) -> float:
        """Seconds of beat `position` (in beats, may be fractional) of bar `bar`, swung."""
        whole, frac = divmod(position, 1.0)
        if frac < 0.5:
            frac = frac * 2.0 * self.swing
        else:
            frac = self.swing + (frac - 0.5) * 2.0 * (1.0 - self.swing)
        t = self.origin + bar * self.bar + (whole + frac) * self.beat
        if jitter and self.jitter > 0:
            t += self.rng.normal(0.0, self.jitter)
        return t

    def chords(self, progression, bars_per_chord: int):
        """(root pitch class, quality) of the chord in each bar: the progression in the clip's key,
        starting at a random chord, each chord held for `bars_per_chord` bars."""
        start = int(self.rng.integers(len(progression)))
        out = []
        for bar in range(self.n_bars):
            step, quality = progression[(start + bar // bars_per_chord) % len(progression)]
            out.append(((self.key + step) % 12, quality))
        return out

    # --- rendering ---
    def add(self, stem: str, buf: np.ndarray, t: float, gain: float = 1.0) -> None:
        """Mixes `buf` into `stem` starting at `t` seconds (clipped to the clip)."""
        i = int(round(t * self.sr))
        a, b = max(i, 0), min(i + buf.size, self.n)
        if a >= b:
            return
        track = self.stems.get(stem)
        if track is None:
            track = self.stems[stem] = np.zeros(self.n, _F32)
        track[a:b] += _F32(gain) * buf[a - i : b - i]

    def level(self, stem: str, db: float) -> None:
        """The stem's loudness in the mix (dB re its own RMS), before per-clip randomisation."""
        self.levels[stem] = db

    def mixdown(self) -> np.ndarray:
        """Balances the stems (random +-4 dB each), colours the tone, adds background noise at a
        random SNR, masters to a random crest factor and normalises to a random peak."""
        rng = self.rng
        mix = np.zeros(self.n, _F32)
        for name in sorted(self.stems):  # sorted: the rng draw order must not depend on dicts
            stem = self.stems[name]
            level = _active_rms(stem, self.sr)
            if level > 0:
                db = self.levels.get(name, 0.0) + rng.uniform(-4.0, 4.0)
                mix += stem * _F32(10.0 ** (db / 20.0) / level)
        # Random tilt EQ, as if recorded through a darker or brighter chain.
        tilt = rng.uniform(-0.7, 0.7)
        mix = mix + _F32(tilt) * _highpass(mix, 4)
        # Background noise: white, pink-ish or rumbly, 10-30 dB under the music.
        noise = _noise(rng, self.n)
        colour = rng.uniform(0.0, 1.0)
        noise = (1.0 - colour) * noise + colour * 4.0 * _smooth(noise, int(rng.integers(8, 64)))
        snr_db = rng.uniform(10.0, 30.0)
        music_rms = max(_rms(mix), 1e-9)
        mix += noise * _F32(music_rms / max(_rms(noise), 1e-9) * 10.0 ** (-snr_db / 20.0))
        # Mastering: sparse, percussive arrangements have a much higher peak-to-RMS ratio than
        # sustained ones, so peak normalisation alone would make loudness a genre cue. Limiting
        # every clip to a crest factor drawn independently of the genre removes that cue.
        ceiling = 10.0 ** (rng.uniform(8.0, 12.0) / 20.0)
        for _ in range(2):  # limiting lowers the RMS a little; a second pass corrects for it
            mix *= _F32(1.0 / max(_rms(mix), 1e-9))
            mix = _limit(mix, ceiling, self.sr)
        peak = float(np.max(np.abs(mix)))
        target = rng.uniform(0.3, 0.95)
        if peak > 0:
            mix *= _F32(target / peak)
        return np.clip(mix, -1.0, 1.0).astype(_F32)


def _pick(rng: np.random.Generator, options: Sequence, weights: Sequence[float]):
    """One of `options` with the given relative weights. Built on `rng.random()` alone (whose
    stream numpy keeps stable) rather than `Generator.choice`."""
    cdf = np.cumsum(np.asarray(weights, dtype=np.float64))
    return options[int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))]


def _gain(rng: np.random.Generator, low: float = 0.75, high: float = 1.0) -> float:
    """A per-hit velocity."""
    return float(rng.uniform(low, high))


# --------------------------------------------------------------------------------------------
# Genres.
# --------------------------------------------------------------------------------------------


def _ambient(c: _Clip) -> None:
    """Slow, beatless: swelling detuned-sine pads on sus/add9/maj7 chords over a tonic drone,
    sparse bell tones and a wind-like noise swell. Tempo only sets how slowly chords change."""
    rng, sr = c.rng, c.sr
    c.grid(rng.uniform(60.0, 90.0), 4)
    progressions = (
        ((0, "add9"), (5, "maj7"), (9, "min7"), (7, "sus2")),
        ((0, "sus2"), (8, "maj7"), (3, "add9"), (10, "sus2")),
        ((0, "maj7"), (4, "min7"), (5, "maj7"), (0, "sus2")),
        ((0, "min9"), (8, "maj7"), (5, "min7"), (0, "sus2")),
    )
    bars_per_chord = int(rng.integers(1, 3))
    chords = c.chords(progressions[rng.integers(len(progressions))], bars_per_chord)
    detune = rng.uniform(0.002, 0.008)
    low = int(rng.integers(52, 60))
    span = bars_per_chord * c.bar
    overlap = min(1.5, 0.5 * span)
    for bar in range(0, c.n_bars, bars_per_chord):
        pc, quality = chords[bar]
        n = int((span + overlap) * sr)
        buf = np.zeros(n, _F32)
        for note in _voicing(pc, quality, low):
            buf += _pad_note(_midi_hz(note), n, sr, rng, detune)
        # Slow swell in and out, crossfading with the neighbouring chords.
        buf *= _envelope(n, sr, attack=rng.uniform(0.3, 0.6) * span, release=overlap + 0.3)
        c.add("pad", buf, c.time(bar, 0.0, jitter=False) - overlap / 2)
    c.level("pad", 0.0)

    # Tonic drone (root and fifth, low), breathing with a slow LFO.
    root = _near(c.key, 38)
    t = np.arange(c.n, dtype=_F32) / _F32(sr)
    lfo = 0.75 + 0.25 * np.sin(_TWO_PI * _F32(rng.uniform(0.03, 0.12)) * t + _F32(rng.random()))
    drone = _sine(_midi_hz(root), c.n, sr) + 0.5 * _sine(_midi_hz(root + 7), c.n, sr)
    c.add("drone", drone * lfo, 0.0)
    c.level("drone", rng.uniform(-8.0, -2.0))

    # Sparse bell tones from the major pentatonic, at irregular times (no pulse).
    scale = [c.key + 72 + s + 12 * o for o in (0, 1) for s in _PENTA_MAJOR]
    n_bells = int(rng.integers(2, 5) * c.seconds / 10.0) + 1
    for t0 in np.sort(rng.uniform(-1.0, c.seconds, n_bells)):
        note = scale[int(rng.integers(len(scale)))]
        c.add("bells", _bell(_midi_hz(note), sr, rng), float(t0), _gain(rng, 0.5, 1.0))
    c.level("bells", rng.uniform(-14.0, -6.0))

    # Wind: dark noise with a slow swell.
    wind = _smooth(_noise(rng, c.n), int(sr / rng.uniform(300.0, 1200.0)))
    swell = 0.5 + 0.5 * np.sin(_TWO_PI * _F32(rng.uniform(0.04, 0.15)) * t + _F32(rng.random()))
    c.add("wind", wind * swell * swell, 0.0)
    c.level("wind", rng.uniform(-18.0, -8.0))


def _electronic(c: _Clip) -> None:
    """House/techno: quantised four-on-the-floor kick, clap on 2 and 4, 16th and off-beat hats,
    off-beat saw bass, square/saw 16th arpeggios and a side-chain "pumping" pad, in a minor key."""
    rng, sr = c.rng, c.sr
    c.grid(rng.uniform(118.0, 135.0), 4)
    progressions = (
        ((0, "min"), (8, "maj"), (3, "maj"), (10, "maj")),
        ((0, "min"), (5, "min"), (0, "min"), (10, "maj")),
        ((0, "min7"), (0, "min7"), (8, "maj7"), (10, "maj")),
        ((0, "min"), (0, "min"), (0, "min"), (0, "min")),
    )
    chords = c.chords(progressions[rng.integers(len(progressions))], int(rng.integers(1, 3)))

    kick = _kick(sr, rng, click=rng.uniform(0.3, 1.0))
    clap = _clap(sr, rng) if rng.random() < 0.6 else _snare(sr, rng)
    hats = [_hat(sr, rng, rng.uniform(0.015, 0.035)) for _ in range(3)]
    open_hat = _hat(sr, rng, rng.uniform(0.08, 0.18))
    hat_style = int(rng.integers(3))  # 0: 16ths, 1: off-beat open hats only, 2: both
    for bar in range(c.n_bars):
        for beat in range(4):
            c.add("kick", kick, c.time(bar, beat), _gain(rng, 0.95, 1.0))
            if beat % 2 == 1:
                c.add("clap", clap, c.time(bar, beat), _gain(rng, 0.85, 1.0))
            if hat_style != 1:
                for sixteenth in range(4):
                    accent = 1.0 if sixteenth == 2 else 0.55
                    hat = hats[int(rng.integers(3))]
                    c.add("hats", hat, c.time(bar, beat + sixteenth / 4), accent * _gain(rng))
            if hat_style != 0:
                c.add("hats", open_hat, c.time(bar, beat + 0.5), _gain(rng, 0.8, 1.0))
    c.level("kick", 0.0)
    c.level("clap", rng.uniform(-8.0, -4.0))
    c.level("hats", rng.uniform(-12.0, -6.0))

    # Bass: saw+square through a low-pass, on the off-beats or rolling 16ths.
    bass_cutoff = int(sr / rng.uniform(500.0, 1400.0))
    rolling = rng.random() < 0.5
    positions = (
        [b + s / 4 for b in range(4) for s in (1, 2, 3)] if rolling else [0.5, 1.5, 2.5, 3.5]
    )
    length = c.beat * (0.22 if rolling else 0.4)
    bass_notes: dict[int, np.ndarray] = {}
    for bar in range(c.n_bars):
        note = _near(chords[bar][0], 40)
        if note not in bass_notes:
            n = int(length * sr)
            f = _midi_hz(note)
            tone = 0.6 * _saw(f, n, sr) + 0.4 * _square(f, n, sr)
            tone = _smooth(_smooth(tone, bass_cutoff), bass_cutoff)
            bass_notes[note] = tone * _envelope(n, sr, 0.003, 0.12, release=0.01)
        for pos in positions:
            c.add("bass", bass_notes[note], c.time(bar, pos), _gain(rng, 0.85, 1.0))
    c.level("bass", rng.uniform(-3.0, 0.0))

    use_lead = rng.random() < 0.7
    use_pad = (not use_lead) or rng.random() < 0.5
    if use_lead:
        # 16th-note arpeggio over the chord, entering after a few bars (a "build").
        wave = _square if rng.random() < 0.5 else _saw
        gate = rng.uniform(0.4, 0.9) * c.beat / 4
        entry = int(rng.integers(0, 4))
        pattern = rng.integers(0, 8, size=int(rng.integers(3, 6)))
        lead_notes: dict[int, np.ndarray] = {}
        cutoff = int(sr / rng.uniform(2500.0, 6000.0))
        for bar in range(entry, c.n_bars):
            tones = _voicing(chords[bar][0], chords[bar][1], 69, span=24)
            tones = tones + [x + 12 for x in tones]
            for step in range(16):
                note = tones[int(pattern[step % pattern.size]) % len(tones)]
                if note not in lead_notes:
                    n = int(gate * sr)
                    tone = _smooth(wave(_midi_hz(note), n, sr), cutoff)
                    lead_notes[note] = tone * _envelope(n, sr, 0.002, 0.08, release=0.005)
                c.add("lead", lead_notes[note], c.time(bar, step / 4), _gain(rng, 0.7, 1.0))
        c.level("lead", rng.uniform(-9.0, -4.0))
    if use_pad:
        cutoff = int(sr / rng.uniform(800.0, 2500.0))
        low = int(rng.integers(55, 62))
        for bar in range(c.n_bars):
            n = int(c.bar * sr)
            buf = np.zeros(n, _F32)
            for note in _voicing(chords[bar][0], chords[bar][1], low):
                f = _midi_hz(note)
                buf += _saw(f * 0.997, n, sr, rng.random()) + _saw(f * 1.003, n, sr, rng.random())
            buf = _smooth(buf, cutoff) * _envelope(n, sr, 0.01, release=0.01)
            c.add("pad", buf, c.time(bar, 0.0, jitter=False))
        # Side-chain pumping: the pad ducks on every kick and swells back up.
        since_beat = (np.arange(c.n) / sr - c.origin) % c.beat
        depth = rng.uniform(0.5, 0.9)
        if "pad" in c.stems:
            c.stems["pad"] *= (1.0 - depth * np.exp(-since_beat / (0.25 * c.beat))).astype(_F32)
        c.level("pad", rng.uniform(-8.0, -3.0))


def _folk(c: _Clip) -> None:
    """Acoustic: Karplus-Strong plucked guitar (finger-picked arpeggios or strummed chords) on
    major-key triads, in 4/4 or 3/4 with loose human timing; maybe a fiddle-like melody, a shaker
    and a foot stomp, but no drum kit."""
    rng, sr = c.rng, c.sr
    c.grid(
        rng.uniform(80.0, 130.0),
        3 if rng.random() < 0.4 else 4,
        swing=rng.uniform(0.5, 0.58),
        jitter=rng.uniform(0.004, 0.012),
    )
    minor = rng.random() < 0.25
    progressions = (
        (((0, "min"), (10, "maj"), (8, "maj"), (7, "maj")), ((0, "min"), (5, "min"), (10, "maj")))
        if minor
        else (
            ((0, "maj"), (5, "maj"), (7, "maj"), (0, "maj")),
            ((0, "maj"), (9, "min"), (5, "maj"), (7, "maj")),
            ((0, "maj"), (7, "maj"), (9, "min"), (5, "maj")),
        )
    )
    chords = c.chords(progressions[rng.integers(len(progressions))], int(rng.integers(1, 3)))
    brightness, tau = rng.uniform(0.3, 0.9), rng.uniform(0.7, 1.5)
    ring = min(1.2, 2.0 * tau)
    plucks: dict[int, np.ndarray] = {}

    def pluck(note: int) -> np.ndarray:
        if note not in plucks:
            plucks[note] = _karplus_strong(_midi_hz(note), ring, sr, rng, brightness, tau)
        return plucks[note]

    beats = c.beats_per_bar
    if rng.random() < 0.6:
        # Finger-picking: the thumb alternates bass notes, the fingers walk up and down the chord.
        if beats == 4:
            steps = ("b", 2, 1, 2, "a", 2, 1, 2)
        else:
            steps = ("b", 0, 1, 2, 1, 0)
        for bar in range(c.n_bars):
            pc, quality = chords[bar]
            upper = _voicing(pc, quality, 55)
            bass = _near(pc, 43)
            for i, step in enumerate(steps):
                if step == "b":
                    note = bass
                elif step == "a":
                    note = bass + 7 if bass + 7 <= 52 else bass - 5
                else:
                    note = upper[step % len(upper)]
                gain = _gain(rng, 0.8, 1.0) if isinstance(step, str) else _gain(rng, 0.5, 0.8)
                c.add("guitar", pluck(note), c.time(bar, i * 0.5), gain)
    else:
        # Strumming: down strokes sweep low to high strings, lighter up strokes high to low.
        patterns = (
            ("D", None, "D", "U", None, "U", "D", "U"),
            ("D", None, "D", None, "D", "U", "D", "U"),
            ("D", "U", "D", "U", "D", "U", "D", "U"),
        )
        pattern = patterns[int(rng.integers(3))][: 2 * beats]
        spread = rng.uniform(0.008, 0.02)
        for bar in range(c.n_bars):
            pc, quality = chords[bar]
            strings = [_near(pc, 43)] + _voicing(pc, quality, 50, 12) + _voicing(pc, quality, 62)
            for i, stroke in enumerate(pattern):
                if stroke is None:
                    continue
                order = strings if stroke == "D" else strings[::-1][:4]
                t0 = c.time(bar, i * 0.5)
                level = _gain(rng, 0.7, 1.0) if stroke == "D" else _gain(rng, 0.4, 0.6)
                for k, note in enumerate(order):
                    c.add("guitar", pluck(note), t0 + k * spread, level)
    c.level("guitar", 0.0)

    if rng.random() < 0.5:
        # A fiddle/flute-like melody: a few harmonics with vibrato, walking the scale.
        scale = [c.key + 62 + s + 12 * o for o in (0, 1) for s in (_MINOR if minor else _MAJOR)]
        idx = int(rng.integers(3, 9))
        vib_rate, vib_depth = rng.uniform(4.5, 6.5), rng.uniform(0.003, 0.008)
        for bar in range(c.n_bars):
            pos = 0.0
            while pos < beats:
                dur = _pick(rng, (1.0, 2.0, 0.5), (0.5, 0.25, 0.25))
                dur = min(dur, beats - pos)
                idx = int(np.clip(idx + rng.integers(-2, 3), 0, len(scale) - 1))
                if rng.random() < 0.85:
                    n = int(dur * c.beat * sr)
                    t = np.arange(n) / sr
                    f = _midi_hz(scale[idx]) * (1 + vib_depth * np.sin(2 * np.pi * vib_rate * t))
                    tone = _sine(f, n, sr) + 0.4 * _sine(2 * f, n, sr) + 0.2 * _sine(3 * f, n, sr)
                    tone *= _envelope(n, sr, 0.04, release=min(0.06, dur * c.beat / 3))
                    c.add("melody", tone, c.time(bar, pos), _gain(rng, 0.8, 1.0))
                pos += dur
        c.level("melody", rng.uniform(-6.0, -1.0))

    if rng.random() < 0.5:
        shaker = [_shaker(sr, rng) for _ in range(2)]
        for bar in range(c.n_bars):
            for i in range(2 * beats):
                hit = shaker[i % 2]
                c.add("shaker", hit, c.time(bar, i * 0.5), 1.0 if i % 2 else 0.6)
        c.level("shaker", rng.uniform(-16.0, -9.0))
    if rng.random() < 0.3:
        stomp = _smooth(_kick(sr, rng, click=0.1), 6)
        for bar in range(c.n_bars):
            for beat in range(0, beats, 2):
                c.add("stomp", stomp, c.time(bar, beat), _gain(rng, 0.8, 1.0))
        c.level("stomp", rng.uniform(-10.0, -4.0))


def _jazz(c: _Clip) -> None:
    """Swing: triplet-feel ride cymbal ("spang-a-lang"), hi-hat on 2 and 4, a plucked walking bass
    in quarter notes with chromatic approaches, electric-piano comping on rootless seventh-chord
    voicings (ii-V-I), and maybe a horn-like improvised line."""
    rng, sr = c.rng, c.sr
    c.grid(
        rng.uniform(110.0, 190.0),
        3 if rng.random() < 0.15 else 4,
        swing=rng.uniform(0.6, 0.7),
        jitter=rng.uniform(0.005, 0.012),
    )
    progressions = (
        ((2, "min7"), (7, "dom7"), (0, "maj7"), (9, "dom7")),
        ((0, "maj7"), (9, "min7"), (2, "min7"), (7, "dom7")),
        ((2, "m7b5"), (7, "dom7"), (0, "min7"), (0, "min7")),
        ((5, "maj7"), (4, "min7"), (2, "min7"), (7, "dom7")),
    )
    chords = c.chords(progressions[rng.integers(len(progressions))], int(rng.integers(1, 3)))
    beats = c.beats_per_bar

    rides = [_ride(sr, rng) for _ in range(2)]
    chick = _smooth(_hat(sr, rng, rng.uniform(0.02, 0.04)), 3)
    ride_positions = (0.0, 1.0, 1.5, 2.0, 3.0, 3.5) if beats == 4 else (0.0, 1.0, 1.5, 2.0, 2.5)
    feather = _kick(sr, rng, click=0.1) if rng.random() < 0.5 else None
    brush = _smooth(_snare(sr, rng), 4)
    for bar in range(c.n_bars):
        for pos in ride_positions:
            accent = 1.0 if pos in (1.0, 3.0) else 0.75
            c.add("ride", rides[int(rng.integers(2))], c.time(bar, pos), accent * _gain(rng))
        for beat in range(1, beats, 2):
            c.add("hihat", chick, c.time(bar, beat), _gain(rng, 0.8, 1.0))
        if feather is not None:
            for beat in range(beats):
                c.add("kick", feather, c.time(bar, beat), _gain(rng, 0.5, 0.7))
        for _ in range(int(rng.integers(0, 3))):  # sparse snare "comping"
            c.add("snare", brush, c.time(bar, int(rng.integers(2 * beats)) / 2), _gain(rng, 0.3))
    c.level("ride", rng.uniform(-8.0, -3.0))
    c.level("hihat", rng.uniform(-16.0, -10.0))
    c.level("kick", -14.0)
    c.level("snare", rng.uniform(-16.0, -10.0))

    # Walking bass: chord tones on beats 1-3, a chromatic or dominant approach to the next root.
    brightness, tau = rng.uniform(0.15, 0.4), rng.uniform(0.4, 0.8)
    plucks: dict[int, np.ndarray] = {}
    note = _near(chords[0][0], 40)
    for bar in range(c.n_bars):
        pc, quality = chords[bar]
        next_root = _near(chords[min(bar + 1, c.n_bars - 1)][0], note)
        tones = [_near((pc + i) % 12, note) for i in _CHORDS[quality]]
        line = [_near(pc, note)]
        for _ in range(beats - 2):
            line.append(tones[int(rng.integers(len(tones)))] + 12 * int(rng.integers(-1, 1)))
        line.append(next_root + (1 if rng.random() < 0.5 else -1))
        for beat, note in enumerate(line):
            note = int(np.clip(note, 28, 55))
            if note not in plucks:
                plucks[note] = _karplus_strong(_midi_hz(note), 1.0, sr, rng, brightness, tau)
            buf = plucks[note][: int(1.05 * c.beat * sr)]
            c.add("bass", buf, c.time(bar, beat), _gain(rng, 0.8, 1.0))
    c.level("bass", 0.0)

    # Comping: short syncopated chords (Charleston and friends) with rootless voicings.
    comps = (((0.0, 0.8), (1.5, 0.5)), ((1.5, 0.5), (3.5, 0.4)), ((0.5, 0.4), (2.0, 1.0)))
    comps = comps + (((2.5, 0.5),), ((1.0, 0.4), (2.5, 1.2)))
    low = int(rng.integers(52, 58))
    for bar in range(c.n_bars):
        pc, quality = chords[bar]
        intervals = _CHORDS[quality][1:] + (14,)  # drop the root (the bass has it), add the 9th
        voicing = sorted({low + ((pc + i - low) % 12) for i in intervals})
        for pos, length in comps[int(rng.integers(len(comps)))]:
            if pos >= beats:
                continue
            seconds = length * c.beat
            buf = sum(_epiano(_midi_hz(n), seconds, sr) for n in voicing)
            c.add("piano", buf, c.time(bar, pos), _gain(rng, 0.6, 1.0))
    c.level("piano", rng.uniform(-5.0, -1.0))

    if rng.random() < 0.5:
        # Horn: swung eighth-note phrases from the chord's scale, a breathy square tone.
        cutoff = int(sr / rng.uniform(1500.0, 3500.0))
        idx = 7
        for bar in range(c.n_bars):
            if rng.random() < 0.35:
                continue  # breathe
            pc = chords[bar][0]
            scale = [_near((pc + s) % 12, 64) + 12 * o for o in (0, 1) for s in _MAJOR]
            scale.sort()
            pos = float(rng.integers(0, 2)) * 0.5
            while pos < beats:
                step = _pick(rng, (-2, -1, 1, 2, 3), (1, 2, 2, 1, 1))
                idx = int(np.clip(idx + step, 0, len(scale) - 1))
                dur = 0.5 if rng.random() < 0.8 else 1.0
                n = int(dur * c.beat * sr * 0.95)
                tone = _smooth(_square(_midi_hz(scale[idx]), n, sr), cutoff)
                tone *= _envelope(n, sr, 0.015, 0.5, release=0.02)
                c.add("horn", tone, c.time(bar, pos), _gain(rng, 0.7, 1.0))
                pos += dur
        c.level("horn", rng.uniform(-6.0, -2.0))


def _reggae(c: _Clip) -> None:
    """Reggae: slow, laid-back one-drop (kick and rim together on beat 3 only), off-beat "skank"
    chord chops, a deep round bass riff with rests, a bubbling organ, and dub echo."""
    rng, sr = c.rng, c.sr
    c.grid(rng.uniform(66.0, 92.0), 4, swing=rng.uniform(0.5, 0.6), jitter=0.004)
    minor = rng.random() < 0.4
    progressions = (
        (((0, "min"), (5, "min")), ((0, "min"), (10, "maj")), ((0, "min"), (8, "maj"), (10, "maj")))
        if minor
        else (((0, "maj"), (5, "maj")), ((0, "maj"), (5, "maj"), (7, "maj"), (5, "maj")))
    )
    chords = c.chords(progressions[rng.integers(len(progressions))], int(rng.integers(1, 3)))

    kick = _kick(sr, rng, click=0.3)
    rim = _rim(sr, rng)
    snare = _snare(sr, rng)
    hats = [_hat(sr, rng, rng.uniform(0.02, 0.05)) for _ in range(2)]
    open_hat = _hat(sr, rng, rng.uniform(0.1, 0.2))
    style = _pick(rng, (0, 1, 2), (0.6, 0.25, 0.15))  # one drop, rockers, steppers
    kicks = ((2.0,), (0.0, 2.0), (0.0, 1.0, 2.0, 3.0))[style]
    for bar in range(c.n_bars):
        for pos in kicks:
            c.add("kick", kick, c.time(bar, pos), _gain(rng, 0.9, 1.0))
        c.add("snare", rim if rng.random() < 0.7 else snare, c.time(bar, 2.0), _gain(rng, 0.8))
        for i in range(8):
            c.add("hats", hats[i % 2], c.time(bar, i * 0.5), 1.0 if i % 2 else 0.6)
        if rng.random() < 0.3:
            c.add("hats", open_hat, c.time(bar, 3.5), _gain(rng))
    c.level("kick", 0.0)
    c.level("snare", rng.uniform(-6.0, -2.0))
    c.level("hats", rng.uniform(-16.0, -9.0))

    # Skank: bright, very short chord chops on every off-beat ("and"), with a pick scratch.
    low = int(rng.integers(58, 64))
    cutoff = int(sr / rng.uniform(3000.0, 7000.0))
    chops: dict[int, np.ndarray] = {}
    length = rng.uniform(0.08, 0.16)
    for bar in range(c.n_bars):
        pc, quality = chords[bar]
        if pc not in chops:
            n = int(length * sr)
            buf = np.zeros(n, _F32)
            for note in _voicing(pc, quality, low):
                buf += _saw(_midi_hz(note), n, sr, rng.random())
            buf = _smooth(buf, cutoff) + 1.5 * np.diff(_noise(rng, n + 1))
            chops[pc] = buf * _envelope(n, sr, 0.002, 0.04, release=0.01)
        for beat in range(4):
            c.add("skank", chops[pc], c.time(bar, beat + 0.5), _gain(rng, 0.8, 1.0))
    c.level("skank", rng.uniform(-6.0, -2.0))

    # Bass: deep, round (sine with a little saturation), a one- or two-bar riff leaving space.
    riffs = (
        ((0.0, 0.75, 0), (1.0, 0.5, 0), (1.5, 0.5, 2), (2.5, 1.0, 4)),
        ((0.5, 0.5, 0), (1.0, 1.0, 4), (2.5, 0.5, 5), (3.0, 0.5, 4)),
        ((0.0, 1.5, 0), (2.0, 0.5, -3), (2.5, 0.5, -2), (3.0, 0.75, 0)),
    )  # (beat, length in beats, scale degree from the chord root; negative = below it)
    riff = riffs[int(rng.integers(len(riffs)))]
    bass_notes: dict[tuple[int, float], np.ndarray] = {}
    for bar in range(c.n_bars):
        root = _near(chords[bar][0], 38)
        scale = _MINOR if chords[bar][1].startswith("min") else _MAJOR
        for pos, dur, degree in riff:
            note = root + scale[degree % 7] + 12 * (degree // 7)
            key = (note, dur)
            if key not in bass_notes:
                n = int(dur * c.beat * sr)
                f = _midi_hz(note)
                tone = np.tanh(1.5 * (_sine(f, n, sr) + 0.3 * _sine(2 * f, n, sr)))
                bass_notes[key] = tone * _envelope(n, sr, 0.01, 1.2, release=0.04)
            c.add("bass", bass_notes[key], c.time(bar, pos), _gain(rng, 0.85, 1.0))
    c.level("bass", rng.uniform(0.0, 3.0))

    if rng.random() < 0.5:
        # Organ "bubble": short low-high chord pairs on the 16th off-beats.
        bubbles: dict[tuple[int, int], np.ndarray] = {}
        for bar in range(c.n_bars):
            pc, quality = chords[bar]
            for beat in range(4):
                for j, offset in enumerate((0.25, 0.75)):
                    key = (pc, j)
                    if key not in bubbles:
                        notes = _voicing(pc, quality, 48 + 12 * j)
                        bubbles[key] = sum(_organ(_midi_hz(n), 0.18 * c.beat, sr) for n in notes)
                    c.add("organ", bubbles[key], c.time(bar, beat + offset), _gain(rng, 0.6))
        c.level("organ", rng.uniform(-10.0, -5.0))

    if rng.random() < 0.6:
        # Dub echo: dotted-eighth repeats of the snare/rim and the skank, each quieter.
        delay = int(0.75 * c.beat * sr)
        feedback = rng.uniform(0.3, 0.55)
        for name in ("snare", "skank"):
            stem = c.stems.get(name)
            if stem is None:  # nothing landed inside a very short clip
                continue
            echo = stem.copy()
            for k in range(1, 4):
                shift = k * delay
                if shift < c.n:
                    echo[shift:] += _F32(feedback**k) * _smooth(stem[:-shift], 2 + 2 * k)
            c.stems[name] = echo


def _rock(c: _Clip) -> None:
    """Rock: straight eighths, kick on 1 and 3 with snare backbeat on 2 and 4, crashes and fills
    every four bars, distorted power-chord guitar (palm-muted chugs, gallops or ringing chords),
    a bass doubling the roots, and maybe a distorted pentatonic lead."""
    rng, sr = c.rng, c.sr
    c.grid(rng.uniform(95.0, 150.0), 4, jitter=0.004)
    progressions = (
        ((0, "5"), (10, "5"), (5, "5"), (0, "5")),
        ((0, "5"), (8, "5"), (3, "5"), (10, "5")),
        ((0, "5"), (7, "5"), (9, "5"), (5, "5")),
        ((0, "5"), (5, "5"), (7, "5"), (5, "5")),
    )
    chords = c.chords(progressions[rng.integers(len(progressions))], int(rng.integers(1, 3)))

    kick = _kick(sr, rng, click=rng.uniform(0.5, 1.0))
    snares = [_snare(sr, rng) for _ in range(2)]
    hats = [_hat(sr, rng, rng.uniform(0.03, 0.08)) for _ in range(2)]
    ride = _ride(sr, rng) if rng.random() < 0.25 else None
    crash = _crash(sr, rng)
    kick_patterns = ((0.0, 2.0), (0.0, 2.0, 2.5), (0.0, 1.5, 2.0), (0.0, 0.5, 2.0))
    kicks = kick_patterns[int(rng.integers(len(kick_patterns)))]
    for bar in range(c.n_bars):
        for pos in kicks:
            c.add("kick", kick, c.time(bar, pos), _gain(rng, 0.9, 1.0))
        for beat in (1.0, 3.0):
            c.add("snare", snares[int(rng.integers(2))], c.time(bar, beat), _gain(rng, 0.9, 1.0))
        for i in range(8):
            hit = ride if ride is not None else hats[i % 2]
            c.add("hats", hit, c.time(bar, i * 0.5), 1.0 if i % 2 == 0 else 0.7)
        if bar % 4 == 0:
            c.add("cymbal", crash, c.time(bar, 0.0), _gain(rng, 0.8, 1.0))
        if bar % 4 == 3 and rng.random() < 0.6:  # a snare fill into the next phrase
            for s in range(4):
                c.add("snare", snares[s % 2], c.time(bar, 3.0 + s / 4), 0.6 + 0.1 * s)
    c.level("kick", 0.0)
    c.level("snare", rng.uniform(-2.0, 1.0))
    c.level("hats", rng.uniform(-14.0, -8.0))
    c.level("cymbal", rng.uniform(-14.0, -8.0))

    # Guitar: root-fifth-octave saws, enveloped per stroke, then hard-driven into tanh
    # (clipping makes the dense harmonic spectrum) and through a "cabinet" low-pass.
    drive = rng.uniform(4.0, 14.0)
    cab = int(sr / rng.uniform(3000.0, 5500.0))
    low = int(rng.integers(40, 46))
    mode = _pick(rng, (0, 1, 2), (0.5, 0.2, 0.3))  # chug, gallop, ring
    strokes = (
        tuple((i * 0.5, 0.1) for i in range(8)),
        tuple((b + s, 0.08) for b in range(4) for s in (0.0, 0.5, 0.75)),
        ((0.0, 0.9), (1.5, 0.5), (2.5, 0.9)),
    )[mode]
    n = int(c.bar * sr)
    for bar in range(c.n_bars):
        root = low + (chords[bar][0] - low) % 12
        osc = np.zeros(n, _F32)
        for interval, amp in ((0, 1.0), (7, 0.8), (12, 0.6)):
            osc += amp * _saw(_midi_hz(root + interval) * rng.uniform(0.998, 1.002), n, sr)
        env = np.zeros(n, _F32)
        for pos, decay in strokes:
            i = max(0, int((c.time(bar, pos, jitter=False) - c.time(bar, 0.0, jitter=False)) * sr))
            m = n - i
            env[i:] = np.maximum(env[i:], _envelope(m, sr, 0.002, decay * 4 * c.beat))
        buf = np.tanh(_F32(drive) * osc * env)
        buf = _highpass(_smooth(_smooth(buf, cab), cab), int(sr / 150))
        c.add("guitar", buf, c.time(bar, 0.0))
    c.level("guitar", 0.0)

    bass_notes: dict[int, np.ndarray] = {}
    cutoff = int(sr / rng.uniform(600.0, 1500.0))
    for bar in range(c.n_bars):
        note = _near(chords[bar][0], 36)
        if note not in bass_notes:
            m = int(0.45 * c.beat * sr)
            tone = _smooth(_saw(_midi_hz(note), m, sr), cutoff)
            bass_notes[note] = tone * _envelope(m, sr, 0.003, 0.3, release=0.01)
        for i in range(8):
            c.add("bass", bass_notes[note], c.time(bar, i * 0.5), _gain(rng, 0.8, 1.0))
    c.level("bass", rng.uniform(-4.0, -1.0))

    if rng.random() < 0.35:
        # Lead: distorted single notes from the minor pentatonic, with vibrato.
        scale = [c.key + 64 + s + 12 * o for o in (0, 1) for s in _PENTA_MINOR]
        idx = 4
        entry = int(rng.integers(1, 4))
        for bar in range(entry, c.n_bars):
            pos = 0.0
            while pos < 4:
                dur = _pick(rng, (0.5, 1.0, 2.0), (0.5, 0.25, 0.25))
                idx = int(np.clip(idx + rng.integers(-2, 3), 0, len(scale) - 1))
                m = int(dur * c.beat * sr)
                t = np.arange(m) / sr
                f = _midi_hz(scale[idx]) * (1 + 0.006 * np.sin(2 * np.pi * 5.5 * t))
                tone = np.tanh(6.0 * _saw(f, m, sr) * _envelope(m, sr, 0.005, 1.0, 0.03))
                c.add("lead", _smooth(tone, cab), c.time(bar, pos), _gain(rng, 0.8, 1.0))
                pos += dur
        c.level("lead", rng.uniform(-6.0, -2.0))


_ARRANGERS: dict[str, Callable[[_Clip], None]] = {
    "ambient": _ambient,
    "electronic": _electronic,
    "folk": _folk,
    "jazz": _jazz,
    "reggae": _reggae,
    "rock": _rock,
}


# --------------------------------------------------------------------------------------------
# Public API.
# --------------------------------------------------------------------------------------------


def _genre_index(genre: str) -> int:
    if genre not in DEMO_GENRES:
        raise ValueError(f"unknown demo genre {genre!r}; expected one of {list(DEMO_GENRES)}")
    return DEMO_GENRES.index(genre)


def _clip_length(seconds: float, sample_rate: int) -> int:
    if not seconds > 0:
        raise ValueError(f"seconds must be positive, got {seconds!r}")
    if int(sample_rate) != sample_rate or sample_rate < 8000:
        raise ValueError(f"sample_rate must be an integer >= 8000 Hz, got {sample_rate!r}")
    n = int(round(seconds * sample_rate))
    if n < 1:
        raise ValueError(f"seconds={seconds!r} is shorter than one sample at {sample_rate} Hz")
    return n


def synthesize_clip(
    genre: str,
    seed: int,
    seconds: float = 30.0,
    sample_rate: int = 22050,
    *,
    clip_index: int = 0,
) -> np.ndarray:
    """Renders one clip of `genre`: float32 mono in [-1, 1], length round(seconds * sample_rate).

    The same (genre, seed, clip_index) always gives identical samples. `write_demo_dataset(...,
    seed=s)` writes clip k of a genre as `synthesize_clip(genre, s, clip_index=k)`.
    """
    genre_idx = _genre_index(genre)
    n = _clip_length(seconds, sample_rate)
    if seed < 0 or clip_index < 0:
        raise ValueError(f"seed and clip_index must be >= 0, got {seed} and {clip_index}")
    rng = np.random.default_rng([int(seed), genre_idx, int(clip_index)])
    clip = _Clip(rng, n, int(sample_rate))
    _ARRANGERS[genre](clip)
    return clip.mixdown()


def _version_text(genres: Sequence[str], clips: int, seconds: float, sr: int, seed: int) -> str:
    return (
        f"{GENERATOR_VERSION}\n"
        f"genres={','.join(genres)}\n"
        f"clips_per_genre={clips}\n"
        f"seconds={seconds!r}\n"
        f"sample_rate={sr}\n"
        f"seed={seed}\n"
        "format=WAV PCM_16 mono\n"
    )


def _read_text(path: pathlib.Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def _wav_size(frames: int, sr: int) -> int:
    """Bytes of a mono 16-bit WAV of `frames` samples as libsndfile writes it (header + data)."""
    header = io.BytesIO()
    soundfile.write(header, np.zeros(0, np.int16), sr, subtype="PCM_16", format="WAV")
    return len(header.getvalue()) + 2 * frames


def _is_complete(path: pathlib.Path, frames: int, sr: int, size: int) -> bool:
    """True if `path` is a whole clip as this writer produces it (right size, rate, format)."""
    try:
        if path.stat().st_size != size:
            return False
        info = soundfile.info(str(path))
    except (OSError, RuntimeError):  # soundfile's errors derive from RuntimeError
        return False
    return (
        info.frames == frames
        and info.samplerate == sr
        and info.channels == 1
        and info.subtype == "PCM_16"
    )


def _atomic_write(path: pathlib.Path, write: Callable[[object], None]) -> None:
    """Calls `write(file)` on a hidden temporary file beside `path` that is renamed into place when
    complete (`files.atomic_file`); leftovers of killed runs end in `_TEMP_SUFFIX`."""
    with atomic_file(path, prefix=f".{path.name}.", suffix=_TEMP_SUFFIX) as file:
        write(file)


def _remove_stale_temporaries(folder: pathlib.Path) -> None:
    """Deletes temporaries that interrupted runs left behind (old enough to be nobody's)."""
    now = time.time()
    for leftover in folder.glob(f".*{_TEMP_SUFFIX}"):
        try:
            if now - leftover.stat().st_mtime > _STALE_TEMP_SECONDS:
                leftover.unlink()
        except OSError:
            pass  # another process got there first, or it is not ours to delete


def write_demo_dataset(
    root: str | os.PathLike,
    clips_per_genre: int = 32,
    seconds: float = 30.0,
    sample_rate: int = 22050,
    seed: int = 0,
    progress: bool = True,
    *,
    genres: Sequence[str] = DEMO_GENRES,
) -> pathlib.Path:
    """Writes root/<genre>/<genre>.<NNNN>.wav (16-bit PCM, mono) for each genre, then
    root/DEMO_VERSION (the generator version and parameters), and returns `root`.

    Idempotent and crash-safe: a clip that is already there whole is kept, each file is written
    to a hidden temporary name and renamed into place, and DEMO_VERSION is written last, so its
    presence means the set is complete. If the clips on disk were made with other parameters or
    another generator version (per DEMO_VERSION, or the marker an interrupted run leaves), they
    are all deleted and rewritten. Clip k of a genre equals
    `synthesize_clip(genre, seed, seconds, sample_rate, clip_index=k)`.
    """
    genres = tuple(genres)
    for genre in genres:
        _genre_index(genre)
    if not genres:
        raise ValueError("genres must name at least one demo genre")
    if int(clips_per_genre) != clips_per_genre or clips_per_genre < 1:
        raise ValueError(f"clips_per_genre must be an integer >= 1, got {clips_per_genre!r}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    clips_per_genre = int(clips_per_genre)
    frames = _clip_length(seconds, sample_rate)
    sample_rate = int(sample_rate)
    root = pathlib.Path(root)
    root.mkdir(parents=True, exist_ok=True)

    # What the clips on disk were made with: DEMO_VERSION for a finished set, the pending marker
    # for an interrupted one. If that differs from what is asked for now, none of them can be kept
    # (same-size clips of another seed would pass every check), so they are deleted first, before
    # the records of their parameters.
    version = _version_text(genres, clips_per_genre, seconds, sample_rate, seed)
    version_path, pending_path = root / VERSION_FILE, root / _PENDING_FILE
    previous = _read_text(version_path)
    on_disk = previous if previous is not None else _read_text(pending_path)
    if on_disk is not None and on_disk != version:
        for genre in DEMO_GENRES:
            for clip in (root / genre).glob(f"{genre}.*.wav"):
                if re.fullmatch(rf"{genre}\.\d{{4}}\.wav", clip.name):
                    clip.unlink()
        version_path.unlink(missing_ok=True)
        previous = None

    # Check what is already there first, so a complete set costs a few header reads and shows
    # no progress bar at all.
    size = _wav_size(frames, sample_rate)
    _remove_stale_temporaries(root)
    todo = []
    for genre in genres:
        folder = root / genre
        folder.mkdir(exist_ok=True)
        _remove_stale_temporaries(folder)
        for k in range(clips_per_genre):
            path = folder / f"{genre}.{k:04d}.wav"
            if not _is_complete(path, frames, sample_rate, size):
                todo.append((genre, k, path))

    if todo:
        _atomic_write(pending_path, lambda file: file.write(version.encode("utf-8")))
        from tqdm.auto import tqdm  # imported here: only needed when there is work to show

        for genre, k, path in tqdm(todo, desc="demo audio", unit="clip", disable=not progress):
            audio = synthesize_clip(genre, seed, seconds, sample_rate, clip_index=k)

            def write(file, audio=audio):
                soundfile.write(file, audio, sample_rate, subtype="PCM_16", format="WAV")

            _atomic_write(path, write)

    if todo or previous != version:  # left alone when nothing changed, like the clips
        _atomic_write(version_path, lambda file: file.write(version.encode("utf-8")))
    pending_path.unlink(missing_ok=True)
    return root
