"""The arranging toolkit of the demo synthesiser: harmony, one clip's timing grid and stems, the mix.

A genre arranger (`genres`) asks a `Clip` for a tempo grid and chord progression, adds note and
drum buffers into named stems, and sets each stem's level; `Clip.mixdown` then balances, colours,
adds background noise, masters and normalises, the same way for every genre so that loudness is no
genre cue.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from musicnext_tf.demo_music.signals import F32, active_rms, highpass, limit, noise, rms, smooth

# Chord qualities as semitones above the chord root.
CHORDS = {
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
MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)
PENTA_MAJOR = (0, 2, 4, 7, 9)
PENTA_MINOR = (0, 3, 5, 7, 10)


def close_voicing(root: int, quality: str, low: int, span: int = 12) -> list[int]:
    """Chord tones (MIDI) folded into [low, low + span): close voicings that move smoothly."""
    notes = []
    for interval in CHORDS[quality]:
        note = root + interval
        note = low + (note - low) % 12
        while note >= low + span:
            note -= 12
        notes.append(note)
    return sorted(set(notes))


def nearest_note(pitch_class: int, target: int) -> int:
    """The MIDI note of `pitch_class` nearest to `target`."""
    return target + ((pitch_class - target + 6) % 12) - 6


class Clip:
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

    def random_chords(self, progressions):
        """`chords` of one of `progressions`, picked at random, each chord held for 1 or 2 bars."""
        progression = progressions[self.rng.integers(len(progressions))]
        return self.chords(progression, int(self.rng.integers(1, 3)))

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
            track = self.stems[stem] = np.zeros(self.n, F32)
        track[a:b] += F32(gain) * buf[a - i : b - i]

    def level(self, stem: str, db: float) -> None:
        """The stem's loudness in the mix (dB re its own RMS), before per-clip randomisation."""
        self.levels[stem] = db

    def mixdown(self) -> np.ndarray:
        """Balances the stems (random +-4 dB each), colours the tone, adds background noise at a
        random SNR, masters to a random crest factor and normalises to a random peak."""
        rng = self.rng
        mix = np.zeros(self.n, F32)
        for name in sorted(self.stems):  # sorted: the rng draw order must not depend on dicts
            stem = self.stems[name]
            level = active_rms(stem, self.sr)
            if level > 0:
                db = self.levels.get(name, 0.0) + rng.uniform(-4.0, 4.0)
                mix += stem * F32(10.0 ** (db / 20.0) / level)
        # Random tilt EQ, as if recorded through a darker or brighter chain.
        tilt = rng.uniform(-0.7, 0.7)
        mix = mix + F32(tilt) * highpass(mix, 4)
        # Background noise: white, pink-ish or rumbly, 10-30 dB under the music.
        hiss = noise(rng, self.n)
        colour = rng.uniform(0.0, 1.0)
        hiss = (1.0 - colour) * hiss + colour * 4.0 * smooth(hiss, int(rng.integers(8, 64)))
        snr_db = rng.uniform(10.0, 30.0)
        music_rms = max(rms(mix), 1e-9)
        mix += hiss * F32(music_rms / max(rms(hiss), 1e-9) * 10.0 ** (-snr_db / 20.0))
        # Mastering: sparse, percussive arrangements have a much higher peak-to-RMS ratio than
        # sustained ones, so peak normalisation alone would make loudness a genre cue. Limiting
        # every clip to a crest factor drawn independently of the genre removes that cue.
        ceiling = 10.0 ** (rng.uniform(8.0, 12.0) / 20.0)
        for _ in range(2):  # limiting lowers the RMS a little; a second pass corrects for it
            mix *= F32(1.0 / max(rms(mix), 1e-9))
            mix = limit(mix, ceiling, self.sr)
        peak = float(np.max(np.abs(mix)))
        target = rng.uniform(0.3, 0.95)
        if peak > 0:
            mix *= F32(target / peak)
        return np.clip(mix, -1.0, 1.0).astype(F32)


def pick(rng: np.random.Generator, options: Sequence, weights: Sequence[float]):
    """One of `options` with the given relative weights. Built on `rng.random()` alone (whose
    stream numpy keeps stable) rather than `Generator.choice`."""
    cdf = np.cumsum(np.asarray(weights, dtype=np.float64))
    return options[int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))]


def velocity(rng: np.random.Generator, low: float = 0.75, high: float = 1.0) -> float:
    """A per-hit velocity."""
    return float(rng.uniform(low, high))
