"""Feature preparation on real layouts with every kind of bad input, in parallel, and after kill -9."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
from dataset_fixtures import write_tone
from helpers import tiny_config, write_timbre_dataset
from process_helpers import process_group, wait_until_group_ends

from musicnext_tf import datasets
from musicnext_tf.cli import main
from musicnext_tf.config import ConfigError, resolve
from musicnext_tf.datasets.base import Track
from musicnext_tf.files import write_json
from musicnext_tf.prepare import (
    CRASH_RETRIES,
    Job,
    PrepareError,
    _settle_crash,
    _worker_failure,
    feature_cache_dir,
    prepare,
)
from musicnext_tf.workers import WorkerError

TINY_FEATURES = {"n_fft": 512, "n_mels": 32, "segment_frames": 64, "segments_per_clip": 4}

# ISMIR2004-layout fixture: (class, path under audio/<set>/, how to write it, expected reason or
# None when the file must be kept). The paper's clip rule applies: < 30 s is too short.
GOOD = [
    ("classical", "classical/a/b/1-mono_22k.wav", dict(seconds=31.0)),
    ("world", "world/a/b/2-stereo_44k.wav", dict(seconds=45.0, rate=44100, channels=2)),
    ("jazz_blues", "jazz/a/b/3-six_channels.wav", dict(seconds=30.0, rate=48000, channels=6)),
    ("metal_punk", "metal/a/b/4-eight_khz.au", dict(seconds=70.0, rate=8000)),
    ("rock_pop", "rock/a/b/5-ninety_six_khz.flac", dict(seconds=32.0, rate=96000)),
    ("electronic", "electronic/a/b/6-eight_bit.wav", dict(seconds=35.0, subtype="PCM_U8")),
    ("world", "world/ä/日本/7-été_ñ.ogg", dict(seconds=40.0)),
    ("rock_pop", "pop/a/b/8-id3_tagged.mp3", dict(seconds=33.0, rate=44100, channels=2)),
]
BAD = {
    "classical/a/b/9-corrupt.mp3": "undecodable",
    "classical/a/b/10-not_audio.wav": "undecodable",
    "classical/a/b/11-empty.mp3": "empty",
    "classical/a/b/12-truncated.wav": "truncated",
    "classical/a/b/13-short.wav": "too_short",
    "classical/a/b/14-silent.wav": "silent",
    "classical/a/b/15-listed_but_missing.mp3": "missing",
    "classical/a/b/16-unknown_label.wav": "unknown_label",
    "../../../outside.wav": "outside_data_dir",
}


def _id3v2_tag(title: str) -> bytes:
    """An ID3v2.3 tag with one title frame, as taggers put before the first MP3 frame."""
    text = b"\x00" + title.encode("latin-1")
    frame = b"TIT2" + len(text).to_bytes(4, "big") + b"\x00\x00" + text
    size = len(frame) + 64  # with padding; the size is 4 x 7-bit "synchsafe" bytes
    synchsafe = bytes((size >> shift) & 0x7F for shift in (21, 14, 7, 0))
    return b"ID3\x03\x00\x00" + synchsafe + frame + b"\x00" * 64


def _write_bad(path: Path, reason: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if reason == "undecodable" and path.suffix == ".mp3":
        path.write_bytes(b"\xff\xfb\x90\x00" + bytes(range(256)) * 40)
    elif reason == "undecodable":
        path.write_text("this is a text file, not audio\n")
    elif reason == "empty":
        path.touch()
    elif reason == "truncated":
        write_tone(path, 40.0)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif reason == "too_short":
        write_tone(path, 29.9)
    elif reason in ("silent", "unknown_label"):
        soundfile.write(str(path), np.zeros(22050 * 31, np.float32), 22050)


def write_bad_ismir2004(parent: Path) -> Path:
    """An ISMIR2004 copy whose training set holds every kind of good-but-odd and bad input."""
    root = parent / "ismir04_genre"
    audio = root / "audio" / "training"
    rows = []
    for label, listed, spec in GOOD:
        write_tone(audio / listed, **spec)
        rows.append((label, listed))
    mp3 = audio / GOOD[-1][1]
    mp3.write_bytes(_id3v2_tag("Ünïcode title") + mp3.read_bytes())
    for listed, reason in BAD.items():
        _write_bad(audio / listed, reason)
        rows.append(("polka" if reason == "unknown_label" else "classical", listed))
    evaluation = [("classical", "classical/x/y/1-test.wav"), ("world", "world/x/y/2-test.wav")]
    for _, listed in evaluation:
        write_tone(root / "audio" / "evaluation" / listed, 30.0)
    for set_name, listing in (("training", rows), ("evaluation", evaluation)):
        tracklist = root / "metadata" / set_name / "tracklist.csv"
        tracklist.parent.mkdir(parents=True, exist_ok=True)
        lines = [
            f'"{label}","artist","album","title","{n}","{listed}"'
            for n, (label, listed) in enumerate(listing, 1)
        ]
        tracklist.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def bad_root(tmp_path_factory):
    return write_bad_ismir2004(tmp_path_factory.mktemp("bad"))


def bad_config(root: Path, cache: Path):
    return resolve(
        "ismir2004",
        None,
        {"data": {"data_dir": str(root), "cache_dir": str(cache)}, "features": TINY_FEATURES},
    )


def test_every_bad_file_is_reported_with_its_reason_and_every_good_one_kept(
    bad_root, tmp_path, caplog
):
    config = bad_config(bad_root, tmp_path)
    prepared = prepare(datasets.load_index(config), config, progress=False)
    report = json.loads((prepared.cache_dir / "report.json").read_text(encoding="utf-8"))
    reasons = {Path(item["path"]).name: item["reason"] for item in report["skipped"]}
    assert reasons == {Path(listed).name: reason for listed, reason in BAD.items()}
    kept = {Path(track_id).name for track_id in prepared.split("train").track_ids}
    assert kept == {Path(listed).name for _, listed, _ in GOOD}
    assert report["counts"]["train"] == {"kept": len(GOOD), "skipped": len(BAD)}
    assert report["counts"]["test"] == {"kept": 2, "skipped": 0}
    assert report["skipped_by_reason"]["undecodable"] == 2
    assert report["sources"]["sample_rates"] == {
        "8000": 1,
        "22050": 5,
        "44100": 2,
        "48000": 1,
        "96000": 1,
    }
    assert report["sources"]["channels"] == {"1": 7, "2": 2, "6": 1}
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == len(BAD)
    for listed, reason in BAD.items():
        (line,) = [w for w in warnings if Path(listed).name in w]
        assert f": {reason}" in line
    # every kept clip gives the configured segments of finite features
    for path in prepared.split("train").files:
        segments = np.load(path)
        assert segments.shape == (4, 64, 32) and np.isfinite(segments).all()
    # a rerun sums up what it skipped as before in one line instead of repeating every file
    caplog.clear()
    prepare(datasets.load_index(config), config, progress=False)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert f"skipped {len(BAD)} recording(s) as in the previous run" in warnings[0]
    assert "undecodable: 2" in warnings[0] and "report.json" in warnings[0]


def test_paper_rule_windows_are_recorded_per_file(bad_root, tmp_path):
    config = bad_config(bad_root, tmp_path)
    prepared = prepare(datasets.load_index(config), config, progress=False)
    entries = prepared.cache_dir / "entries"
    records = {
        Path(record["track_id"]).name: record
        for record in (json.loads(p.read_text()) for p in entries.glob("*.json"))
    }
    assert records["4-eight_khz.au"]["window"] == [30.0, 60.0]  # 70 s: seconds 30-60
    assert records["2-stereo_44k.wav"]["window"] == [15.0, 45.0]  # 45 s: the last 30 s
    assert records["3-six_channels.wav"]["window"] == [0.0, 30.0]  # exactly 30 s


def test_strict_turns_skips_into_an_error_and_the_cli_says_where_the_report_is(
    bad_root, tmp_path, capsys, monkeypatch
):
    config = bad_config(bad_root, tmp_path)
    with pytest.raises(PrepareError, match=r"9 recording\(s\) skipped \(see .*report\.json\)"):
        prepare(datasets.load_index(config), config, progress=False, strict=True)
    toml = tmp_path / "tiny.toml"
    toml.write_text(
        "[features]\n" + "".join(f"{k} = {v}\n" for k, v in TINY_FEATURES.items()),
        encoding="utf-8",
    )
    monkeypatch.setenv("MUSICNEXT_CACHE", str(tmp_path))  # the same cache: nothing recomputed
    argv = ["prepare", "--data", "ismir2004", "--data-dir", str(bad_root), "--config", str(toml)]
    assert main([*argv, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "train: 8 kept, 9 skipped" in out and "report: " in out
    assert main([*argv, "--strict", "--quiet"]) == 2
    assert "rerun without --strict" in capsys.readouterr().err


def test_cache_is_keyed_by_the_feature_config_and_reused(tmp_path):
    data = write_timbre_dataset(tmp_path / "data", clips_per_class=2)
    config = tiny_config(data, data={"cache_dir": str(tmp_path / "cache")})
    first = prepare(datasets.load_index(config), config, progress=False)
    stamps = {p: p.stat().st_mtime_ns for p in (first.cache_dir / "entries").glob("*.npy")}
    again = prepare(datasets.load_index(config), config, progress=False)
    assert again.cache_dir == first.cache_dir
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    changed = tiny_config(
        data, data={"cache_dir": str(tmp_path / "cache")}, features={"n_mels": 24}
    )
    assert feature_cache_dir(datasets.load_index(changed), changed) != first.cache_dir
    precise = tiny_config(
        data, data={"cache_dir": str(tmp_path / "cache")}, features={"fft_dtype": "float64"}
    )
    assert config.features.fft_dtype == "float32"  # the default: librosa's precision
    assert feature_cache_dir(datasets.load_index(precise), precise) != first.cache_dir
    other = prepare(datasets.load_index(changed), changed, progress=False)
    assert np.load(other.split("train").files[0]).shape[-1] == 24


def test_workers_compute_the_same_entries_as_one_process(tmp_path):
    data = write_timbre_dataset(tmp_path / "data", clips_per_class=3)
    caches = {}
    for workers in (1, 2):
        cache = tmp_path / f"cache{workers}"
        config = tiny_config(data, data={"cache_dir": str(cache)})
        caches[workers] = prepare(
            datasets.load_index(config), config, progress=False, workers=workers
        )
    one, two = caches[1].split("train"), caches[2].split("train")
    assert one.track_ids == two.track_ids
    for a, b in zip(one.files, two.files):
        np.testing.assert_array_equal(np.load(a), np.load(b))


def test_a_recording_whose_worker_died_is_tried_again_then_skipped(tmp_path):
    """What prepare answers the worker pool when a worker died on a recording: the entry if the
    worker wrote it before dying; else None (try again in a new worker); after the retries a
    "decoder_crashed" skip, written as the entry's record so that a rerun does not retry it."""
    job = Job(Track("jazz/a.wav", tmp_path / "a.wav", "jazz"), "crashes")
    for attempt in range(1, CRASH_RETRIES + 1):
        assert _settle_crash(tmp_path, job, -9, attempt) is None
    record = _settle_crash(tmp_path, job, -9, CRASH_RETRIES + 1)
    assert record["status"] == "skipped" and record["reason"] == "decoder_crashed"
    assert record["track_id"] == "jazz/a.wav" and "exit code -9" in record["detail"]
    assert json.loads((tmp_path / "crashes.json").read_text(encoding="utf-8")) == record
    written = Job(Track("jazz/b.wav", tmp_path / "b.wav", "jazz"), "written")
    skipped = {"status": "skipped", "reason": "silent", "detail": "", "track_id": "jazz/b.wav"}
    write_json(tmp_path / "written.json", skipped)
    assert _settle_crash(tmp_path, written, -9, 1) == skipped


