"""A deterministic synthesiser of small genre-like recordings for the built-in `demo` dataset.

Each genre is a recipe of rhythm (tempo range, drum pattern, swing), timbre (instrument models) and
harmony (chord qualities and progressions). Key, tempo, instrument levels, loudness and background
noise are drawn per clip, so no single trivial cue (a fixed pitch, the level) separates the genres;
a CNN on log-mel spectrograms has to learn rhythm and timbre, as on real music.

Pure numpy; the same (genre, seed) gives the same samples on every platform.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile

GENERATOR_VERSION = "1"
TABLE_SIZE = 2048
DEMO_GENRES = ("ambient", "classical", "electronic", "jazz", "reggae", "rock")

MAJOR, MINOR = (0, 4, 7), (0, 3, 7)
SEVENTH_CHORDS = ((0, 4, 7, 11), (0, 3, 7, 10), (0, 4, 7, 10))
PROGRESSIONS = ((0, 5, 7, 5), (0, 9, 5, 7), (0, 7, 9, 5), (0, 2, 7, 0), (0, 5, 2, 7))


def midi_hz(note: float) -> float:
    return 440.0 * 2.0 ** ((note - 69.0) / 12.0)


class Track:
    """An output buffer that instrument notes are mixed into, one instrument bus at a time."""

    def __init__(self, seconds: float, rate: int, rng: np.random.Generator):
        self.rate = rate
        self.rng = rng
        self.buses: dict[str, np.ndarray] = {}
        self.length = int(round(seconds * rate))

    def add(self, bus: str, start_seconds: float, sound: np.ndarray) -> None:
        out = self.buses.setdefault(bus, np.zeros(self.length))
        start = int(round(start_seconds * self.rate))
        if start >= self.length or start + len(sound) <= 0:
            return
        sound = sound[max(0, -start) : self.length - start]
        out[max(0, start) : max(0, start) + len(sound)] += sound

    def mix(self, gains_db: dict[str, float]) -> np.ndarray:
        total = np.zeros(self.length)
        for bus, signal in self.buses.items():
            peak = np.max(np.abs(signal)) or 1.0
            total += signal / peak * 10.0 ** (gains_db.get(bus, 0.0) / 20.0)
        return total


# Instrument models: each returns a mono note of `seconds` at `rate` Hz.


def _time(seconds: float, rate: int) -> np.ndarray:
    return np.arange(int(seconds * rate)) / rate


def envelope(t: np.ndarray, attack: float, decay: float) -> np.ndarray:
    """Linear attack, then exponential decay with time constant `decay`."""
    return np.minimum(1.0, t / max(attack, 1e-4)) * np.exp(-np.maximum(t - attack, 0.0) / decay)


@functools.lru_cache(maxsize=256)
def wavetable(brightness: float, harmonics: int) -> np.ndarray:
    """One period of a band-limited tone: harmonic h has amplitude 1 / h^(2 - brightness)."""
    phase = np.arange(TABLE_SIZE + 1) / TABLE_SIZE  # one extra point closes the period
    numbers = np.arange(1, harmonics + 1)[:, None]
    return np.sum(np.sin(2 * np.pi * numbers * phase) / numbers ** (2.0 - brightness), axis=0)


def harmonic_tone(
    freq, seconds, rate, brightness=1.0, decay_per_harmonic=0.0, vibrato=0.0, detune=0.0
):
    """A band-limited tone read from a wavetable with a phase accumulator.

    Args:
        brightness: 0 (dull, mostly fundamental) to ~1.2 (bright, saw-like).
        decay_per_harmonic: > 0 cross-fades from the bright tone to a pure sine at that rate
            (the upper harmonics of a plucked string die first).
        vibrato: depth in semitones at 5.5 Hz.
        detune: relative detuning of a second, equal copy (chorus).
    """
    t = _time(seconds, rate)
    harmonics = int(max(1, min(24, (rate / 2 - 100) // freq)))
    frequency = (
        freq * 2.0 ** (vibrato * np.sin(2 * np.pi * 5.5 * t) / 12.0)
        if vibrato
        else np.full(t.size, freq)
    )
    tone = np.zeros(t.size)
    for factor in (1.0, 1.0 + detune) if detune else (1.0,):
        cycles = np.cumsum(frequency * factor) / rate
        position = (cycles % 1.0) * TABLE_SIZE
        bright = np.interp(
            position, np.arange(TABLE_SIZE + 1), wavetable(round(brightness, 2), harmonics)
        )
        if decay_per_harmonic:
            fade = np.exp(-t * decay_per_harmonic)
            bright = bright * fade + np.sin(2 * np.pi * cycles) * (1.0 - fade)
        tone += bright
    return tone


def kick(rate, rng):
    t = _time(0.35, rate)
    sweep = 45 + 110 * np.exp(-t / 0.04)
    return np.sin(2 * np.pi * np.cumsum(sweep) / rate) * np.exp(-t / 0.12)


def snare(rate, rng):
    t = _time(0.25, rate)
    return (0.8 * rng.standard_normal(t.size) + 0.5 * np.sin(2 * np.pi * 190 * t)) * np.exp(
        -t / 0.06
    )


def hat(rate, rng, open_hat=False):
    t = _time(0.3 if open_hat else 0.08, rate)
    noise = np.diff(rng.standard_normal(t.size + 1))  # a first difference tilts noise to the highs
    return noise * np.exp(-t / (0.09 if open_hat else 0.018))


def ride(rate, rng):
    t = _time(0.6, rate)
    partials = sum(np.sin(2 * np.pi * f * t) for f in (3150.0, 4390.0, 5610.0, 6890.0))
    return (0.4 * partials + 0.3 * np.diff(rng.standard_normal(t.size + 1))) * np.exp(-t / 0.25)


def brush(rate, rng):
    t = _time(0.15, rate)
    return rng.standard_normal(t.size) * envelope(t, 0.03, 0.05)


def rim(rate, rng):
    t = _time(0.12, rate)
    return (np.sin(2 * np.pi * 1700 * t) + 0.6 * rng.standard_normal(t.size)) * np.exp(-t / 0.015)


def chord_notes(root: int, intervals, octave_spread: bool = False):
    return [root + i + (12 if octave_spread and n % 2 else 0) for n, i in enumerate(intervals)]


# Genre recipes: each writes its instruments into `track` for the clip's key and tempo.


def render_ambient(track: Track, root: int, tempo: float, rng) -> None:
    bar = 4 * 60 / tempo * 2
    quality = MAJOR if rng.random() < 0.5 else MINOR
    progression = PROGRESSIONS[rng.integers(len(PROGRESSIONS))]
    for n, start in enumerate(np.arange(-bar / 2, track.length / track.rate, bar)):
        chord = chord_notes(root + progression[n % 4], quality + (14,), octave_spread=True)
        for note in chord:
            t = _time(bar * 1.6, track.rate)
            tone = harmonic_tone(midi_hz(note), bar * 1.6, track.rate, brightness=0.3, detune=0.004)
            track.add("pad", start, tone * np.sin(np.pi * t / t[-1]) ** 2)
    for start in np.sort(rng.uniform(0, track.length / track.rate, int(rng.integers(6, 14)))):
        note = root + 24 + quality[rng.integers(3)] + 12 * rng.integers(0, 2)
        tone = harmonic_tone(midi_hz(note), 3.0, track.rate, brightness=0.2, decay_per_harmonic=1.0)
        track.add("bells", start, tone * envelope(_time(3.0, track.rate), 0.01, 1.0))


def render_classical(track: Track, root: int, tempo: float, rng) -> None:
    beat = 60 / tempo
    quality = MAJOR if rng.random() < 0.6 else MINOR
    scale = [0, 2, 4, 5, 7, 9, 11] if quality == MAJOR else [0, 2, 3, 5, 7, 8, 10]
    progression = PROGRESSIONS[rng.integers(len(PROGRESSIONS))]
    position, step = 0.0, int(rng.integers(0, 7))
    while position < track.length / track.rate:
        length = beat * rng.choice([0.5, 1.0, 1.0, 2.0])
        step = int(np.clip(step + rng.choice([-2, -1, -1, 1, 1, 2]), -3, 12))
        note = root + 12 + 12 * (step // 7) + scale[step % 7]
        t = _time(length * 1.1, track.rate)
        tone = harmonic_tone(midi_hz(note), length * 1.1, track.rate, brightness=0.9, vibrato=0.25)
        track.add("strings", position, tone * envelope(t, 0.08, length * 0.8))
        position += length
    bar = 4 * beat
    for n, start in enumerate(np.arange(0, track.length / track.rate, bar)):
        chord = chord_notes(root - 12 + progression[n % 4], quality)
        for k, note in enumerate(chord + [chord[0] + 12]):
            tone = harmonic_tone(
                midi_hz(note), 2.0, track.rate, brightness=0.5, decay_per_harmonic=3.0
            )
            track.add(
                "harp", start + k * beat / 2, tone * envelope(_time(2.0, track.rate), 0.005, 0.6)
            )


def render_electronic(track: Track, root: int, tempo: float, rng) -> None:
    beat = 60 / tempo
    offset = rng.uniform(0, beat)
    quality = MINOR if rng.random() < 0.7 else MAJOR
    progression = PROGRESSIONS[rng.integers(len(PROGRESSIONS))]
    for n, start in enumerate(np.arange(offset - beat, track.length / track.rate, beat)):
        track.add("kick", start, kick(track.rate, track.rng))
        track.add("hats", start + beat / 2, hat(track.rate, track.rng, open_hat=True))
        if n % 2:
            track.add("clap", start, snare(track.rate, track.rng))
        chord_root = root - 12 + progression[(n // 8) % 4]
        for k in range(4):  # sixteenth-note saw arpeggio
            note = chord_root + (quality + (12,))[(n * 4 + k) % 4]
            t = _time(beat / 4, track.rate)
            tone = harmonic_tone(midi_hz(note), beat / 4, track.rate, brightness=1.0)
            track.add("saw", start + k * beat / 4, tone * envelope(t, 0.003, beat / 8))


def render_jazz(track: Track, root: int, tempo: float, rng) -> None:
    beat = 60 / tempo
    offset = rng.uniform(0, beat)
    swing = rng.uniform(0.62, 0.7)
    chords = [SEVENTH_CHORDS[rng.integers(3)] for _ in range(4)]
    progression = PROGRESSIONS[rng.integers(len(PROGRESSIONS))]
    for n, start in enumerate(np.arange(offset, track.length / track.rate, beat)):
        bar = n // 4
        chord_root = root - 12 + progression[bar % 4]
        chord = chords[bar % 4]
        track.add("ride", start, ride(track.rate, track.rng))
        if n % 2:  # swung "and" of 2 and 4
            track.add("ride", start + swing * beat, 0.6 * ride(track.rate, track.rng))
            track.add("brush", start, brush(track.rate, track.rng))
        bass_note = chord_root - 12 + chord[rng.integers(len(chord))]
        tone = harmonic_tone(
            midi_hz(bass_note), beat, track.rate, brightness=0.2, decay_per_harmonic=4.0
        )
        track.add("bass", start, tone * envelope(_time(beat, track.rate), 0.01, beat * 0.6))
        if rng.random() < 0.35:  # sparse comping on swung off-beats
            comp_start = start + (swing * beat if rng.random() < 0.5 else 0.0)
            for note in chord_notes(chord_root + 12, chord):
                tone = harmonic_tone(
                    midi_hz(note), 0.8, track.rate, brightness=0.6, decay_per_harmonic=5.0
                )
                track.add("piano", comp_start, tone * envelope(_time(0.8, track.rate), 0.004, 0.3))


def render_reggae(track: Track, root: int, tempo: float, rng) -> None:
    beat = 60 / tempo
    offset = rng.uniform(0, beat)
    quality = MINOR if rng.random() < 0.5 else MAJOR
    progression = PROGRESSIONS[rng.integers(len(PROGRESSIONS))]
    for n, start in enumerate(np.arange(offset, track.length / track.rate, beat)):
        bar = n // 4
        chord_root = root + progression[bar % 4]
        if n % 4 == 2:  # one drop: kick and rim together on beat three
            track.add("kick", start, kick(track.rate, track.rng))
            track.add("rim", start, rim(track.rate, track.rng))
        track.add("hats", start + beat / 2, 0.5 * hat(track.rate, track.rng))
        for note in chord_notes(chord_root, quality):  # staccato skank on the off-beat
            t = _time(0.12, track.rate)
            tone = harmonic_tone(midi_hz(note), 0.12, track.rate, brightness=1.2)
            track.add("skank", start + beat / 2, tone * envelope(t, 0.003, 0.04))
        if n % 2 == 0:
            bass_note = chord_root - 24 + (0, 7)[(n // 2) % 2]
            t = _time(beat * 1.5, track.rate)
            tone = harmonic_tone(midi_hz(bass_note), beat * 1.5, track.rate, brightness=0.1)
            track.add("bass", start, tone * envelope(t, 0.02, beat))


def render_rock(track: Track, root: int, tempo: float, rng) -> None:
    beat = 60 / tempo
    offset = rng.uniform(0, beat)
    progression = PROGRESSIONS[rng.integers(len(PROGRESSIONS))]
    drive = rng.uniform(3.0, 8.0)
    for n, start in enumerate(np.arange(offset, track.length / track.rate, beat)):
        if n % 4 in (0, 2) or rng.random() < 0.15:
            track.add("kick", start, kick(track.rate, track.rng))
        if n % 4 in (1, 3):
            track.add("snare", start, snare(track.rate, track.rng))
        for k in (0, 1):
            track.add("hats", start + k * beat / 2, hat(track.rate, track.rng))
            power_chord = root - 12 + progression[(n // 4) % 4]
            t = _time(beat / 2, track.rate)
            tone = sum(
                harmonic_tone(midi_hz(note), beat / 2, track.rate, brightness=1.0)
                for note in (power_chord, power_chord + 7)
            )
            track.add(
                "guitar", start + k * beat / 2, np.tanh(drive * tone) * envelope(t, 0.005, beat)
            )


RECIPES: dict[str, tuple[Callable, tuple[float, float], dict[str, tuple[float, float]]]] = {
    # genre: (renderer, tempo range in bpm, instrument gain ranges in dB)
    "ambient": (render_ambient, (60, 90), {"pad": (-3, 0), "bells": (-18, -8)}),
    "classical": (render_classical, (70, 130), {"strings": (-2, 0), "harp": (-12, -4)}),
    "electronic": (
        render_electronic,
        (118, 134),
        {"kick": (-3, 0), "hats": (-16, -8), "clap": (-12, -6), "saw": (-10, -4)},
    ),
    "jazz": (
        render_jazz,
        (110, 190),
        {"ride": (-12, -6), "brush": (-22, -14), "bass": (-4, 0), "piano": (-10, -4)},
    ),
    "reggae": (
        render_reggae,
        (66, 92),
        {
            "kick": (-6, -2),
            "rim": (-12, -6),
            "hats": (-20, -12),
            "skank": (-8, -3),
            "bass": (-2, 0),
        },
    ),
    "rock": (
        render_rock,
        (96, 160),
        {"kick": (-4, 0), "snare": (-6, -2), "hats": (-18, -10), "guitar": (-6, -2)},
    ),
}


def coloured_noise(length: int, rate: int, slope: float, rng: np.random.Generator) -> np.ndarray:
    """Background noise whose power falls as frequency^slope (0 white, -1 pink, -2 brown)."""
    spectrum = np.fft.rfft(rng.standard_normal(length))
    frequencies = np.maximum(np.fft.rfftfreq(length, 1.0 / rate), 20.0)
    return np.fft.irfft(spectrum * frequencies ** (slope / 2.0), n=length)


def synthesize_clip(
    genre: str, seed: int, seconds: float = 30.0, sample_rate: int = 22050
) -> np.ndarray:
    """One recording of `genre`: float32 mono in [-1, 1], `round(seconds * sample_rate)` samples.

    The same (genre, seed) always gives the same samples.
    """
    if genre not in RECIPES:
        raise ValueError(f"unknown demo genre {genre!r}; available: {DEMO_GENRES}")
    rng = np.random.default_rng([seed, DEMO_GENRES.index(genre)])
    render, (slowest, fastest), gain_ranges = RECIPES[genre]
    track = Track(seconds, sample_rate, rng)
    root = int(rng.integers(45, 57))
    render(track, root, rng.uniform(slowest, fastest), rng)
    audio = track.mix({bus: rng.uniform(*gains) for bus, gains in gain_ranges.items()})
    audio = audio / (np.max(np.abs(audio)) or 1.0)
    noise = coloured_noise(audio.size, sample_rate, rng.uniform(-1.5, 0.0), rng)
    snr_db = rng.uniform(12.0, 30.0)
    noise *= np.sqrt(np.mean(audio**2) / max(np.mean(noise**2), 1e-12)) * 10 ** (-snr_db / 20)
    audio = audio + noise
    return (rng.uniform(0.3, 0.95) * audio / np.max(np.abs(audio))).astype(np.float32)


def clip_path(root: Path, genre: str, index: int) -> Path:
    return root / genre / f"{genre}.{index:04d}.wav"


def write_demo_dataset(
    root: str | os.PathLike,
    clips_per_genre: int = 32,
    seconds: float = 30.0,
    sample_rate: int = 22050,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Writes ROOT/<genre>/<genre>.NNNN.wav (16-bit PCM) for every demo genre, idempotently.

    Existing complete files are kept; each new file is written under a temporary name and renamed,
    so an interrupted run never leaves a half-written clip. `ROOT/DEMO_VERSION` is written last.
    """
    if clips_per_genre < 1:
        raise ValueError(f"clips_per_genre must be at least 1, got {clips_per_genre}")
    root = Path(root)
    frames = int(round(seconds * sample_rate))
    jobs = [(genre, index) for genre in DEMO_GENRES for index in range(clips_per_genre)]
    todo = [job for job in jobs if not _complete(clip_path(root, *job), frames, sample_rate)]

    def write(job: tuple[str, int]) -> None:
        genre, index = job
        path = clip_path(root, genre, index)
        path.parent.mkdir(parents=True, exist_ok=True)
        audio = synthesize_clip(genre, seed * 100_003 + index, seconds, sample_rate)
        temporary = path.with_name(f".tmp-{path.name}")
        soundfile.write(str(temporary), audio, sample_rate, subtype="PCM_16", format="WAV")
        os.replace(temporary, path)

    if todo:
        # numpy releases the GIL in its array loops, so two threads use both cores
        with ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
            done = pool.map(write, todo)
            if progress:
                from tqdm.auto import tqdm

                done = tqdm(done, total=len(todo), desc="synthesise demo audio", unit="clip")
            for _ in done:
                pass
    (root / "DEMO_VERSION").write_text(
        f"generator {GENERATOR_VERSION}; genres {','.join(DEMO_GENRES)}; clips {clips_per_genre}; "
        f"seconds {seconds:g}; rate {sample_rate}; seed {seed}\n"
    )
    return root


def _complete(path: Path, frames: int, sample_rate: int) -> bool:
    try:
        info = soundfile.info(str(path))
    except (soundfile.LibsndfileError, RuntimeError):
        return False
    return info.frames == frames and info.samplerate == sample_rate
