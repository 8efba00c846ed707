"""Audio decoding, mixing to mono, resampling and the clip rule.

Decoding uses soundfile (libsndfile: wav, flac, ogg/vorbis/opus, mp3, au, aiff, caf) by default,
or tensorflow-io (`[audio] decoder = "tfio"`, an optional extra); resampling uses soxr's high-quality
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
from musicnext_tf.config import CLIP_RULES, ConfigError

# what libsndfile decodes (Ogg holds Vorbis or Opus; .mp2 is MPEG layer II)
AUDIO_EXTENSIONS = (
    *(".wav", ".wave", ".w64", ".rf64", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".mp2"),
    *(".au", ".snd", ".aiff", ".aif", ".aifc", ".caf"),
)
# audio that it cannot decode: reported as "unsupported_format", never silently left out
UNSUPPORTED_EXTENSIONS = (
    *(".m4a", ".m4b", ".mp4", ".aac", ".alac", ".wma", ".asf", ".ape", ".mpc", ".wv", ".tta"),
    *(".mka", ".webm", ".ac3", ".dts", ".amr", ".ra", ".rm", ".dsf", ".dff"),
)
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

    MP3 files without a length header whose length libsndfile gets wrong, even by one frame
    (see `mp3`), get their length from their frame headers and are decoded from a `full_stream`."""

    name = "soundfile"

    def info(self, path: Path) -> AudioInfo:
        try:
            info = soundfile.info(str(path))
        except (soundfile.LibsndfileError, RuntimeError, TypeError) as error:
            raise _open_error(path, error) from None
        frames = int(info.frames)
        if info.format == "MP3":
            layout = _misjudged_mp3(path, frames)
            frames = layout.samples if layout else frames
        return AudioInfo(int(info.samplerate), frames, int(info.channels))

    def read(self, path: Path, start: int, stop: int) -> np.ndarray:
        """Frames [start, stop) as float32 [frames, channels] in [-1, 1]."""
        try:
            with soundfile.SoundFile(str(path)) as file:
                if file.format == "MP3" and _misjudged_mp3(path, file.frames):
                    with mp3.full_stream(path) as stream, soundfile.SoundFile(stream) as whole:
                        whole.seek(start)
                        return whole.read(stop - start, dtype="float32", always_2d=True)
                file.seek(start)
                return file.read(stop - start, dtype="float32", always_2d=True)
        except (soundfile.LibsndfileError, RuntimeError, ValueError) as error:
            detail = f"decoding frames {start}-{stop} failed: {_libsndfile_message(error)}"
            raise AudioError(path, "undecodable", detail) from None


def _misjudged_mp3(path: Path, reported_frames: int) -> mp3.Layout | None:
    """The frame scan of an MP3 without a length header when libsndfile's length differs from
    it at all (for such files, the scan's count is what mpg123 decodes); None otherwise."""
    layout = _headerless_mp3(path)
    return layout if layout is not None and layout.samples != reported_frames else None


