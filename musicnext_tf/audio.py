"""Audio decoding, mixing to mono, resampling and the clip rule.

Decoding uses soundfile (libsndfile: wav, flac, ogg/vorbis, mp3, au, aiff); resampling uses soxr's
high-quality mode, as librosa's default does. The clip rule is applied before resampling, and only
the frames it keeps are decoded, so a full-length song costs the 30 s it contributes.

Every failure raises `AudioError` with the path and a short machine-readable reason, so that
dataset preparation can skip and report a bad file instead of stopping.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import soxr

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".au", ".snd", ".aiff", ".aif")
CLIP_RULES = ("head", "paper", "full")


class AudioError(Exception):
    """A recording that cannot be used; `reason` is a short code, `detail` says more."""

    def __init__(self, path: str | os.PathLike, reason: str, detail: str = ""):
        self.path = str(path)
        self.reason = reason
        self.detail = detail
        super().__init__(f"{self.path}: {reason}" + (f" ({detail})" if detail else ""))


@dataclass(frozen=True)
class AudioInfo:
    """What the file header says about a recording."""

    sample_rate: int
    frames: int
    channels: int

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


def probe(path: str | os.PathLike) -> AudioInfo:
    """Reads the header of an audio file; raises AudioError if it is not readable audio."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(path, "missing", "no such file")
    if path.stat().st_size == 0:
        raise AudioError(path, "empty", "file has 0 bytes")
    try:
        info = soundfile.info(str(path))
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as error:
        raise AudioError(path, "undecodable", str(error).strip()) from None
    if info.samplerate <= 0 or info.channels <= 0:
        raise AudioError(
            path, "undecodable", f"header says {info.samplerate} Hz, {info.channels} channels"
        )
    declared, present = _declared_and_present_data_bytes(path, info.format)
    if declared is not None and present < declared:
        # libsndfile quietly shortens such files; a cut-off download must not pass as a short song
        raise AudioError(
            path, "truncated", f"header declares {declared} data bytes, file holds {present}"
        )
    return AudioInfo(int(info.samplerate), int(info.frames), int(info.channels))


def _declared_and_present_data_bytes(path: Path, container: str) -> tuple[int | None, int]:
    """Size of the audio data that a WAV or AU header declares, and how much the file holds.

    Returns (None, 0) for other containers and for headers that leave the size open (streaming).
    """
    size = path.stat().st_size
    with path.open("rb") as file:
        head = file.read(12)
        if container == "WAV" and head[:4] == b"RIFF" and head[8:12] == b"WAVE":
            offset = 12
            while offset + 8 <= size:
                file.seek(offset)
                chunk_id, chunk_size = struct.unpack("<4sI", file.read(8))
                if chunk_id == b"data":
                    open_ended = chunk_size in (0, 0xFFFFFFFF)
                    return (None, 0) if open_ended else (chunk_size, size - offset - 8)
                offset += 8 + chunk_size + (chunk_size & 1)
        if container == "AU" and head[:4] == b".snd":
            data_offset, data_size = struct.unpack(">II", head[4:12])
            return (None, 0) if data_size == 0xFFFFFFFF else (data_size, size - data_offset)
    return None, 0


def clip_window(
    frames: int, sample_rate: int, rule: str, clip_seconds: float = 30.0, min_seconds: float = 3.0
) -> tuple[int, int]:
    """The [start, stop) frames that the clip rule keeps, at the file's own sample rate.

    Rules:
        "head": the first `clip_seconds` (GTZAN, Extended Ballroom, folders).
        "paper": the ISMIR2004 rule of the MusicNeXt paper: shorter than `clip_seconds` -> dropped;
            shorter than 2 * `clip_seconds` -> the last `clip_seconds`; else seconds
            `clip_seconds` to 2 * `clip_seconds` (30-60 s).
        "full": the whole recording.
    Raises:
        ValueError for an unknown rule; AudioError("too_short") if the rule drops the recording.
    """
    if rule not in CLIP_RULES:
        raise ValueError(f"unknown clip rule {rule!r}; expected one of {CLIP_RULES}")
    clip = int(round(clip_seconds * sample_rate))
    if rule == "paper":
        if frames < clip:
            raise _too_short(frames, sample_rate, clip_seconds)
        if frames < 2 * clip:
            return frames - clip, frames
        return clip, 2 * clip
    if frames < int(round(min_seconds * sample_rate)):
        raise _too_short(frames, sample_rate, min_seconds)
    return (0, min(frames, clip)) if rule == "head" else (0, frames)


def _too_short(frames: int, sample_rate: int, needed: float) -> AudioError:
    return AudioError("", "too_short", f"{frames / sample_rate:.2f} s < {needed:g} s")


def to_mono(samples: np.ndarray) -> np.ndarray:
    """Mean of the channels: [frames, channels] -> [frames]."""
    return samples.mean(axis=1) if samples.ndim == 2 else samples


def resample(samples: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Band-limited resampling with soxr's high-quality mode (librosa's default, `soxr_hq`)."""
    if source_rate == target_rate:
        return samples.astype(np.float32, copy=False)
    return soxr.resample(samples, source_rate, target_rate, quality="HQ").astype(np.float32)


def load_clip(
    path: str | os.PathLike,
    sample_rate: int = 22050,
    rule: str = "head",
    clip_seconds: float = 30.0,
    min_seconds: float = 3.0,
) -> np.ndarray:
    """Decodes the part of a recording the clip rule keeps, as mono float32 at `sample_rate`.

    Raises:
        AudioError with reason "missing", "empty", "undecodable", "truncated", "too_short",
        "silent" or "not_finite".
    """
    info = probe(path)
    try:
        start, stop = clip_window(info.frames, info.sample_rate, rule, clip_seconds, min_seconds)
    except AudioError as error:
        raise AudioError(path, error.reason, error.detail) from None
    try:
        samples = soundfile.read(
            str(path), start=start, stop=stop, dtype="float32", always_2d=True
        )[0]
    except (soundfile.LibsndfileError, RuntimeError, ValueError) as error:
        raise AudioError(path, "undecodable", str(error).strip()) from None
    wanted = stop - start
    # Headers of damaged files promise more frames than the data holds; a few missing frames
    # (mp3 padding estimates) are normal, more than a tenth of a second is a truncated file.
    if len(samples) < wanted - max(1, info.sample_rate // 10):
        raise AudioError(
            path, "truncated", f"header promises {wanted} frames, decoded {len(samples)}"
        )
    mono = to_mono(samples)
    if not np.all(np.isfinite(mono)):
        raise AudioError(path, "not_finite", "samples contain NaN or Inf")
    if not np.any(mono):
        raise AudioError(path, "silent", "every sample is zero")
    return resample(mono, info.sample_rate, sample_rate)
