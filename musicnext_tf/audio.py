"""Audio decoding, mixing to mono, resampling and the clip rule.

Decoding uses soundfile (libsndfile: wav, flac, ogg/vorbis, mp3, au, aiff) by default, or
tensorflow-io (`[audio] decoder = "tfio"`, an optional extra); resampling uses soxr's high-quality
mode, as librosa's default does. The clip rule is applied before resampling, and only the frames
it keeps are decoded, so a full-length song costs the 30 s it contributes.

Every failure raises `AudioError` with the path and a short machine-readable reason, so that
dataset preparation can skip and report a bad file instead of stopping.
"""

from __future__ import annotations

import functools
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import soxr

from musicnext_tf import mp3
from musicnext_tf.config import ConfigError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".au", ".snd", ".aiff", ".aif")
CLIP_RULES = ("head", "paper", "full")
DECODERS = ("soundfile", "tfio")
# A clip whose peak stays below -80 dBFS (about 3 steps of 16-bit audio) holds no music: digital
# silence, or dither and hiss from an empty recording.
SILENCE_PEAK_DBFS = -80.0


class AudioError(Exception):
    """A recording that cannot be used; `reason` is a short code, `detail` says more."""

    def __init__(self, path: str | os.PathLike, reason: str, detail: str = ""):
        self.path = str(path)
        self.reason = reason
        self.detail = detail
        super().__init__(f"{self.path}: {reason}" + (f" ({detail})" if detail else ""))

    def __reduce__(self):
        # so that worker processes can send it back whole
        return (AudioError, (self.path, self.reason, self.detail))


@dataclass(frozen=True)
class AudioInfo:
    """What the file header says about a recording."""

    sample_rate: int
    frames: int
    channels: int

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


@dataclass(frozen=True)
class Clip:
    """The part of a recording that a clip rule kept.

    Attributes:
        samples: mono float32 [frames] at the requested sample rate.
        source: the recording's own rate, length and channels.
        start, stop: the kept [start, stop) frames, at the source's rate.
    """

    samples: np.ndarray
    source: AudioInfo
    start: int
    stop: int


class SoundfileDecoder:
    """libsndfile through soundfile: seeks, so only the kept frames are decoded.

    MP3 files with a variable bitrate and no length header, whose length libsndfile misjudges
    (see `mp3`), get their length from their frame headers and are decoded whole."""

    name = "soundfile"

    def info(self, path: Path) -> AudioInfo:
        try:
            info = soundfile.info(str(path))
        except (soundfile.LibsndfileError, RuntimeError, TypeError) as error:
            raise AudioError(path, "undecodable", str(error).strip()) from None
        frames = int(info.frames)
        if info.format == "MP3":
            layout = _misjudged_mp3(str(path), frames, int(info.samplerate))
            frames = layout.samples if layout else frames
        return AudioInfo(int(info.samplerate), frames, int(info.channels))

    def read(self, path: Path, start: int, stop: int) -> np.ndarray:
        """Frames [start, stop) as float32 [frames, channels] in [-1, 1]."""
        try:
            with soundfile.SoundFile(str(path)) as file:
                if file.format == "MP3" and _misjudged_mp3(str(path), file.frames, file.samplerate):
                    with mp3.full_stream(path) as stream:
                        whole = soundfile.read(stream, dtype="float32", always_2d=True)[0]
                    return whole[start:stop]
                file.seek(start)
                return file.read(stop - start, dtype="float32", always_2d=True)
        except (soundfile.LibsndfileError, RuntimeError, ValueError) as error:
            raise AudioError(path, "undecodable", str(error).strip()) from None


@functools.lru_cache(maxsize=64)
def _misjudged_mp3(path: str, reported_frames: int, sample_rate: int) -> mp3.Layout | None:
    """`mp3.misjudged`, once per file for `info` and `read`."""
    return mp3.misjudged(path, reported_frames, sample_rate)


class TfioDecoder:
    """tensorflow-io's `AudioIOTensor` (wav, flac, ogg/vorbis, mp3; not au or aiff)."""

    name = "tfio"
    _SCALE = {"int16": 2.0**15, "int32": 2.0**31, "uint8": 2.0**7}

    def __init__(self):
        try:
            import tensorflow_io
        except ImportError as error:
            raise ConfigError(
                f"[audio] decoder = 'tfio' needs tensorflow-io ({error}): pip install "
                "musicnext-tf[tfio] (it runs with TensorFlow 2.17), or use decoder = 'soundfile'"
            ) from None
        import tensorflow

        self._tfio = tensorflow_io
        self._file_errors = (
            tensorflow.errors.InvalidArgumentError,
            tensorflow.errors.OutOfRangeError,
            tensorflow.errors.DataLossError,
            tensorflow.errors.UnknownError,
        )

    def _open(self, path: Path):
        try:
            return self._tfio.audio.AudioIOTensor(str(path))
        except self._file_errors as error:
            raise AudioError(path, "undecodable", _first_line(error.message)) from None
        except Exception as error:  # ops that do not load on this TensorFlow, and the like
            raise ConfigError(
                f"tensorflow-io failed on {path}: {_first_line(str(error))}. It needs the "
                "TensorFlow it was built for (2.17 for tensorflow-io 0.37); use [audio] "
                "decoder = 'soundfile'"
            ) from None

    def info(self, path: Path) -> AudioInfo:
        audio = self._open(path)
        frames, channels = (int(n) for n in audio.shape.numpy())
        return AudioInfo(int(audio.rate.numpy()), frames, channels)

    def read(self, path: Path, start: int, stop: int) -> np.ndarray:
        audio = self._open(path)
        try:
            samples = audio[start:stop].numpy()
        except self._file_errors as error:
            raise AudioError(path, "undecodable", _first_line(error.message)) from None
        if samples.dtype == np.uint8:
            return ((samples.astype(np.float32) - 128.0) / 128.0).reshape(len(samples), -1)
        scale = self._SCALE.get(samples.dtype.name, 1.0)
        return (samples.astype(np.float32) / np.float32(scale)).reshape(len(samples), -1)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