def test_a_worker_failure_names_the_file_and_keeps_our_own_errors(tmp_path):
    job = Job(Track("jazz/a.wav", tmp_path / "a.wav", "jazz"), "stem")
    ours = ConfigError("unknown decoder")
    assert _worker_failure(WorkerError(ours, "trace", job)) is ours
    other = _worker_failure(WorkerError(MemoryError("out of memory"), "the worker's trace", job))
    assert isinstance(other, PrepareError)
    assert f"while preparing {tmp_path / 'a.wav'}: out of memory" in str(other)
    assert "the worker's trace" in str(other)
    assert "while starting" in str(_worker_failure(WorkerError(ImportError("no tf"), "", None)))


def test_progress_into_a_file_or_pipe_is_a_plain_line_every_hundred_recordings(
    tmp_path, capsys, caplog
):
    """Under pytest stderr is not a terminal, as in a log file, a pipe or CI: no bar and no
    control characters, one line per hundred recordings (the default) and a final one. Too short
    recordings make a quick fixture: they count like the kept ones."""
    data = write_timbre_dataset(tmp_path / "data", clips_per_class=2, seconds=1.0)
    for n in range(99):
        write_tone(data / "drone" / f"short.{n:02d}.wav", 0.5)
    config = tiny_config(data)
    caplog.set_level(logging.INFO)
    assert not sys.stderr.isatty()
    prepare(datasets.load_index(config), config, progress=True, workers=1)
    lines = [r.getMessage() for r in caplog.records if r.name == "musicnext_tf.progress"]
    assert [line.split(" (")[0] for line in lines] == [
        "prepare folder: 100/105 clips",
        "prepare folder: 105/105 clips",
    ]
    assert " left, skipped " in lines[0] and lines[1].endswith(" taken, skipped 99")
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for text in (capsys.readouterr().err, logged):
        assert not any(code in text for code in ("\r", "\x1b", "\b"))