def _headerless_mp3(path: Path) -> mp3.Layout | None:
    """`mp3.headerless`, scanned once per version of the file for `info`, `read` and `probe`."""
    stat = path.stat()
    return _headerless_mp3_cached(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _headerless_mp3_cached(path: str, size: int, mtime_ns: int) -> mp3.Layout | None:
    return mp3.headerless(path)


# leading bytes of the containers libsndfile reads ("ID3": see `_file_kind`)
_SIGNATURES = (
    *((b"RIFF", "WAV"), (b"RIFX", "WAV"), (b"RF64", "RF64"), (b"BW64", "WAV"), (b"riff", "W64")),
    *((b"FORM", "AIFF"), (b".snd", "AU"), (b"dns.", "AU"), (b"caff", "CAF")),
    *((b"fLaC", "FLAC"), (b"OggS", "Ogg")),
)
# and of audio it cannot decode
_UNSUPPORTED_SIGNATURES = (
    *((b"\x30\x26\xb2\x75", "WMA"), (b"MAC ", "Monkey's Audio"), (b"MPCK", "Musepack")),
    *((b"MP+", "Musepack"), (b"wvpk", "WavPack"), (b"TTA1", "TTA"), (b"ADIF", "AAC")),
    *((b"\x1a\x45\xdf\xa3", "Matroska/WebM"), (b".RMF", "RealAudio"), (b"#!AMR", "AMR")),
    *((b"DSD ", "DSD"), (b"FRM8", "DSDIFF"), (b"\x0b\x77", "AC-3")),
)
_CONVERT = "convert it to .flac, .ogg or .wav (e.g. ffmpeg -i song.m4a song.flac)"


def unsupported_format(path: str | os.PathLike) -> str:
    """The detail for a file whose extension names audio that libsndfile cannot decode."""
    return f"{Path(path).suffix.lower()} files cannot be decoded here; {_CONVERT}"


def _sniff(head: bytes) -> tuple[str, bool] | None:
    """The audio format that leading bytes announce, and whether libsndfile decodes it."""
    for signatures, decodable in ((_SIGNATURES, True), (_UNSUPPORTED_SIGNATURES, False)):
        for signature, kind in signatures:
            if head.startswith(signature):
                return kind, decodable
    if head[4:8] == b"ftyp":
        return "MP4/M4A", False
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:  # MPEG frame sync
        return ("AAC", False) if head[1] & 0x06 == 0 else ("MP3", True)  # layer 0: ADTS AAC
    return None


def _file_kind(path: Path) -> tuple[bytes, tuple[str, bool] | None]:
    """The first 64 bytes of a file, and `_sniff` of them (of what follows an ID3v2 tag)."""
    with path.open("rb") as file:
        head = file.read(64)
        if not head.startswith(b"ID3"):
            return head, _sniff(head)
        file.seek(mp3.audio_start(head))
        return head, _sniff(file.read(16)) or ("MP3", True)


def _open_error(path: Path, error: Exception) -> AudioError:
    """Why libsndfile cannot open a file, from what the file starts with."""
    head, kind = _file_kind(path)
    if kind is not None and kind[1]:
        detail = f"libsndfile cannot decode this {kind[0]} file: {_libsndfile_message(error)}"
        return AudioError(path, "undecodable", detail)
    if kind is not None:
        return AudioError(path, "unsupported_format", f"it holds {kind[0]} audio; {_CONVERT}")
    # (the 64 bytes may end inside a character)
    text = head.decode("utf-8", "replace").rstrip("\ufffd").lstrip("\ufeff")
    if text.strip() and "\ufffd" not in text and all(c.isprintable() or c.isspace() for c in text):
        snippet = " ".join(text.split())[:20]
        return AudioError(
            path, "undecodable", f"not an audio file: it starts with text ({snippet!r})"
        )
    if path.suffix.lower() in UNSUPPORTED_EXTENSIONS:
        return AudioError(path, "unsupported_format", unsupported_format(path))
    detail = f"not an audio file: unknown content (first bytes {head[:8].hex(' ')})"
    return AudioError(path, "undecodable", detail)


def _libsndfile_message(error: Exception) -> str:
    """libsndfile's words without soundfile's "Error opening <path>:", and never its "File does
    not exist", which it says of an existing file that it cannot parse (an MP3 without frames)."""
    message = (getattr(error, "error_string", None) or str(error)).strip()
    if not message or "does not exist" in message:
        return "it recognises no audio data in it"
    return message


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
        if samples.dtype == np.float32 and _holds_32_bit_integers(path):
            samples = samples.view(np.int32)  # the integers' own bytes, typed as floats
        if samples.dtype == np.uint8:
            return ((samples.astype(np.float32) - 128.0) / 128.0).reshape(len(samples), -1)
        scale = self._SCALE.get(samples.dtype.name, 1.0)
        return (samples.astype(np.float32) / np.float32(scale)).reshape(len(samples), -1)


def _holds_32_bit_integers(path: Path) -> bool:
    """Whether a file is a WAV of 32-bit integer PCM. tensorflow-io types every 32-bit WAV as
    float32 and copies its bytes unchanged, so such integers arrive as meaningless floats (often
    NaN or Inf); libsndfile's reading of the header tells the two kinds apart."""
    try:
        info = soundfile.info(str(path))
    except (soundfile.LibsndfileError, RuntimeError, TypeError):
        return False
    return info.format in ("WAV", "WAVEX") and info.subtype == "PCM_32"


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
    """Reads the header of an audio file; raises AudioError if it is not readable audio, or if
    the file is cut short."""
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
    cut = _cut_short(path)
    if cut is not None:
        raise AudioError(path, "truncated", cut)
    return info


def _cut_short(path: Path) -> str | None:
    """Why an Ogg, FLAC or MP3 file looks cut short, or None. libsndfile takes an Ogg file's
    length from its last whole page, decodes a cut FLAC file up to the cut and drops a partial
    MP3 frame, so a cut-off download would otherwise pass as a short song."""
    kind = _file_kind(path)[1]
    if kind == ("Ogg", True):
        return _ogg_cut(path)
    if kind == ("FLAC", True):
        return _flac_cut(path)
    if kind == ("MP3", True):
        layout = _headerless_mp3(path)  # files with a length header: decode_clip counts frames
        if layout is not None and layout.cut is not None:
            needed, held = layout.cut
            return f"its last MPEG frame needs {needed} bytes, the file holds {held} of them"
    return None


_OGG_PAGE_MAX = 27 + 255 + 255 * 255  # header, segment table, body
_OGG_END_OF_STREAM = 0x04


def _ogg_cut(path: Path) -> str | None:
    """Whether an Ogg stream (Vorbis, Opus) ends in a partial page or in a page without the
    end-of-stream flag; only the last two pages' worth of bytes are read."""
    size = path.stat().st_size
    base = max(0, size - 2 * _OGG_PAGE_MAX)
    with path.open("rb") as file:
        file.seek(base)
        tail = file.read()
    pages = {}  # offset in `tail` -> (its end, its header_type) for what looks like a page header
    at = len(tail)
    while (at := tail.rfind(b"OggS", 0, at)) >= 0:
        page = _ogg_page(tail, at)
        if page is not None:
            pages[at] = page
    page_ends = {end for end, _ in pages.values()}
    for at in sorted(pages, reverse=True):  # "OggS" in a packet: no page ends where it starts
        end, header_type = pages[at]
        if end == len(tail):
            if header_type & _OGG_END_OF_STREAM:
                return None
            return f"the Ogg stream has no end-of-stream page: it stops after {size} bytes"
        if end > len(tail) and (at in page_ends or base + at == 0):
            return f"its last Ogg page needs {end - at} bytes, the file holds {len(tail) - at}"
    return None  # no page ends the file (a tag after it, say): cannot tell


def _ogg_page(data: bytes, at: int) -> tuple[int, int] | None:
    """(end, header_type) of the Ogg page whose capture pattern is at `at`, or None if the bytes
    there are no page header (version 0, known flags); the end is beyond the data when the page
    is cut, in its header or segment table included."""
    header = data[at : at + 27]
    if len(header) < 27:
        return (at + 27, 0) if header[4:5] in (b"", b"\0") else None
    if header[4] != 0 or header[5] & ~0x07:
        return None
    table = data[at + 27 : at + 27 + header[26]]
    return at + 27 + header[26] + (sum(table) if len(table) == header[26] else 0), header[5]


def _flac_cut(path: Path) -> str | None:
    """Whether a FLAC file holds the last frame its STREAMINFO declares: libFLAC seeks there in a
    few reads, and fails on a file that ends earlier."""
    try:
        with soundfile.SoundFile(str(path)) as file:
            declared, rate = file.frames, file.samplerate
            if not 0 < declared < 2**63 - 1:
                return None  # STREAMINFO leaves the length open (libsndfile: 0 or the most)
            try:
                file.seek(declared - 1)
                if len(file.read(1)) == 1:
                    return None
            except (soundfile.LibsndfileError, RuntimeError):
                pass
    except (soundfile.LibsndfileError, RuntimeError):
        return None  # not readable: the decoder says why
    decoded = 0
    with soundfile.SoundFile(str(path)) as file:
        try:
            for block in file.blocks(4096, dtype="int16"):
                decoded += len(block)
        except (soundfile.LibsndfileError, RuntimeError):
            pass
    return (
        f"STREAMINFO declares {declared} frames ({declared / rate:.2f} s), the data ends after "
        f"about {decoded} ({decoded / rate:.2f} s)"
    )


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
        AudioError with reason "missing", "empty", "undecodable", "unsupported_format",
        "truncated", "too_short", "silent" or "not_finite".
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
