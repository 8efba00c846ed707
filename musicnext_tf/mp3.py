"""The true length of MP3 files whose length libsndfile misjudges, and a way to decode all of them.

An MP3 file has no length field. Encoders write it into a Xing, Info or VBRI header in the first
frame; without one, libsndfile (through mpg123) estimates the length from the file size and the
first frame's bitrate, and decodes only that many samples. For a variable bitrate the estimate can
be far off (a 70 s file read as 19 s), so the clip rule would pick the wrong seconds, or drop the
song as too short; even for a constant bitrate it counts the bytes of tags (cover art in an ID3v2
tag, an APEv2 tag at the end) as frames, so that a complete file would look cut short. `scan`
walks the frame headers (no decoding) to count the samples exactly, and `full_stream` hands
libsndfile the file with an inflated size, so that it decodes every frame instead of stopping at
its estimate.

A cut file with a length header decodes fewer frames than it declares (`audio.decode_clip` checks
the frames it keeps). Without one, a file cut inside a frame (most cut-off downloads) shows in
`Layout.cut`; one cut where a frame ends cannot be told from a shorter song.

Frame header layout: ISO/IEC 11172-3 and 13818-3 (sync, version, layer, bitrate, sample rate,
padding), as documented in many places, e.g. http://www.mp3-tech.org/programmer/frame_header.html.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# bitrates in kbit/s by [MPEG-1?][layer] and index (0: free format, 15: invalid)
_BITRATES = {
    (True, 1): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 3): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
# sample rates by version bits (3: MPEG-1, 2: MPEG-2, 0: MPEG-2.5) and index
_SAMPLE_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
_LENGTH_HEADERS = (b"Xing", b"Info", b"VBRI")


@dataclass(frozen=True)
class Frame:
    """One parsed frame header."""

    length: int  # bytes, header included
    samples: int  # samples per channel it decodes to
    sample_rate: int


@dataclass(frozen=True)
class Layout:
    """What the frame headers of a file say."""

    samples: int  # per channel, summed over the whole frames (the decoder trims a few hundred)
    sample_rate: int
    has_length_header: bool  # a Xing, Info or VBRI header gives the length: libsndfile is right
    # (bytes the last frame needs, bytes the file holds of it) when the file ends inside that frame
    cut: tuple[int, int] | None = None


def parse_header(header: bytes) -> Frame | None:
    """The frame a 4-byte header describes, or None if the bytes are not a valid header."""
    if len(header) < 4 or header[0] != 0xFF or header[1] & 0xE0 != 0xE0:
        return None
    version = (header[1] >> 3) & 3
    layer = 4 - ((header[1] >> 1) & 3)  # 1, 2 or 3; 4 is reserved
    bitrate_index, rate_index = header[2] >> 4, (header[2] >> 2) & 3
    if version == 1 or layer == 4 or bitrate_index in (0, 15) or rate_index == 3:
        return None
    mpeg1 = version == 3
    bitrate = _BITRATES[(mpeg1, layer)][bitrate_index] * 1000
    sample_rate = _SAMPLE_RATES[version][rate_index]
    padding = (header[2] >> 1) & 1
    if layer == 1:
        return Frame((12 * bitrate // sample_rate + padding) * 4, 384, sample_rate)
    samples = 1152 if layer == 2 or mpeg1 else 576
    return Frame(samples // 8 * bitrate // sample_rate + padding, samples, sample_rate)


def audio_start(data: bytes) -> int:
    """Offset of the first byte after an ID3v2 tag (0 without one)."""
    if data[:3] != b"ID3" or len(data) < 10:
        return 0
    size = (data[6] << 21) | (data[7] << 14) | (data[8] << 7) | data[9]
    footer = 10 if data[5] & 0x10 else 0
    return 10 + size + footer


def _next_frame(data: bytes, offset: int) -> tuple[int, Frame] | None:
    """The next offset at or after `offset` where a valid frame is followed by another valid
    frame (or the end of the data): two in a row make a false sync in the audio data unlikely."""
    while True:
        offset = data.find(b"\xff", offset)
        if offset < 0 or offset + 4 > len(data):
            return None
        frame = parse_header(data[offset : offset + 4])
        if frame is not None:
            after = offset + frame.length
            if after + 4 > len(data) or parse_header(data[after : after + 4]) is not None:
                return offset, frame
        offset += 1


def _first_frame(data: bytes) -> tuple[int, Frame, bool] | None:
    """Offset and header of the first frame after any ID3v2 tag, and whether it holds a length
    header; None without a frame."""
    found = _next_frame(data, audio_start(data))
    if found is None:
        return None
    offset, frame = found
    has_length_header = any(tag in data[offset : offset + frame.length] for tag in _LENGTH_HEADERS)
    return offset, frame, has_length_header


def scan(path: str | os.PathLike) -> Layout | None:
    """Counts the samples of an MP3 file from its frame headers; None if it holds no frames."""
    data = Path(path).read_bytes()
    first_frame = _first_frame(data)
    if first_frame is None:
        return None
    offset, first, has_length_header = first_frame
    found, samples, cut, follows = (offset, first), 0, None, True
    while found is not None:
        offset, frame = found
        end = offset + frame.length
        if end > len(data):
            # the decoder drops a partial frame; right after a whole one, the file was cut in it
            # (after junk, it is more likely a false sync in a trailing tag)
            cut = (frame.length, len(data) - offset) if follows else None
            break
        samples += frame.samples
        header = parse_header(data[end : end + 4])
        # frames follow one another; after junk (a damaged frame, a tag) look for the next one
        follows = header is not None
        found = (end, header) if follows else _next_frame(data, end)
    if has_length_header:
        samples -= first.samples  # the header frame decodes to silence the decoder drops
    return Layout(samples, first.sample_rate, has_length_header, cut)


def headerless(path: str | os.PathLike) -> Layout | None:
    """`scan` of a file without a length header, whose length libsndfile only estimates; None for
    a file with one (which libsndfile reads) or without frames, without reading all of it."""
    with Path(path).open("rb") as file:
        head = file.read(64 * 1024)
    if audio_start(head) + 4 > len(head):  # a large ID3v2 tag (cover art): read the file
        head = Path(path).read_bytes()
    first_frame = _first_frame(head)
    if first_frame is None or first_frame[2]:
        return None
    return scan(path)


class full_stream:  # noqa: N801  (a file-like object, used like `open`)
    """A read-only file object for soundfile that claims a larger size than the file has.

    libsndfile sizes an MP3 without a length header from the file size, and stops decoding at
    that estimate; with a size several times too large it decodes every frame and stops at the
    real end of the data. Reads near the claimed end return zeros (libsndfile looks for tags
    there: zeros are none)."""

    INFLATION = 16
    TAIL = 4096

    def __init__(self, path: str | os.PathLike):
        self._file = Path(path).open("rb")
        self._size = self._file.seek(0, os.SEEK_END)
        self._claimed = max(self._size * self.INFLATION, self._size + 2 * self.TAIL)
        self._position = 0

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._position, os.SEEK_END: self._claimed}[whence]
        self._position = base + offset
        return self._position

    def tell(self) -> int:
        return self._position

    def read(self, size: int = -1) -> bytes:
        if self._position >= self._claimed - self.TAIL:
            size = self._claimed - self._position if size < 0 else size
            size = max(0, min(size, self._claimed - self._position))
            self._position += size
            return b"\0" * size
        if self._position >= self._size:
            return b""
        self._file.seek(self._position)
        data = self._file.read(size if size >= 0 else self._size - self._position)
        self._position += len(data)
        return data

    def close(self) -> None:
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
