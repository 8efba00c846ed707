"""The genres of the demo synthesiser: one arranger per genre, and the order that seeds them.

Each arranger picks a key, a tempo, a meter, a chord progression and a set of instruments, then
places notes and drum hits on a (possibly swung) grid. The genres differ the way real ones do - in
rhythm (tempo range, meter, swing, drum pattern), timbre and harmony - while every clip draws its
own key, tempo, arrangement and instrument balance, so no single trivial cue gives a genre away.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from musicnext_tf.demo_music import instruments
from musicnext_tf.demo_music.arrangement import (
    CHORDS,
    MAJOR,
    MINOR,
    PENTA_MAJOR,
    PENTA_MINOR,
    Clip,
    close_voicing,
    nearest_note,
    pick,
    velocity,
)
from musicnext_tf.demo_music.signals import (
    F32,
    TWO_PI,
    envelope,
    highpass,
    midi_hz,
    noise,
    saw,
    sine,
    smooth,
    square,
)

# A genre's position here is part of every clip's random seed: append new genres, never reorder.
DEMO_GENRES: tuple[str, ...] = ("ambient", "electronic", "folk", "jazz", "reggae", "rock")


def _ambient(c: Clip) -> None:
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
        buf = np.zeros(n, F32)
        for note in close_voicing(pc, quality, low):
            buf += instruments.pad_note(midi_hz(note), n, sr, rng, detune)
        # Slow swell in and out, crossfading with the neighbouring chords.
        buf *= envelope(n, sr, attack=rng.uniform(0.3, 0.6) * span, release=overlap + 0.3)
        c.add("pad", buf, c.time(bar, 0.0, jitter=False) - overlap / 2)
    c.level("pad", 0.0)

    # Tonic drone (root and fifth, low), breathing with a slow LFO.
    root = nearest_note(c.key, 38)
    t = np.arange(c.n, dtype=F32) / F32(sr)
    lfo = 0.75 + 0.25 * np.sin(TWO_PI * F32(rng.uniform(0.03, 0.12)) * t + F32(rng.random()))
    drone = sine(midi_hz(root), c.n, sr) + 0.5 * sine(midi_hz(root + 7), c.n, sr)
    c.add("drone", drone * lfo, 0.0)
    c.level("drone", rng.uniform(-8.0, -2.0))

    # Sparse bell tones from the major pentatonic, at irregular times (no pulse).
    scale = [c.key + 72 + s + 12 * o for o in (0, 1) for s in PENTA_MAJOR]
    n_bells = int(rng.integers(2, 5) * c.seconds / 10.0) + 1
    for t0 in np.sort(rng.uniform(-1.0, c.seconds, n_bells)):
        note = scale[int(rng.integers(len(scale)))]
        c.add("bells", instruments.bell(midi_hz(note), sr, rng), float(t0), velocity(rng, 0.5, 1.0))
    c.level("bells", rng.uniform(-14.0, -6.0))

    # Wind: dark noise with a slow swell.
    wind = smooth(noise(rng, c.n), int(sr / rng.uniform(300.0, 1200.0)))
    swell = 0.5 + 0.5 * np.sin(TWO_PI * F32(rng.uniform(0.04, 0.15)) * t + F32(rng.random()))
    c.add("wind", wind * swell * swell, 0.0)
    c.level("wind", rng.uniform(-18.0, -8.0))


def _electronic(c: Clip) -> None:
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
    chords = c.random_chords(progressions)

    kick = instruments.kick(sr, rng, click=rng.uniform(0.3, 1.0))
    clap = instruments.clap(sr, rng) if rng.random() < 0.6 else instruments.snare(sr, rng)
    hats = [instruments.hat(sr, rng, rng.uniform(0.015, 0.035)) for _ in range(3)]
    open_hat = instruments.hat(sr, rng, rng.uniform(0.08, 0.18))
    hat_style = int(rng.integers(3))  # 0: 16ths, 1: off-beat open hats only, 2: both
    for bar in range(c.n_bars):
        for beat in range(4):
            c.add("kick", kick, c.time(bar, beat), velocity(rng, 0.95, 1.0))
            if beat % 2 == 1:
                c.add("clap", clap, c.time(bar, beat), velocity(rng, 0.85, 1.0))
            if hat_style != 1:
                for sixteenth in range(4):
                    accent = 1.0 if sixteenth == 2 else 0.55
                    hat = hats[int(rng.integers(3))]
                    c.add("hats", hat, c.time(bar, beat + sixteenth / 4), accent * velocity(rng))
            if hat_style != 0:
                c.add("hats", open_hat, c.time(bar, beat + 0.5), velocity(rng, 0.8, 1.0))
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
        note = nearest_note(chords[bar][0], 40)
        if note not in bass_notes:
            n = int(length * sr)
            f = midi_hz(note)
            tone = 0.6 * saw(f, n, sr) + 0.4 * square(f, n, sr)
            tone = smooth(smooth(tone, bass_cutoff), bass_cutoff)
            bass_notes[note] = tone * envelope(n, sr, 0.003, 0.12, release=0.01)
        for pos in positions:
            c.add("bass", bass_notes[note], c.time(bar, pos), velocity(rng, 0.85, 1.0))
    c.level("bass", rng.uniform(-3.0, 0.0))

    use_lead = rng.random() < 0.7
    use_pad = (not use_lead) or rng.random() < 0.5
    if use_lead:
        # 16th-note arpeggio over the chord, entering after a few bars (a "build").
        wave = square if rng.random() < 0.5 else saw
        gate = rng.uniform(0.4, 0.9) * c.beat / 4
        entry = int(rng.integers(0, 4))
        pattern = rng.integers(0, 8, size=int(rng.integers(3, 6)))
        lead_notes: dict[int, np.ndarray] = {}
        cutoff = int(sr / rng.uniform(2500.0, 6000.0))
        for bar in range(entry, c.n_bars):
            tones = close_voicing(chords[bar][0], chords[bar][1], 69, span=24)
            tones = tones + [x + 12 for x in tones]
            for step in range(16):
                note = tones[int(pattern[step % pattern.size]) % len(tones)]
                if note not in lead_notes:
                    n = int(gate * sr)
                    tone = smooth(wave(midi_hz(note), n, sr), cutoff)
                    lead_notes[note] = tone * envelope(n, sr, 0.002, 0.08, release=0.005)
                c.add("lead", lead_notes[note], c.time(bar, step / 4), velocity(rng, 0.7, 1.0))
        c.level("lead", rng.uniform(-9.0, -4.0))
    if use_pad:
        cutoff = int(sr / rng.uniform(800.0, 2500.0))
        low = int(rng.integers(55, 62))
        for bar in range(c.n_bars):
            n = int(c.bar * sr)
            buf = np.zeros(n, F32)
            for note in close_voicing(chords[bar][0], chords[bar][1], low):
                f = midi_hz(note)
                buf += saw(f * 0.997, n, sr, rng.random()) + saw(f * 1.003, n, sr, rng.random())
            buf = smooth(buf, cutoff) * envelope(n, sr, 0.01, release=0.01)
            c.add("pad", buf, c.time(bar, 0.0, jitter=False))
        # Side-chain pumping: the pad ducks on every kick and swells back up.
        since_beat = (np.arange(c.n) / sr - c.origin) % c.beat
        depth = rng.uniform(0.5, 0.9)
        if "pad" in c.stems:
            c.stems["pad"] *= (1.0 - depth * np.exp(-since_beat / (0.25 * c.beat))).astype(F32)
        c.level("pad", rng.uniform(-8.0, -3.0))


def _folk(c: Clip) -> None:
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
    chords = c.random_chords(progressions)
    brightness, tau = rng.uniform(0.3, 0.9), rng.uniform(0.7, 1.5)
    ring = min(1.2, 2.0 * tau)
    plucks: dict[int, np.ndarray] = {}

    def pluck(note: int) -> np.ndarray:
        if note not in plucks:
            plucks[note] = instruments.karplus_strong(midi_hz(note), ring, sr, rng, brightness, tau)
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
            upper = close_voicing(pc, quality, 55)
            bass = nearest_note(pc, 43)
            for i, step in enumerate(steps):
                if step == "b":
                    note = bass
                elif step == "a":
                    note = bass + 7 if bass + 7 <= 52 else bass - 5
                else:
                    note = upper[step % len(upper)]
                gain = velocity(rng, 0.8, 1.0) if isinstance(step, str) else velocity(rng, 0.5, 0.8)
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
            strings = (
                [nearest_note(pc, 43)]
                + close_voicing(pc, quality, 50, 12)
                + close_voicing(pc, quality, 62)
            )
            for i, stroke in enumerate(pattern):
                if stroke is None:
                    continue
                order = strings if stroke == "D" else strings[::-1][:4]
                t0 = c.time(bar, i * 0.5)
                level = velocity(rng, 0.7, 1.0) if stroke == "D" else velocity(rng, 0.4, 0.6)
                for k, note in enumerate(order):
                    c.add("guitar", pluck(note), t0 + k * spread, level)
    c.level("guitar", 0.0)

    if rng.random() < 0.5:
        # A fiddle/flute-like melody: a few harmonics with vibrato, walking the scale.
        scale = [c.key + 62 + s + 12 * o for o in (0, 1) for s in (MINOR if minor else MAJOR)]
        idx = int(rng.integers(3, 9))
        vib_rate, vib_depth = rng.uniform(4.5, 6.5), rng.uniform(0.003, 0.008)
        for bar in range(c.n_bars):
            pos = 0.0
            while pos < beats:
                dur = pick(rng, (1.0, 2.0, 0.5), (0.5, 0.25, 0.25))
                dur = min(dur, beats - pos)
                idx = int(np.clip(idx + rng.integers(-2, 3), 0, len(scale) - 1))
                if rng.random() < 0.85:
                    n = int(dur * c.beat * sr)
                    t = np.arange(n) / sr
                    f = midi_hz(scale[idx]) * (1 + vib_depth * np.sin(2 * np.pi * vib_rate * t))
                    tone = sine(f, n, sr) + 0.4 * sine(2 * f, n, sr) + 0.2 * sine(3 * f, n, sr)
                    tone *= envelope(n, sr, 0.04, release=min(0.06, dur * c.beat / 3))
                    c.add("melody", tone, c.time(bar, pos), velocity(rng, 0.8, 1.0))
                pos += dur
        c.level("melody", rng.uniform(-6.0, -1.0))

    if rng.random() < 0.5:
        shaker = [instruments.shaker(sr, rng) for _ in range(2)]
        for bar in range(c.n_bars):
            for i in range(2 * beats):
                hit = shaker[i % 2]
                c.add("shaker", hit, c.time(bar, i * 0.5), 1.0 if i % 2 else 0.6)
        c.level("shaker", rng.uniform(-16.0, -9.0))
    if rng.random() < 0.3:
        stomp = smooth(instruments.kick(sr, rng, click=0.1), 6)
        for bar in range(c.n_bars):
            for beat in range(0, beats, 2):
                c.add("stomp", stomp, c.time(bar, beat), velocity(rng, 0.8, 1.0))
        c.level("stomp", rng.uniform(-10.0, -4.0))


def _jazz(c: Clip) -> None:
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
    chords = c.random_chords(progressions)
    beats = c.beats_per_bar

    rides = [instruments.ride(sr, rng) for _ in range(2)]
    chick = smooth(instruments.hat(sr, rng, rng.uniform(0.02, 0.04)), 3)
    ride_positions = (0.0, 1.0, 1.5, 2.0, 3.0, 3.5) if beats == 4 else (0.0, 1.0, 1.5, 2.0, 2.5)
    feather = instruments.kick(sr, rng, click=0.1) if rng.random() < 0.5 else None
    brush = smooth(instruments.snare(sr, rng), 4)
    for bar in range(c.n_bars):
        for pos in ride_positions:
            accent = 1.0 if pos in (1.0, 3.0) else 0.75
            c.add("ride", rides[int(rng.integers(2))], c.time(bar, pos), accent * velocity(rng))
        for beat in range(1, beats, 2):
            c.add("hihat", chick, c.time(bar, beat), velocity(rng, 0.8, 1.0))
        if feather is not None:
            for beat in range(beats):
                c.add("kick", feather, c.time(bar, beat), velocity(rng, 0.5, 0.7))
        for _ in range(int(rng.integers(0, 3))):  # sparse snare "comping"
            c.add("snare", brush, c.time(bar, int(rng.integers(2 * beats)) / 2), velocity(rng, 0.3))
    c.level("ride", rng.uniform(-8.0, -3.0))
    c.level("hihat", rng.uniform(-16.0, -10.0))
    c.level("kick", -14.0)
    c.level("snare", rng.uniform(-16.0, -10.0))

    # Walking bass: chord tones on beats 1-3, a chromatic or dominant approach to the next root.
    brightness, tau = rng.uniform(0.15, 0.4), rng.uniform(0.4, 0.8)
    plucks: dict[int, np.ndarray] = {}
    note = nearest_note(chords[0][0], 40)
    for bar in range(c.n_bars):
        pc, quality = chords[bar]
        next_root = nearest_note(chords[min(bar + 1, c.n_bars - 1)][0], note)
        tones = [nearest_note((pc + i) % 12, note) for i in CHORDS[quality]]
        line = [nearest_note(pc, note)]
        for _ in range(beats - 2):
            line.append(tones[int(rng.integers(len(tones)))] + 12 * int(rng.integers(-1, 1)))
        line.append(next_root + (1 if rng.random() < 0.5 else -1))
        for beat, note in enumerate(line):
            note = int(np.clip(note, 28, 55))
            if note not in plucks:
                plucks[note] = instruments.karplus_strong(
                    midi_hz(note), 1.0, sr, rng, brightness, tau
                )
            buf = plucks[note][: int(1.05 * c.beat * sr)]
            c.add("bass", buf, c.time(bar, beat), velocity(rng, 0.8, 1.0))
    c.level("bass", 0.0)

    # Comping: short syncopated chords (Charleston and friends) with rootless voicings.
    comps = (((0.0, 0.8), (1.5, 0.5)), ((1.5, 0.5), (3.5, 0.4)), ((0.5, 0.4), (2.0, 1.0)))
    comps = comps + (((2.5, 0.5),), ((1.0, 0.4), (2.5, 1.2)))
    low = int(rng.integers(52, 58))
    for bar in range(c.n_bars):
        pc, quality = chords[bar]
        intervals = CHORDS[quality][1:] + (14,)  # drop the root (the bass has it), add the 9th
        voicing = sorted({low + ((pc + i - low) % 12) for i in intervals})
        for pos, length in comps[int(rng.integers(len(comps)))]:
            if pos >= beats:
                continue
            seconds = length * c.beat
            buf = sum(instruments.epiano(midi_hz(n), seconds, sr) for n in voicing)
            c.add("piano", buf, c.time(bar, pos), velocity(rng, 0.6, 1.0))
    c.level("piano", rng.uniform(-5.0, -1.0))

    if rng.random() < 0.5:
        # Horn: swung eighth-note phrases from the chord's scale, a breathy square tone.
        cutoff = int(sr / rng.uniform(1500.0, 3500.0))
        idx = 7
        for bar in range(c.n_bars):
            if rng.random() < 0.35:
                continue  # breathe
            pc = chords[bar][0]
            scale = [nearest_note((pc + s) % 12, 64) + 12 * o for o in (0, 1) for s in MAJOR]
            scale.sort()
            pos = float(rng.integers(0, 2)) * 0.5
            while pos < beats:
                step = pick(rng, (-2, -1, 1, 2, 3), (1, 2, 2, 1, 1))
                idx = int(np.clip(idx + step, 0, len(scale) - 1))
                dur = 0.5 if rng.random() < 0.8 else 1.0
                n = int(dur * c.beat * sr * 0.95)
                tone = smooth(square(midi_hz(scale[idx]), n, sr), cutoff)
                tone *= envelope(n, sr, 0.015, 0.5, release=0.02)
                c.add("horn", tone, c.time(bar, pos), velocity(rng, 0.7, 1.0))
                pos += dur
        c.level("horn", rng.uniform(-6.0, -2.0))


def _reggae(c: Clip) -> None:
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
    chords = c.random_chords(progressions)

    kick = instruments.kick(sr, rng, click=0.3)
    rim = instruments.rim(sr, rng)
    snare = instruments.snare(sr, rng)
    hats = [instruments.hat(sr, rng, rng.uniform(0.02, 0.05)) for _ in range(2)]
    open_hat = instruments.hat(sr, rng, rng.uniform(0.1, 0.2))
    style = pick(rng, (0, 1, 2), (0.6, 0.25, 0.15))  # one drop, rockers, steppers
    kicks = ((2.0,), (0.0, 2.0), (0.0, 1.0, 2.0, 3.0))[style]
    for bar in range(c.n_bars):
        for pos in kicks:
            c.add("kick", kick, c.time(bar, pos), velocity(rng, 0.9, 1.0))
        c.add("snare", rim if rng.random() < 0.7 else snare, c.time(bar, 2.0), velocity(rng, 0.8))
        for i in range(8):
            c.add("hats", hats[i % 2], c.time(bar, i * 0.5), 1.0 if i % 2 else 0.6)
        if rng.random() < 0.3:
            c.add("hats", open_hat, c.time(bar, 3.5), velocity(rng))
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
            buf = np.zeros(n, F32)
            for note in close_voicing(pc, quality, low):
                buf += saw(midi_hz(note), n, sr, rng.random())
            buf = smooth(buf, cutoff) + 1.5 * np.diff(noise(rng, n + 1))
            chops[pc] = buf * envelope(n, sr, 0.002, 0.04, release=0.01)
        for beat in range(4):
            c.add("skank", chops[pc], c.time(bar, beat + 0.5), velocity(rng, 0.8, 1.0))
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
        root = nearest_note(chords[bar][0], 38)
        scale = MINOR if chords[bar][1].startswith("min") else MAJOR
        for pos, dur, degree in riff:
            note = root + scale[degree % 7] + 12 * (degree // 7)
            key = (note, dur)
            if key not in bass_notes:
                n = int(dur * c.beat * sr)
                f = midi_hz(note)
                tone = np.tanh(1.5 * (sine(f, n, sr) + 0.3 * sine(2 * f, n, sr)))
                bass_notes[key] = tone * envelope(n, sr, 0.01, 1.2, release=0.04)
            c.add("bass", bass_notes[key], c.time(bar, pos), velocity(rng, 0.85, 1.0))
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
                        notes = close_voicing(pc, quality, 48 + 12 * j)
                        bubbles[key] = sum(
                            instruments.organ(midi_hz(n), 0.18 * c.beat, sr) for n in notes
                        )
                    c.add("organ", bubbles[key], c.time(bar, beat + offset), velocity(rng, 0.6))
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
                    echo[shift:] += F32(feedback**k) * smooth(stem[:-shift], 2 + 2 * k)
            c.stems[name] = echo


def _rock(c: Clip) -> None:
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
    chords = c.random_chords(progressions)

    kick = instruments.kick(sr, rng, click=rng.uniform(0.5, 1.0))
    snares = [instruments.snare(sr, rng) for _ in range(2)]
    hats = [instruments.hat(sr, rng, rng.uniform(0.03, 0.08)) for _ in range(2)]
    ride = instruments.ride(sr, rng) if rng.random() < 0.25 else None
    crash = instruments.crash(sr, rng)
    kick_patterns = ((0.0, 2.0), (0.0, 2.0, 2.5), (0.0, 1.5, 2.0), (0.0, 0.5, 2.0))
    kicks = kick_patterns[int(rng.integers(len(kick_patterns)))]
    for bar in range(c.n_bars):
        for pos in kicks:
            c.add("kick", kick, c.time(bar, pos), velocity(rng, 0.9, 1.0))
        for beat in (1.0, 3.0):
            c.add("snare", snares[int(rng.integers(2))], c.time(bar, beat), velocity(rng, 0.9, 1.0))
        for i in range(8):
            hit = ride if ride is not None else hats[i % 2]
            c.add("hats", hit, c.time(bar, i * 0.5), 1.0 if i % 2 == 0 else 0.7)
        if bar % 4 == 0:
            c.add("cymbal", crash, c.time(bar, 0.0), velocity(rng, 0.8, 1.0))
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
    mode = pick(rng, (0, 1, 2), (0.5, 0.2, 0.3))  # chug, gallop, ring
    strokes = (
        tuple((i * 0.5, 0.1) for i in range(8)),
        tuple((b + s, 0.08) for b in range(4) for s in (0.0, 0.5, 0.75)),
        ((0.0, 0.9), (1.5, 0.5), (2.5, 0.9)),
    )[mode]
    n = int(c.bar * sr)
    for bar in range(c.n_bars):
        root = low + (chords[bar][0] - low) % 12
        osc = np.zeros(n, F32)
        for interval, amp in ((0, 1.0), (7, 0.8), (12, 0.6)):
            osc += amp * saw(midi_hz(root + interval) * rng.uniform(0.998, 1.002), n, sr)
        env = np.zeros(n, F32)
        for pos, decay in strokes:
            i = max(0, int((c.time(bar, pos, jitter=False) - c.time(bar, 0.0, jitter=False)) * sr))
            m = n - i
            env[i:] = np.maximum(env[i:], envelope(m, sr, 0.002, decay * 4 * c.beat))
        buf = np.tanh(F32(drive) * osc * env)
        buf = highpass(smooth(smooth(buf, cab), cab), int(sr / 150))
        c.add("guitar", buf, c.time(bar, 0.0))
    c.level("guitar", 0.0)

    bass_notes: dict[int, np.ndarray] = {}
    cutoff = int(sr / rng.uniform(600.0, 1500.0))
    for bar in range(c.n_bars):
        note = nearest_note(chords[bar][0], 36)
        if note not in bass_notes:
            m = int(0.45 * c.beat * sr)
            tone = smooth(saw(midi_hz(note), m, sr), cutoff)
            bass_notes[note] = tone * envelope(m, sr, 0.003, 0.3, release=0.01)
        for i in range(8):
            c.add("bass", bass_notes[note], c.time(bar, i * 0.5), velocity(rng, 0.8, 1.0))
    c.level("bass", rng.uniform(-4.0, -1.0))

    if rng.random() < 0.35:
        # Lead: distorted single notes from the minor pentatonic, with vibrato.
        scale = [c.key + 64 + s + 12 * o for o in (0, 1) for s in PENTA_MINOR]
        idx = 4
        entry = int(rng.integers(1, 4))
        for bar in range(entry, c.n_bars):
            pos = 0.0
            while pos < 4:
                dur = pick(rng, (0.5, 1.0, 2.0), (0.5, 0.25, 0.25))
                idx = int(np.clip(idx + rng.integers(-2, 3), 0, len(scale) - 1))
                m = int(dur * c.beat * sr)
                t = np.arange(m) / sr
                f = midi_hz(scale[idx]) * (1 + 0.006 * np.sin(2 * np.pi * 5.5 * t))
                tone = np.tanh(6.0 * saw(f, m, sr) * envelope(m, sr, 0.005, 1.0, 0.03))
                c.add("lead", smooth(tone, cab), c.time(bar, pos), velocity(rng, 0.8, 1.0))
                pos += dur
        c.level("lead", rng.uniform(-6.0, -2.0))


ARRANGERS: dict[str, Callable[[Clip], None]] = {
    "ambient": _ambient,
    "electronic": _electronic,
    "folk": _folk,
    "jazz": _jazz,
    "reggae": _reggae,
    "rock": _rock,
}