def test_tfio_decoder_is_optional_and_named_when_missing(tmp_path):
    data = write_timbre_dataset(tmp_path / "data", clips_per_class=2)
    config = tiny_config(data, audio={"decoder": "tfio"})
    if importlib.util.find_spec("tensorflow_io") is None:
        with pytest.raises(ConfigError, match=r"pip install musicnext-tf\[tfio\]"):
            prepare(datasets.load_index(config), config, progress=False)
        return
    try:  # pragma: no cover - only where tensorflow-io is installed
        ours = prepare(datasets.load_index(config), config, progress=False)
    except ConfigError as error:  # installed, but its ops do not load on this TensorFlow
        assert "It needs the TensorFlow it was built for" in str(error)
        assert "decoder = 'soundfile'" in str(error)
        return
    reference = tiny_config(data, data={"cache_dir": str(tmp_path / "sf")})
    theirs = prepare(datasets.load_index(reference), reference, progress=False)
    for a, b in zip(ours.split("train").files, theirs.split("train").files):
        np.testing.assert_allclose(np.load(a), np.load(b), atol=1e-3)


KILL_SCRIPT = """
import sys
from musicnext_tf import datasets
from musicnext_tf.prepare import prepare
sys.path.insert(0, {tests!r})
from helpers import tiny_config

if __name__ == "__main__":
    config = tiny_config({data!r}, data={{"cache_dir": {cache!r}}}, audio={{"clip_seconds": 12.0}})
    prepare(datasets.load_index(config), config, progress=False, workers=2)
"""


