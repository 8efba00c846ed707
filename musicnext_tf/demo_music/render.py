"""Rendering demo clips and writing them as a folder dataset, idempotent and crash-safe.

`synthesize_clip` runs one genre's arranger on an rng seeded by (seed, genre index, clip index)
alone, so a clip is reproducible and independent of every other clip. `write_demo_dataset` writes
the clips as WAV files that survive a killed run: each appears whole or not at all, and a rerun
completes the set, or rewrites it when it was made with other parameters.
"""

from __future__ import annotations

import io
import os
import pathlib
import re
import time
from collections.abc import Sequence

import numpy as np
import soundfile

from musicnext_tf.demo_music.arrangement import Clip
from musicnext_tf.demo_music.genres import ARRANGERS, DEMO_GENRES
from musicnext_tf.files import atomic_file
from musicnext_tf.progress import tracked

#: Bump when the audio a given (genre, seed, clip index) produces changes, so old caches regenerate.
GENERATOR_VERSION = "musicnext-demo-synth 1"

VERSION_FILE = "DEMO_VERSION"
# Hidden marker with the parameters of a run in progress, so a rerun with other parameters after an
# interruption knows the clips on disk are not its own.
_PENDING_FILE = ".DEMO_VERSION.pending"

# Every file is written through `files.atomic_file` to a temporary `.<random>.partial` beside it:
# hidden (leading dot) and not `.wav`, so folder loaders never index it, and easy to recognise.
_TEMP_PREFIX, _TEMP_SUFFIX = ".", ".partial"
# A temporary file older than this cannot belong to a writer that is still running (one clip takes
# well under a second), so it is an interrupted run's leftover and safe to delete.
_STALE_TEMP_SECONDS = 600.0


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
    clip = Clip(rng, n, int(sample_rate))
    ARRANGERS[genre](clip)
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


def _remove_stale_temporaries(folder: pathlib.Path) -> None:
    """Deletes temporaries that interrupted runs left behind (old enough to be nobody's)."""
    now = time.time()
    for leftover in folder.glob(f"{_TEMP_PREFIX}*{_TEMP_SUFFIX}"):
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
        with atomic_file(pending_path, prefix=_TEMP_PREFIX, suffix=_TEMP_SUFFIX) as file:
            file.write(version.encode("utf-8"))
        for genre, k, path in tracked(todo, "demo audio", "clip", progress):
            audio = synthesize_clip(genre, seed, seconds, sample_rate, clip_index=k)
            with atomic_file(path, prefix=_TEMP_PREFIX, suffix=_TEMP_SUFFIX) as file:
                soundfile.write(file, audio, sample_rate, subtype="PCM_16", format="WAV")

    if todo or previous != version:  # left alone when nothing changed, like the clips
        with atomic_file(version_path, prefix=_TEMP_PREFIX, suffix=_TEMP_SUFFIX) as file:
            file.write(version.encode("utf-8"))
    pending_path.unlink(missing_ok=True)
    return root
