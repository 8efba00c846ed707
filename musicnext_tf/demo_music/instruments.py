"""Sound sources of the demo synthesiser: a plucked string, a drum kit and pitched voices.

Each function renders one note or hit as a short float32 buffer that the genre arrangers place on
their grid (and cache per pitch); they hold no state, so the same rng draws give the same sound.
"""

from __future__ import annotations

import math

import numpy as np

from musicnext_tf.demo_music.signals import (
    F32,
    TWO_PI,
    envelope,
    highpass,
    noise,
    phase,
    sine,
    smooth,
)


def karplus_strong(
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
    out = y[:n].astype(F32)
    out *= envelope(n, sr, attack=0.0, release=min(0.02, seconds / 4))
    return out


# --- drums -----------------------------------------------------------------------------------


def kick(sr: int, rng: np.random.Generator, click: float = 0.5, length: float = 0.4):
    """A pitched-down sine thump (fast downward sweep) with a short noise click for the beater."""
    n = int(length * sr)
    t = np.arange(n) / sr
    f_hi, f_lo = rng.uniform(110.0, 190.0), rng.uniform(42.0, 62.0)
    freq = f_lo + (f_hi - f_lo) * np.exp(-t / rng.uniform(0.02, 0.05))
    body = sine(freq, n, sr) * np.exp(-t / rng.uniform(0.12, 0.3)).astype(F32)
    m = int(0.004 * sr)
    body[:m] += click * noise(rng, m) * np.linspace(1.0, 0.0, m, dtype=F32)
    return body


def snare(sr: int, rng: np.random.Generator) -> np.ndarray:
    """Bright noise rattle (the wires) over a short ~200 Hz drum-head tone."""
    n = int(0.3 * sr)
    rattle = np.diff(noise(rng, n + 1)) * envelope(n, sr, 0.001, rng.uniform(0.05, 0.12))
    tone = sine(rng.uniform(160.0, 240.0), n, sr) * envelope(n, sr, 0.001, 0.04)
    return 0.5 * rattle + 0.6 * tone


def clap(sr: int, rng: np.random.Generator) -> np.ndarray:
    """Drum-machine clap: three quick noise bursts then a tail, band-limited to the mid-highs."""
    n = int(0.25 * sr)
    env = 0.6 * envelope(n, sr, 0.001, 0.06)
    for k in range(3):
        m = int(k * 0.011 * sr)
        env[m:] = np.maximum(env[m:], envelope(n - m, sr, 0.0005, 0.008))
    band = highpass(smooth(noise(rng, n), 3), 12)
    return 2.0 * band * env


def hat(sr: int, rng: np.random.Generator, decay: float) -> np.ndarray:
    """Hi-hat: twice-differentiated noise (energy above ~5 kHz) with a short or long decay."""
    n = int(min(6 * decay + 0.01, 1.0) * sr)
    hiss = np.diff(noise(rng, n + 2), n=2) * 0.5
    return hiss * envelope(n, sr, 0.0005, decay)


def ride(sr: int, rng: np.random.Generator) -> np.ndarray:
    """Ride cymbal: a cluster of inharmonic metallic partials ("ping") over a long noise wash."""
    n = int(1.4 * sr)
    base = rng.uniform(550.0, 800.0)
    ping = np.zeros(n, F32)
    for ratio, amp in ((1.0, 0.5), (1.59, 0.4), (2.37, 0.35), (3.43, 0.3), (4.81, 0.25)):
        ping += amp * sine(base * ratio * rng.uniform(0.99, 1.01), n, sr, rng.random())
    ping *= envelope(n, sr, 0.001, rng.uniform(0.25, 0.45))
    wash = np.diff(noise(rng, n + 1)) * envelope(n, sr, 0.001, rng.uniform(0.5, 0.9))
    return 0.35 * ping + 0.4 * wash


def crash(sr: int, rng: np.random.Generator) -> np.ndarray:
    n = int(2.0 * sr)
    return np.diff(noise(rng, n + 1)) * envelope(n, sr, 0.002, rng.uniform(0.6, 1.1))


def rim(sr: int, rng: np.random.Generator) -> np.ndarray:
    """Rimshot / cross-stick: a woody high click."""
    n = int(0.08 * sr)
    tone = sine(rng.uniform(1400.0, 2100.0), n, sr) * envelope(n, sr, 0.0005, 0.012)
    knock = sine(rng.uniform(350.0, 500.0), n, sr) * envelope(n, sr, 0.0005, 0.02)
    return tone + 0.6 * knock + 0.3 * np.diff(noise(rng, n + 1)) * envelope(n, sr, 0.0, 0.005)


def shaker(sr: int, rng: np.random.Generator) -> np.ndarray:
    n = int(0.12 * sr)
    return np.diff(noise(rng, n + 1)) * envelope(n, sr, 0.015, 0.03)


# --- pitched instruments ---------------------------------------------------------------------


def pad_note(freq: float, n: int, sr: int, rng: np.random.Generator, detune: float):
    """Soft pad voice: two slightly detuned sines (slow beating) plus a quiet octave."""
    return (
        sine(freq * (1.0 - detune), n, sr, rng.random())
        + sine(freq * (1.0 + detune), n, sr, rng.random())
        + 0.25 * sine(2.0 * freq, n, sr, rng.random())
    )


def bell(freq: float, sr: int, rng: np.random.Generator, seconds: float = 3.0) -> np.ndarray:
    """Struck-bar bell: inharmonic partials (1, 2.76, 5.4) that decay faster the higher they are."""
    n = int(seconds * sr)
    out = np.zeros(n, F32)
    for ratio, amp, decay in ((1.0, 1.0, 1.6), (2.76, 0.45, 0.6), (5.4, 0.25, 0.25)):
        if freq * ratio < sr / 2.2:
            out += amp * sine(freq * ratio, n, sr, rng.random()) * envelope(n, sr, 0.003, decay)
    return out


def epiano(freq: float, seconds: float, sr: int) -> np.ndarray:
    """Electric piano: a sine phase-modulated by itself with a decaying index (bright "tine"
    attack, mellow sustain), plus a quiet bell-like partial."""
    n = int(seconds * sr)
    p = TWO_PI * phase(freq, n, sr)
    index = 1.8 * envelope(n, sr, 0.0, 0.15)
    tone = np.sin(p + index * np.sin(p)) + 0.15 * sine(freq * 4.0, n, sr) * envelope(
        n, sr, 0.0, 0.08
    )
    return tone * envelope(n, sr, 0.003, 0.9, release=min(0.05, seconds / 3))


def organ(freq: float, seconds: float, sr: int, drawbars=(1.0, 0.6, 0.35, 0.2)) -> np.ndarray:
    """Tonewheel organ: a few harmonically related sines, no decay."""
    n = int(seconds * sr)
    out = np.zeros(n, F32)
    for h, amp in enumerate(drawbars, start=1):
        if freq * h < sr / 2.2:
            out += amp * sine(freq * h, n, sr)
    return out * envelope(n, sr, 0.004, release=min(0.015, seconds / 3))
