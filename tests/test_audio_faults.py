"""Faults of real audio files: cut-off Ogg and FLAC files, formats we do or do not decode in
folder scans, and files that are not audio at all, each reported with its own reason."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import soundfile
from helpers import tiny_config

from musicnext_tf.audio import (
    AUDIO_EXTENSIONS,
    UNSUPPORTED_EXTENSIONS,
    AudioError,
    _ogg_cut,
    decode_clip,
    load_clip,
)
from musicnext_tf.datasets import folder
from musicnext_tf.datasets.base import DatasetError
from musicnext_tf.predict import audio_files

RATE = 44100


def song(seconds: float = 6.0, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    noise = 0.05 * np.random.default_rng(0).standard_normal(t.size)
    return (0.3 * np.sin(2 * np.pi * 440 * t) + noise).astype(np.float32)


def decode_error(path, rule: str = "full", clip_seconds: float = 30.0) -> AudioError:
    with pytest.raises(AudioError) as error:
        decode_clip(path, 22050, rule, clip_seconds=clip_seconds, min_seconds=1.0)
    return error.value


@pytest.mark.parametrize("subtype,rate", [("VORBIS", RATE), ("OPUS", 48000)])
def test_cut_ogg_files_are_truncated(tmp_path, subtype, rate):
    whole = tmp_path / "whole.ogg"
    soundfile.write(str(whole), song(rate=rate), rate, format="OGG", subtype=subtype)
    data = whole.read_bytes()
    for rule in ("head", "full"):
        assert decode_clip(whole, 22050, rule, min_seconds=1.0).source.frames == 6 * rate
    cut = tmp_path / "cut.ogg"
    cut.write_bytes(data[: len(data) * 6 // 10])
    assert soundfile.info(str(cut)).frames < 6 * rate  # libsndfile alone: a shorter song
    for rule in ("head", "full"):
        error = decode_error(cut, rule, clip_seconds=1.0)
        assert error.reason == "truncated"
        assert error.detail.startswith("its last Ogg page needs ")
        needed, held = (int(word) for word in error.detail.split() if word.isdigit())
        assert 0 < held < needed
    # cut where a page ends: the stream lacks its end-of-stream page
    boundary = tmp_path / "boundary.ogg"
    boundary.write_bytes(data[: data.rfind(b"OggS")])
    error = decode_error(boundary)
    assert error.reason == "truncated"
    assert error.detail == (
        f"the Ogg stream has no end-of-stream page: it stops after {boundary.stat().st_size} bytes"
    )


def ogg_page(body: bytes, header_type: int = 0, sequence: int = 0) -> bytes:
    """An Ogg page (without a valid checksum, which `_ogg_cut` does not read)."""
    lacing = [255] * (len(body) // 255) + [len(body) % 255]
    header = b"OggS\0" + struct.pack("<BqIII", header_type, 0, 1, sequence, 0)
    return header + bytes([len(lacing)]) + bytes(lacing) + body


def test_ogg_capture_pattern_inside_a_packet_is_not_a_page(tmp_path):
    # a packet that holds "OggS" and what looks like a page header promising 200 more bytes
    fake = b"OggS\0\0" + bytes(20) + b"\x01\xc8"
    first, last = ogg_page(b"x" * 3000, 2), ogg_page(b"y" * 500 + fake + b"z" * 100, 4, 1)
    path = tmp_path / "stream.ogg"
    path.write_bytes(first + last)
    assert _ogg_cut(path) is None
    path.write_bytes(first + last[:-50])
    assert (
        _ogg_cut(path)
        == f"its last Ogg page needs {len(last)} bytes, the file holds {len(last) - 50}"
    )
    path.write_bytes(first[:100])  # cut in the first page
    assert _ogg_cut(path) == f"its last Ogg page needs {len(first)} bytes, the file holds 100"
    path.write_bytes(first[:20])  # cut in its header
    assert _ogg_cut(path) == "its last Ogg page needs 27 bytes, the file holds 20"
    path.write_bytes(first + last + b"TAG" + bytes(125))  # a tag after the stream: cannot tell
    assert _ogg_cut(path) is None


def test_cut_flac_is_truncated_for_every_rule(tmp_path):
    whole = tmp_path / "whole.flac"
    soundfile.write(str(whole), song(10.0), RATE)
    data = whole.read_bytes()
    for rule in ("head", "paper", "full"):
        decode_clip(whole, 22050, rule, clip_seconds=3.0, min_seconds=1.0)
    cut = tmp_path / "cut.flac"
    cut.write_bytes(data[: len(data) * 6 // 10])
    for rule in ("head", "paper", "full"):
        error = decode_error(cut, rule, clip_seconds=3.0)
        assert error.reason == "truncated", rule
        assert error.detail.startswith("STREAMINFO declares 441000 frames (10.00 s), the data ")
        assert 5.0 < float(error.detail.split("(")[-1].split()[0]) < 6.5  # where it ends
    # damage inside a complete file is no cut
    damaged = bytearray(data)
    damaged[len(data) // 2 : len(data) // 2 + 200] = bytes(200)
    (tmp_path / "damaged.flac").write_bytes(damaged)
    assert decode_error(tmp_path / "damaged.flac").reason == "undecodable"


@pytest.mark.parametrize(
    "extension,format,subtype",
    [
        (".opus", "OGG", "OPUS"),
        (".oga", "OGG", "VORBIS"),
        (".aifc", "AIFF", "PCM_16"),
        (".caf", "CAF", "PCM_16"),
        (".w64", "W64", "PCM_16"),
        (".rf64", "RF64", "PCM_16"),
        (".wave", "WAV", "PCM_16"),
    ],
)
def test_every_listed_extension_decodes(tmp_path, extension, format, subtype):
    assert extension in AUDIO_EXTENSIONS
    path = tmp_path / f"song{extension}"
    soundfile.write(str(path), song(3.0, 48000), 48000, format=format, subtype=subtype)
    assert len(load_clip(path, 22050, "full", min_seconds=1.0)) == 3 * 22050


def m4a_bytes() -> bytes:
    return struct.pack(">I", 24) + b"ftypM4A \0\0\0\0M4A isom" + bytes(200)


@pytest.fixture
def genre_folders(tmp_path):
    """Two genres in formats we decode, beside audio we cannot decode and files that are no audio."""
    root = tmp_path / "music"
    for genre, extension, format, subtype in (
        ("jazz", ".opus", "OGG", "OPUS"),
        ("rock", ".caf", "CAF", "PCM_16"),
    ):
        (root / genre / "live").mkdir(parents=True)
        for n in range(3):
            path = root / genre / ("live" if n == 2 else "") / f"{n}{extension}"
            soundfile.write(str(path), song(2.0, 48000), 48000, format=format, subtype=subtype)
    (root / "jazz" / "bought.m4a").write_bytes(m4a_bytes())
    (root / "rock" / "live" / "old.WMA").write_bytes(b"\x30\x26\xb2\x75" + bytes(100))
    for name in ("notes.txt", "cover.jpg", "album.cue", "list.m3u", "rip.nfo", "rip.log", "a.pdf"):
        (root / "rock" / name).write_bytes(b"not audio")
    return root


def test_folder_dataset_scans_every_format_and_reports_undecodable_ones(genre_folders):
    index = folder.load_index(tiny_config(genre_folders))
    assert index.genres == ("jazz", "rock")
    assert sorted(track.track_id for track in index.tracks) == [
        "jazz/0.opus",
        "jazz/1.opus",
        "jazz/live/2.opus",
        "rock/0.caf",
        "rock/1.caf",
        "rock/live/2.caf",
    ]
    problems = {problem.track_id: problem for problem in index.problems}
    assert sorted(problems) == ["jazz/bought.m4a", "rock/live/old.WMA"]
    for track_id, problem in problems.items():
        assert problem.reason == "unsupported_format"
        assert problem.path == str(genre_folders / track_id)
        extension = track_id.rsplit(".", 1)[1].lower()
        assert problem.detail.startswith(f".{extension} files cannot be decoded here; convert")
        assert ".flac, .ogg or .wav" in problem.detail


def test_folder_of_undecodable_audio_only_says_so(tmp_path):
    for genre in ("jazz", "rock"):
        (tmp_path / genre).mkdir()
        (tmp_path / genre / "song.m4a").write_bytes(m4a_bytes())
    with pytest.raises(DatasetError, match=r"2 file\(s\) in formats we cannot decode.*\.m4a"):
        folder.load_index(tiny_config(tmp_path))


def test_predict_lists_every_format_and_reports_undecodable_ones(genre_folders):
    names = [path.relative_to(genre_folders).as_posix() for path in audio_files([genre_folders])]
    assert names == [
        "jazz/0.opus",
        "jazz/1.opus",
        "jazz/bought.m4a",
        "jazz/live/2.opus",
        "rock/0.caf",
        "rock/1.caf",
        "rock/live/2.caf",
        "rock/live/old.WMA",
    ]
    error = decode_error(genre_folders / "jazz" / "bought.m4a")
    assert error.reason == "unsupported_format"
    assert error.detail.startswith("it holds MP4/M4A audio; convert it to .flac, .ogg or .wav")
    error = decode_error(genre_folders / "rock" / "live" / "old.WMA")
    assert (error.reason, error.detail.split(";")[0]) == (
        "unsupported_format",
        "it holds WMA audio",
    )
    assert {".m4a", ".aac", ".wma", ".ape", ".mpc"} <= set(UNSUPPORTED_EXTENSIONS)


def test_files_that_are_not_audio_say_what_they_hold(tmp_path):
    cases = {
        "text.mp3": (b"this is not audio, it is a text file", "undecodable"),
        "page.wav": (b"<!DOCTYPE html><html><head>", "undecodable"),
        "blob.flac": (bytes([0x3C, 0x00, 0x8F, 0x01]) + bytes(60), "undecodable"),
        "frames.mp3": (b"\xff\xfb\x90\x64" + bytes(2000), "undecodable"),
        "song.m4a": (b"\x00\x01\x02\x03" + bytes(60), "unsupported_format"),
    }
    for name, (content, _) in cases.items():
        (tmp_path / name).write_bytes(content)
    details = {}
    for name, (_, reason) in cases.items():
        error = decode_error(tmp_path / name)
        assert error.reason == reason, name
        assert "does not exist" not in error.detail
        details[name] = error.detail
    assert details["text.mp3"] == "not an audio file: it starts with text ('this is not audio, i')"
    assert details["page.wav"] == "not an audio file: it starts with text ('<!DOCTYPE html><html')"
    assert details["blob.flac"] == (
        "not an audio file: unknown content (first bytes 3c 00 8f 01 00 00 00 00)"
    )
    assert details["frames.mp3"].startswith("libsndfile cannot decode this MP3 file: ")
    assert details["song.m4a"].startswith(".m4a files cannot be decoded here; convert")
