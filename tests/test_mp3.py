"""MP3 files whose length libsndfile misjudges (no Xing/Info/VBRI header) are measured from their
frame headers and decoded to their real end, so the clip rule keeps the right seconds and a
complete file is never taken for a cut-off one; a file cut inside a frame is."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import soundfile

from musicnext_tf import mp3
from musicnext_tf.audio import AudioError, decode_clip, probe

RATE = 44100
SECONDS = 70
TONES = (220.0, 330.0, 440.0, 550.0, 660.0, 770.0, 880.0)  # one per 10 s, so seconds show


def tone_steps() -> np.ndarray:
    t = np.arange(SECONDS * RATE) / RATE
    frequency = np.asarray(TONES)[(t // 10).astype(int)]
    noise = 0.02 * np.random.default_rng(0).standard_normal(t.size)
    return (0.4 * np.sin(2 * np.pi * frequency * t) + noise).astype(np.float32)


def without_length_header(data: bytes) -> bytes:
    """The MP3 stream with its first frame (the encoder's Xing/Info header frame) removed."""
    offset = data.find(b"\xff")
    while mp3.parse_header(data[offset : offset + 4]) is None:
        offset = data.find(b"\xff", offset + 1)
    frame = mp3.parse_header(data[offset : offset + 4])
    assert any(tag in data[offset : offset + frame.length] for tag in (b"Xing", b"Info"))
    return data[:offset] + data[offset + frame.length :]


def id3v2_tag(payload_size: int = 300) -> bytes:
    size = payload_size
    syncsafe = bytes([(size >> 21) & 127, (size >> 14) & 127, (size >> 7) & 127, size & 127])
    return b"ID3\x03\x00\x00" + syncsafe + b"\xff\xfb" + b"\x00" * (payload_size - 2)


@pytest.fixture(scope="module")
def mp3_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mp3")
    path = folder / "variable.mp3"
    soundfile.write(str(path), tone_steps(), RATE, format="MP3", bitrate_mode="VARIABLE")
    stripped = folder / "variable-no-header.mp3"  # as old encoders wrote them, with an ID3v2 tag
    stripped.write_bytes(id3v2_tag() + without_length_header(path.read_bytes()))
    return path, stripped


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return float(np.argmax(spectrum) * rate / samples.size)


def test_header_parsing_matches_the_standard():
    frame = mp3.parse_header(bytes([0xFF, 0xFB, 0x90, 0x64]))  # MPEG-1 layer III 128k 44.1k
    assert frame == mp3.Frame(length=417, samples=1152, sample_rate=44100)
    padded = mp3.parse_header(bytes([0xFF, 0xFB, 0x92, 0x64]))
    assert padded.length == 418
    mpeg2 = mp3.parse_header(bytes([0xFF, 0xF3, 0x80, 0xC4]))  # MPEG-2 layer III 64k 22.05k
    assert mpeg2 == mp3.Frame(length=208, samples=576, sample_rate=22050)
    for invalid in ([0xFF, 0xFB, 0xF0, 0x64], [0xFF, 0xFB, 0x9C, 0x64], [0xFF, 0x0B, 0, 0], [0]):
        assert mp3.parse_header(bytes(invalid)) is None


def test_variable_bitrate_without_header_is_measured_and_decoded_whole(mp3_files):
    original, stripped = mp3_files
    assert soundfile.info(str(original)).duration == pytest.approx(SECONDS, abs=0.05)
    # libsndfile 1.2 alone reads the stripped file as about 19 s
    assert probe(stripped).duration == pytest.approx(SECONDS, abs=0.1)
    clip = decode_clip(stripped, sample_rate=22050, rule="paper")  # 70 s: seconds 30-60
    assert (clip.start, clip.stop) == (30 * RATE, 60 * RATE)
    assert clip.samples.shape == (30 * 22050,)
    for k, tone in enumerate(TONES[3:6]):  # the 10 s steps of seconds 30-60
        step = clip.samples[k * 220500 + 22050 : (k + 1) * 220500 - 22050]
        assert dominant_frequency(step, 22050) == pytest.approx(tone, abs=1.0)
    reference = decode_clip(original, sample_rate=22050, rule="paper").samples
    delay = np.argmax(np.correlate(clip.samples[:4000], reference[:2000], "valid"))
    assert delay < 3000  # the header frame's missing encoder-delay trim: a few ms


def test_files_with_a_length_header_keep_the_fast_path(mp3_files):
    original, stripped = mp3_files
    # with a length header libsndfile is right: no scan, seeking decode
    assert mp3.headerless(original) is None
    assert mp3.scan(original).has_length_header
    layout = mp3.headerless(stripped)
    assert layout == mp3.scan(stripped)
    assert layout.sample_rate == RATE and not layout.has_length_header and layout.cut is None
    assert abs(layout.samples - SECONDS * RATE) <= 2 * 1152


def encoded_without_length_header(path, mode: str, seconds: float) -> bytes:
    """`seconds` of the tone steps as an MP3 stream without its Info/Xing header frame."""
    soundfile.write(
        str(path),
        tone_steps()[: int(seconds * RATE)],
        RATE,
        format="MP3",
        bitrate_mode=mode,
        compression_level=0.5,
    )
    return without_length_header(path.read_bytes())


def apev2_tag(payload_size: int) -> bytes:
    """An APEv2 tag (as mp3gain or foobar2000 append) holding `payload_size` bytes of lyrics."""
    lyrics = (b"la la la, " * (payload_size // 10 + 1))[:payload_size]
    item = struct.pack("<II", len(lyrics), 0) + b"Lyrics\0" + lyrics
    header = b"APETAGEX" + struct.pack("<IIII", 2000, len(item) + 32, 1, 0xA0000000) + bytes(8)
    return header + item + header[:20] + struct.pack("<I", 0x80000000) + bytes(8)


@pytest.mark.parametrize(
    "mode,tag", [("CONSTANT", "apev2"), ("CONSTANT", "id3v2"), ("VARIABLE", "id3v2")]
)
def test_header_less_file_that_libsndfile_overestimates_is_not_truncated(tmp_path, mode, tag):
    # libsndfile counts a tag's bytes (cover art in an ID3v2 tag, lyrics in a trailing APEv2 tag)
    # as frames: its length overshoots the real one by 0.1-1 s, which looked like a cut-off file
    stream = encoded_without_length_header(tmp_path / "encoded.mp3", mode, 8.0)
    bare = tmp_path / "bare.mp3"
    bare.write_bytes(stream)
    real, estimate = mp3.scan(bare).samples, soundfile.info(str(bare)).frames
    first = mp3.parse_header(stream[:4])
    # each of the tag's bytes adds 1152 samples per first-frame length to the estimate
    size = max(10, int((0.5 * RATE - (estimate - real)) * first.length / 1152))
    path = tmp_path / "tagged.mp3"
    path.write_bytes(id3v2_tag(size) + stream if tag == "id3v2" else stream + apev2_tag(size))
    assert 0.1 * RATE <= soundfile.info(str(path)).frames - real <= RATE  # the fault's setting
    assert probe(path).frames == real
    head = decode_clip(path, 22050, "head", clip_seconds=5.0, min_seconds=1.0)
    assert (head.start, head.stop) == (0, 5 * RATE)
    full = decode_clip(path, 22050, "full", min_seconds=1.0)
    assert (full.start, full.stop) == (0, real) and len(full.samples) == real // 2
    assert dominant_frequency(full.samples[-22050:], 22050) == pytest.approx(TONES[0], abs=1.0)


def test_header_less_file_cut_inside_a_frame_is_truncated(tmp_path):
    stream = encoded_without_length_header(tmp_path / "encoded.mp3", "VARIABLE", 6.0)
    whole = tmp_path / "whole.mp3"
    whole.write_bytes(stream)
    layout = mp3.scan(whole)
    cut, cut_at = tmp_path / "cut.mp3", len(stream) * 2 // 3
    cut.write_bytes(stream[:cut_at])
    cut_layout = mp3.scan(cut)
    assert cut_layout.cut is not None and cut_layout.samples < layout.samples
    needed, held = cut_layout.cut
    assert 0 < held < needed
    for rule in ("head", "full"):
        with pytest.raises(AudioError) as error:
            decode_clip(cut, 22050, rule, clip_seconds=2.0, min_seconds=1.0)
        assert error.value.reason == "truncated"
        assert error.value.detail == (
            f"its last MPEG frame needs {needed} bytes, the file holds {held} of them"
        )
    # cut where a frame ends, it cannot be told from a shorter song (documented in `mp3`)
    boundary = tmp_path / "boundary.mp3"
    boundary.write_bytes(stream[: cut_at - held])
    assert mp3.scan(boundary).cut is None
    assert probe(boundary).frames == cut_layout.samples