def _entries(cache: Path) -> dict[Path, int]:
    """The finished cache entries and their modification times; a write in progress lives in a
    `.tmp-*` file, which is not an entry."""
    return {
        p: p.stat().st_mtime_ns
        for p in cache.glob("features/*/entries/*.json")
        if not p.name.startswith(".")
    }


def test_prepare_killed_half_way_resumes_without_recomputing(tmp_path):
    data = write_timbre_dataset(tmp_path / "data", clips_per_class=30, seconds=12.0)
    cache = tmp_path / "cache"
    script = tmp_path / "run_prepare.py"
    tests = str(Path(__file__).parent)
    script.write_text(KILL_SCRIPT.format(tests=tests, data=str(data), cache=str(cache)))
    with process_group([sys.executable, str(script)]) as process:
        deadline = time.monotonic() + 120
        while len(_entries(cache)) < 12 and process.poll() is None:
            assert time.monotonic() < deadline, "prepare made no progress"
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)  # the parent only, as `kill -9 PID` does
        process.wait(timeout=30)
        finished = _entries(cache)
        assert 12 <= len(finished) < 90, "the kill came too late to test resuming"
        # the workers notice that their parent is gone and exit
        wait_until_group_ends(process, 30, "workers outlived their killed parent")
    config = tiny_config(data, data={"cache_dir": str(cache)}, audio={"clip_seconds": 12.0})
    prepared = prepare(datasets.load_index(config), config, progress=False, workers=1)
    after = _entries(cache)
    assert len(after) == 90
    assert {p: after[p] for p in finished} == finished  # finished entries were not recomputed
    assert not list(prepared.cache_dir.glob("entries/.tmp-*"))
    assert sum(len(prepared.split(s)) for s in prepared.splits) == 90 and not prepared.problems
    # the resumed cache equals one computed in a single uninterrupted run
    fresh = tiny_config(
        data, data={"cache_dir": str(tmp_path / "fresh")}, audio={"clip_seconds": 12.0}
    )
    reference = prepare(datasets.load_index(fresh), fresh, progress=False, workers=1)
    for split in prepared.splits:
        for a, b in zip(prepared.split(split).files, reference.split(split).files):
            np.testing.assert_array_equal(np.load(a), np.load(b))
