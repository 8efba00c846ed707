"""Signal building blocks of the demo synthesiser: oscillators, envelopes, filters, a limiter.

They work in float32 (numpy's float32 sin/exp are several times faster than float64); only
oscillator phases need care to stay in tune over long notes (`phase`). Kept apart from the
instruments so that every sound source, and the final mix, share one set of primitives.
"""

from __future__ import annotations

import math

import numpy as np

TWO_PI = np.float32(2.0 * np.pi)
F32 = np.float32


def midi_hz(note: float) -> float:
    """The frequency (Hz) of MIDI note `note` (69 = A4 = 440 Hz)."""
    return 440.0 * 2.0 ** ((note - 69.0) / 12.0)


def phase(freq, n: int, sr: int, phase0: float = 0.0) -> np.ndarray:
    """Oscillator phase in cycles wrapped to [0, 1); `freq` is a constant or a per-sample array."""
    if np.ndim(freq) != 0:
        cycles = np.cumsum(np.asarray(freq, dtype=np.float64)) / sr + phase0
        cycles -= np.floor(cycles)
        return cycles.astype(F32)
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
    p = head.astype(F32)[:, None] + tail.astype(F32)[None, :]
    p -= np.floor(p)
    return p.ravel()[:n]


def sine(freq, n: int, sr: int, phase0: float = 0.0) -> np.ndarray:
    return np.sin(TWO_PI * phase(freq, n, sr, phase0))


def saw(freq, n: int, sr: int, phase0: float = 0.0) -> np.ndarray:
    """Sawtooth with polyBLEP edges: the bright analogue-synth buzz without harsh aliasing."""
    p = phase(freq, n, sr, phase0)
    dt = F32(min(float(np.mean(freq)) / sr, 0.5))
    y = 2.0 * p - 1.0
    lo = p < dt
    t = p[lo] / dt
    y[lo] -= t + t - t * t - 1.0
    hi = p > 1.0 - dt
    t = (p[hi] - 1.0) / dt
    y[hi] -= t * t + t + t + 1.0
    return y


def square(freq, n: int, sr: int, phase0: float = 0.0) -> np.ndarray:
    # The difference of two half-cycle-shifted saws is a band-limited square (odd harmonics only).
    return 0.5 * (saw(freq, n, sr, phase0) - saw(freq, n, sr, phase0 + 0.5))


def noise(rng: np.random.Generator, n: int) -> np.ndarray:
    # Uniform noise is cheaper than Gaussian and sounds the same once filtered and enveloped.
    return rng.random(n, dtype=F32) * 2.0 - 1.0


def envelope(
    n: int, sr: int, attack: float = 0.002, decay: float = math.inf, release: float = 0.0
) -> np.ndarray:
    """Linear attack, exponential decay with time constant `decay` seconds, linear fade-out."""
    t = np.arange(n, dtype=F32) / F32(sr)
    env = np.exp(-t / F32(decay)) if math.isfinite(decay) else np.ones(n, F32)
    a = min(n, int(attack * sr))
    if a > 0:
        env[:a] *= np.linspace(0.0, 1.0, a, dtype=F32)
    r = min(n, int(release * sr))
    if r > 0:
        env[n - r :] *= np.linspace(1.0, 0.0, r, dtype=F32)
    return env


def smooth(x: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average: a cheap low-pass (its first null is at sr / width Hz)."""
    width = int(width)
    if width <= 1 or x.size < width:
        return x
    if width <= 24:
        return np.convolve(x, np.full(width, 1.0 / width, F32), mode="same").astype(F32)
    csum = np.concatenate(([0.0], np.cumsum(x, dtype=np.float64)))
    y = (csum[width:] - csum[:-width]) / width
    left = (width - 1) // 2
    return np.pad(y, (left, width - 1 - left), mode="edge").astype(F32)


def highpass(x: np.ndarray, width: int) -> np.ndarray:
    """Removes what a `width`-sample moving average keeps: a cheap high-pass."""
    return x - smooth(x, width)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


def active_rms(x: np.ndarray, sr: int) -> float:
    """RMS over the 50 ms frames where `x` is sounding (within 30 dB of its loudest frame): the
    level of a sparse part (one kick per bar, a few bells) while it plays, not diluted by rests."""
    frame = max(1, int(0.05 * sr))
    m = x.size // frame * frame
    if m == 0:
        return rms(x)
    power = np.mean(np.square(x[:m].reshape(-1, frame), dtype=np.float64), axis=1)
    active = power[power > 1e-3 * power.max()]
    return float(np.sqrt(np.mean(active))) if active.size else 0.0


def limit(x: np.ndarray, ceiling: float, sr: int) -> np.ndarray:
    """Look-ahead brick-wall limiter: |output| <= ceiling, with smooth gain changes.

    The gain each sample needs is held (minimum over its 12 ms block and both neighbours), then
    interpolated linearly between block centres; each interpolated value mixes two held values
    that are both at most the sample's own need, so the ceiling holds exactly while the gain moves
    smoothly (no clipping distortion)."""
    n = x.size
    w = max(2, int(0.012 * sr))
    need = F32(ceiling) / np.maximum(np.abs(x), F32(ceiling))
    blocks = -(-n // w)
    padded = np.ones(blocks * w, F32)
    padded[:n] = need
    low = padded.reshape(blocks, w).min(axis=1)
    held = low.copy()
    held[1:] = np.minimum(held[1:], low[:-1])
    held[:-1] = np.minimum(held[:-1], low[1:])
    before = np.concatenate((held[:1], held[:-1]))[:, None]
    after = np.concatenate((held[1:], held[-1:]))[:, None]
    offset = (np.arange(w, dtype=F32) - F32((w - 1) / 2)) / F32(w)  # from the block centre
    neighbour = np.where(offset < 0, before, after)
    gain = held[:, None] + np.abs(offset) * (neighbour - held[:, None])
    return x * gain.ravel()[:n]
