"""Benchmark audio written on the fly, in the formats of the paper's datasets.

A few distinct recordings are synthesised (the demo dataset's genre synthesiser) and encoded; the
rest of a corpus are hard links to them under other names, so a 1000-clip corpus costs seconds to
write and little disk, while every clip is still a separate file (and a separate cache entry) that
preparation must decode. A corpus of several formats is a `folder` dataset with one folder per
format: ROOT/<format>/<format>-<n>.<ext>.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from musicnext_tf.demo_music import synthesize_clip

GENRES = ("jazz", "rock")
SYNTH_SECONDS = 30.0  # longer recordings repeat a synthesised 30 s with a varied level


@dataclass(frozen=True)
class Format:
    """One kind of recording: how it is stored, and the clip rule its dataset uses."""

    name: str
    like: str  # the dataset it imitates
    seconds: float
    sample_rate: int
    channels: int
    extension: str


FORMATS = {
    "mp3": Format("mp3", "Extended Ballroom", 30.0, 44100, 2, "mp3"),
    "wav": Format("wav", "GTZAN", 30.0, 22050, 1, "wav"),
    "song": Format("song", "ISMIR2004", 240.0, 44100, 2, "mp3"),
}


def recording(fmt: Format, index: int, seconds: float | None = None) -> np.ndarray:
    """Samples [frames, channels] of distinct recording `index` of the format (in [-1, 1])."""
    seconds = fmt.seconds if seconds is None else seconds
    genre = GENRES[index % len(GENRES)]
    base = synthesize_clip(
        genre, seed=index, seconds=min(seconds, SYNTH_SECONDS), sample_rate=fmt.sample_rate
    )
    repeats = int(np.ceil(seconds / SYNTH_SECONDS))
    levels = np.linspace(1.0, 0.6, repeats, dtype=np.float32)
    mono = np.concatenate([level * base for level in levels])[: int(seconds * fmt.sample_rate)]
    channels = [mono] + [0.9 * np.roll(mono, 37 * c) for c in range(1, fmt.channels)]
    return np.stack(channels, axis=1)


def write_corpus(
    root: Path,
    fmt: Format,
    count: int,
    distinct: int = 2,
    seconds: float | None = None,
    label: str | None = None,
) -> list[Path]:
    """Writes `count` files of `fmt` into ROOT/<label>/ (`distinct` of them encoded, the rest
    hard links); returns their paths. `seconds` overrides the format's length, `label` (the
    folder, a genre of the `folder` dataset) defaults to the format's name."""
    folder = root / (label or fmt.name)
    folder.mkdir(parents=True, exist_ok=True)
    sources = []
    for index in range(min(distinct, count)):
        path = folder / f"{fmt.name}-{index:05d}.{fmt.extension}"
        soundfile.write(
            str(path), recording(fmt, index, seconds), fmt.sample_rate, format=fmt.extension.upper()
        )
        sources.append(path)
    paths = list(sources)
    for index in range(len(sources), count):
        source = sources[index % len(sources)]
        path = folder / f"{fmt.name}-{index:05d}.{fmt.extension}"
        os.link(source, path)
        paths.append(path)
    return paths