@functools.cache
def get_decoder(name: str = "soundfile") -> SoundfileDecoder | TfioDecoder:
    """The decoder named by `[audio] decoder`; tensorflow-io is imported only when chosen."""
    if name == "soundfile":
        return SoundfileDecoder()
    if name == "tfio":
        return TfioDecoder()
    raise ConfigError(f"[audio] decoder = {name!r} is unknown; choose one of {list(DECODERS)}")


def probe(path: str | os.PathLike, decoder: str = "soundfile") -> AudioInfo:
    """Reads the header of an audio file; raises AudioError if it is not readable audio."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(path, "missing", "no such file")
    if path.stat().st_size == 0:
        raise AudioError(path, "empty", "file has 0 bytes")
    info = get_decoder(decoder).info(path)
    if info.sample_rate <= 0 or info.channels <= 0:
        raise AudioError(
            path, "undecodable", f"header says {info.sample_rate} Hz, {info.channels} channels"
        )
    declared, present = _declared_and_present_data_bytes(path)
    if declared is not None and present < declared:
        # libsndfile quietly shortens such files; a cut-off download must not pass as a short song
        raise AudioError(
            path, "truncated", f"header declares {declared} data bytes, file holds {present}"
        )
    return info


def _declared_and_present_data_bytes(path: Path) -> tuple[int | None, int]:
    """Size of the audio data that a WAV, AU or AIFF header declares, and how much the file holds.

    Returns (None, 0) for other containers and for headers that leave the size open (streaming).
    """
    size = path.stat().st_size
    with path.open("rb") as file:
        head = file.read(12)
        if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
            return _chunk_data_bytes(file, size, b"data", "<4sI")
        if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
            declared, present = _chunk_data_bytes(file, size, b"SSND", ">4sI")
            # SSND starts with an 8-byte offset and block size before the samples
            return (None, 0) if declared is None else (declared - 8, present - 8)
        if head[:4] == b".snd":
            data_offset, data_size = struct.unpack(">II", head[4:12])
            return (None, 0) if data_size == 0xFFFFFFFF else (data_size, size - data_offset)
    return None, 0


def _chunk_data_bytes(file, size: int, wanted: bytes, layout: str) -> tuple[int | None, int]:
    """Declared and present size of the first `wanted` chunk of a RIFF or IFF file."""
    offset = 12
    while offset + 8 <= size:
        file.seek(offset)
        chunk_id, chunk_size = struct.unpack(layout, file.read(8))
        if chunk_id == wanted:
            open_ended = chunk_size in (0, 0xFFFFFFFF)
            return (None, 0) if open_ended else (chunk_size, size - offset - 8)
        offset += 8 + chunk_size + (chunk_size & 1)
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


def decode_clip(
    path: str | os.PathLike,
    sample_rate: int = 22050,
    rule: str = "head",
    clip_seconds: float = 30.0,
    min_seconds: float = 3.0,
    decoder: str = "soundfile",
) -> Clip:
    """Decodes the part of a recording the clip rule keeps, as mono float32 at `sample_rate`.

    Raises:
        AudioError with reason "missing", "empty", "undecodable", "truncated", "too_short",
        "silent" or "not_finite".
        ConfigError for an unknown or unusable `decoder`.
    """
    info = probe(path, decoder)
    try:
        start, stop = clip_window(info.frames, info.sample_rate, rule, clip_seconds, min_seconds)
    except AudioError as error:
        raise AudioError(path, error.reason, error.detail) from None
    samples = get_decoder(decoder).read(Path(path), start, stop)
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
    _check_not_silent(path, mono)
    return Clip(resample(mono, info.sample_rate, sample_rate), info, start, stop)


def _check_not_silent(path, mono: np.ndarray) -> None:
    peak = float(np.max(np.abs(mono))) if mono.size else 0.0
    if peak == 0.0:
        raise AudioError(path, "silent", "every sample is zero")
    if 20.0 * np.log10(peak) < SILENCE_PEAK_DBFS:
        raise AudioError(
            path,
            "silent",
            f"peak level {20.0 * np.log10(peak):.1f} dBFS, below {SILENCE_PEAK_DBFS:g} dBFS",
        )


def load_clip(
    path: str | os.PathLike,
    sample_rate: int = 22050,
    rule: str = "head",
    clip_seconds: float = 30.0,
    min_seconds: float = 3.0,
    decoder: str = "soundfile",
) -> np.ndarray:
    """The samples of `decode_clip`: mono float32 [frames] at `sample_rate`."""
    return decode_clip(path, sample_rate, rule, clip_seconds, min_seconds, decoder).samples
