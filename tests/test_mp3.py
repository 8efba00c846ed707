"""MP3 files whose length libsndfile misjudges (variable bitrate, no Xing/Info/VBRI header) are
measured from their frame headers and decoded whole, so the clip rule keeps the right seconds."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile

from musicnext_tf import mp3
from musicnext_tf.audio import decode_clip, probe

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


def test_files_libsndfile_measures_right_keep_the_fast_path(mp3_files):
    original, stripped = mp3_files
    # with a length header libsndfile is right: no scan, seeking decode
    assert mp3.misjudged(original, soundfile.info(str(original)).frames, RATE) is None
    assert mp3.scan(original).has_length_header
    layout = mp3.scan(stripped)
    assert layout.sample_rate == RATE and not layout.has_length_header
    assert abs(layout.samples - SECONDS * RATE) <= 2 * 1152
    # an estimate within a second (a constant bitrate) is trusted
    assert mp3.misjudged(stripped, layout.samples - RATE // 2, RATE) is None
    assert mp3.misjudged(stripped, layout.samples - 2 * RATE, RATE) == layout
