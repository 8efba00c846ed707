"""Feature preparation: decode, resample, clip and compute log-mel segments once, into a cache.

The cache folder `<cache>/features/<dataset>-<key>/` is keyed by the dataset, its root and the
full audio and feature config, so a changed setting gives a new cache and never a stale one. It
holds `report.json` (what was kept and skipped, and why) and one entry per recording in `entries/`:
`<stem>.npy`, the segments [n, segment_frames, n_mels] (float32), and `<stem>.json`, the entry's
record, written last: "kept" with what the source file was, or "skipped" with the reason. Both
are written to a temporary name and renamed, so a run killed at any moment leaves only complete
entries (and temporary files that the next run deletes), and the rerun computes only what is
missing. The stem is a digest of the track id and the file's size and modification time, so a
replaced file gets a new entry.

Large jobs run in worker processes (`musicnext_tf.workers`: spawned, one per core by default),
each decoding, resampling and computing the features of one recording at a time and writing its
entry itself, so only jobs and small records travel between processes, and memory does not grow
with the dataset. A recording whose worker dies (a decoder crashing on a damaged file, the
out-of-memory killer) is tried once more in a new worker, then skipped as "decoder_crashed".
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import statistics
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from musicnext_tf.audio import AudioError, decode_clip, get_decoder
from musicnext_tf.config import ConfigError, ExperimentConfig, default_cache_dir
from musicnext_tf.datasets.base import SPLITS, DatasetError, DatasetIndex, Problem, Track
from musicnext_tf.errors import PrepareError
from musicnext_tf.files import exclusive_lock, write_json, write_npy
from musicnext_tf.progress import Progress
from musicnext_tf.workers import (
    WorkerError,
    WorkerPool,
    WorkerStartError,
    available_cores,
    in_worker,
)

CACHE_VERSION = 3  # 3: the "full" rule keeps every segment of the recording
# Fewer recordings than this are prepared in this process: starting a worker (importing
# TensorFlow) takes seconds, more than such a job saves.
PARALLEL_MIN_CLIPS = 48
# A recording whose worker died is tried once more in a new worker, then skipped.
CRASH_RETRIES = 1
_PARTIAL_PREFIX = ".tmp-"  # files.atomic_write's temporary files
_WORKER_NAME = "musicnext-prepare"
log = logging.getLogger(__name__)


@dataclass
class SplitFeatures:
    """The cached clips of one split: one `.npy` file of segments per clip, with its label id."""

    files: list[str]
    labels: np.ndarray
    track_ids: list[str]

    def __len__(self) -> int:
        return len(self.files)


@dataclass
class PreparedDataset:
    """A dataset whose features are cached: per-split clips, the genres and what was skipped."""

    cache_dir: Path
    genres: tuple[str, ...]
    splits: dict[str, SplitFeatures]
    problems: list[Problem]

    def split(self, name: str) -> SplitFeatures:
        return self.splits.get(name) or SplitFeatures([], np.zeros(0, np.int32), [])


@dataclass(frozen=True)
class Job:
    """One recording to prepare, and the stem of its cache entry."""

    track: Track
    stem: str


def cache_key(index: DatasetIndex, config: ExperimentConfig) -> str:
    """Digest of everything that changes the cached features."""
    identity = {
        "version": CACHE_VERSION,
        "dataset": index.name,
        "root": str(index.root),
        "clip_rule": index.clip_rule,
        "audio": asdict(config.audio),
        "features": asdict(config.features),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def feature_cache_dir(index: DatasetIndex, config: ExperimentConfig) -> Path:
    base = Path(config.data.cache_dir or default_cache_dir())
    return base / "features" / f"{index.name}-{cache_key(index, config)}"


def entry_stem(track: Track) -> str:
    """File-name stem of a track's cache entry: a digest of its id and its file's size and
    modification time, safe on every file system. Raises OSError if the file is gone."""
    stat = track.path.stat()
    identity = f"{track.track_id}\0{stat.st_size}\0{stat.st_mtime_ns}"
    return hashlib.sha1(identity.encode("utf-8")).hexdigest()[:20]


class FeatureExtractor:
    """Waveform -> log-mel segments [n, frames, mels] with the graph shared with serving.

    The waveform is centre-padded once and framed in pieces of `SEGMENTS_PER_STEP` segments, as
    the serving graph does, so a whole song costs bounded memory and gives the same frames as one
    centred STFT over it. `max_segments` keeps only the first segments (None: all of them).
    """

    def __init__(self, config: ExperimentConfig, max_segments: int | None = None):
        import tensorflow as tf

        from musicnext_tf.features import LogMelSpectrogram
        from musicnext_tf.inference import SEGMENTS_PER_STEP, whole_segments

        features = self._features = config.features
        layer = LogMelSpectrogram.from_feature_config(
            features, config.audio.sample_rate, center=False
        )
        self._whole_segments = whole_segments
        self._step = SEGMENTS_PER_STEP
        self._max_segments = max_segments

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def extract(piece):
            log_mel = layer(piece[None, :])[0]
            return tf.reshape(log_mel, [-1, features.segment_frames, features.n_mels])

        self._extract = extract

    def __call__(self, waveform: np.ndarray) -> np.ndarray:
        features = self._features
        frames, hop = features.segment_frames, features.hop_length
        count = self._whole_segments(len(waveform), features)
        if self._max_segments is not None:
            count = min(count, self._max_segments)
        half = features.n_fft // 2
        padded = np.pad(np.asarray(waveform, np.float32), (half, half))
        pieces = []
        for first in range(0, count, self._step):
            taken = min(self._step, count - first)
            start = first * frames * hop
            piece = padded[start : start + (taken * frames - 1) * hop + features.n_fft]
            pieces.append(self._extract(piece).numpy())
        if not pieces:
            return np.zeros((0, frames, features.n_mels), np.float32)
        return np.concatenate(pieces)


def segments_kept(config: ExperimentConfig, rule: str) -> int | None:
    """How many segments a clip keeps: all of them under the "full" rule, else the first
    `segments_per_clip`."""
    return None if rule == "full" else config.features.segments_per_clip


def compute_entry(
    track: Track, config: ExperimentConfig, rule: str, extractor: FeatureExtractor
) -> tuple[np.ndarray, dict]:
    """Segments [n, segment_frames, n_mels] of one recording, and what its file was.

    Raises:
        AudioError when the recording cannot be used.
    """
    audio = config.audio
    clip = decode_clip(
        track.path, audio.sample_rate, rule, audio.clip_seconds, audio.min_seconds, audio.decoder
    )
    segments = extractor(clip.samples)
    if len(segments) == 0:
        seconds = len(clip.samples) / audio.sample_rate
        raise AudioError(track.path, "too_short", f"{seconds:.2f} s is less than one segment")
    rate = clip.source.sample_rate
    source = {
        "sample_rate": rate,
        "channels": clip.source.channels,
        "seconds": round(clip.source.duration, 3),
        "window": [round(clip.start / rate, 3), round(clip.stop / rate, 3)],
    }
    return segments, source


def store_entry(
    job: Job, entries: Path, config: ExperimentConfig, rule: str, extractor: FeatureExtractor
) -> dict:
    """Computes one entry and writes it, the record last; returns the record."""
    try:
        segments, source = compute_entry(job.track, config, rule, extractor)
    except AudioError as error:
        record = {"status": "skipped", "reason": error.reason, "detail": error.detail}
    else:
        write_npy(entries / f"{job.stem}.npy", segments.astype("<f4"))
        record = {"status": "kept", "segments": len(segments), **source}
    record["track_id"] = job.track.track_id
    write_json(entries / f"{job.stem}.json", record)
    return record


def prepare(
    index: DatasetIndex,
    config: ExperimentConfig,
    progress: bool = True,
    strict: bool = False,
    workers: int | None = None,
) -> PreparedDataset:
    """Makes sure every track of the index has a cache entry; returns the cached splits.

    Finished entries are reused; missing ones are computed. Unusable recordings are skipped with
    one warning each naming the file and the reason, and listed in `report.json` in the cache
    folder.

    Args:
        progress: report progress while computing: a bar with the time left on a terminal,
            else a log line every hundred recordings (`musicnext_tf.progress`).
        strict: raise PrepareError if any recording was skipped.
        workers: processes computing entries; None: one per core for large jobs
            (`PARALLEL_MIN_CLIPS` or more), this process alone for small ones.
    """
    _refuse_in_worker()
    get_decoder(config.audio.decoder)  # an unusable decoder fails here, not once per file
    cache_dir = feature_cache_dir(index, config)
    entries = cache_dir / "entries"
    entries.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(
        cache_dir / ".lock",
        on_busy=lambda holder: log.info(
            "waiting for another process (pid %s) that is preparing %s", holder or "?", cache_dir
        ),
    ):
        reported_before = _reported_problems(cache_dir)
        _remove_partial_files(entries)
        stems, problems = _entry_stems(index)
        records = _finished_records(entries, stems.values())
        jobs = [
            Job(track, stems[track.track_id])
            for track in index.tracks
            if track.track_id in stems and stems[track.track_id] not in records
        ]
        if jobs:
            log.info(
                "%s: %d recording(s) cached, %d to prepare into %s",
                index.name,
                len(records),
                len(jobs),
                cache_dir,
            )
            rule = index.clip_rule
            records.update(_compute(jobs, config, rule, entries, workers, progress, index.name))
        prepared = _collect(index, cache_dir, stems, records, problems)
        _write_report(index, prepared, stems, records)
    _warn_skipped(prepared.problems, reported_before)
    if strict and prepared.problems:
        raise PrepareError(
            f"{len(prepared.problems)} recording(s) skipped (see {cache_dir / 'report.json'}); "
            "rerun without --strict to use the rest"
        )
    return prepared


def _refuse_in_worker() -> None:
    """A worker starts by importing the main script; a script that calls `prepare` at the top
    level (outside `if __name__ == "__main__":`) would call it again in every worker."""
    if in_worker(_WORKER_NAME):
        raise PrepareError(
            "prepare() was called while a preparation worker imported your main script; call it "
            "under `if __name__ == '__main__':` (workers are started with the spawn method)"
        )


def _entry_stems(index: DatasetIndex) -> tuple[dict[str, str], list[Problem]]:
    """{track id: entry stem} of the tracks whose file is there, and problems for the others."""
    stems, problems = {}, []
    for track in index.tracks:
        try:
            stems[track.track_id] = entry_stem(track)
        except OSError as error:
            detail = f"the file went away after indexing ({error.strerror})"
            problems.append(
                Problem(track.track_id, str(track.path), "missing", detail, track.split)
            )
    return stems, problems


def _finished_records(entries: Path, stems) -> dict[str, dict]:
    """{stem: record} of the finished entries: a record, and for a kept one its segments."""
    records = {}
    for stem in stems:
        marker = entries / f"{stem}.json"
        if not marker.exists():
            continue
        record = json.loads(marker.read_text(encoding="utf-8"))
        if record["status"] == "skipped" or (entries / f"{stem}.npy").exists():
            records[stem] = record
    return records


def _remove_partial_files(entries: Path) -> None:
    """Deletes the temporary files of writes that a killed run left unfinished."""
    for path in entries.glob(f"{_PARTIAL_PREFIX}*"):
        path.unlink(missing_ok=True)


def _compute(jobs, config, rule, entries, workers, progress, name) -> dict[str, dict]:
    """Computes and writes the jobs' entries, in this process or in worker processes; returns
    {stem: record}."""
    count = _worker_count(workers, len(jobs))
    setup = functools.partial(_entry_writer, config, rule, entries, one_thread=count > 1)
    records = {}
    try:
        with contextlib.ExitStack() as stack:
            bar = stack.enter_context(Progress(len(jobs), f"prepare {name}", "clip", progress))
            if count == 1:
                write = setup()
                finished = ((job, write(job)) for job in jobs)
            else:
                pool = stack.enter_context(WorkerPool(count, setup, _WORKER_NAME))
                finished = pool.run(jobs, functools.partial(_settle_crash, entries))
            for job, record in finished:
                records[job.stem] = record
                bar.update(skipped=int(record["status"] == "skipped"))
    except WorkerError as failure:
        raise _worker_failure(failure) from None
    except WorkerStartError as failure:
        raise PrepareError(
            f"a feature preparation worker exited (code {failure.exit_code}) before it started; "
            "its error is printed above, or rerun with --workers 1 to see it in this process (a "
            "script calling prepare() must do so under `if __name__ == '__main__':`)"
        ) from None
    return records


def _worker_count(workers: int | None, jobs: int) -> int:
    if workers is None:
        workers = 1 if jobs < PARALLEL_MIN_CLIPS else available_cores()
    return max(1, min(workers, jobs))


def _entry_writer(config, rule, entries: Path, one_thread: bool) -> Callable[[Job], dict]:
    """What each worker (or this process) runs first: builds the feature extractor and returns
    the function that computes and writes one job's entry. `one_thread` for a worker: the
    workers already keep every core busy."""
    if one_thread:
        from musicnext_tf.startup import import_tensorflow

        tf = import_tensorflow()  # a worker's own import: its start-up lines held back too
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    extractor = FeatureExtractor(config, segments_kept(config, rule))
    return functools.partial(
        store_entry, entries=entries, config=config, rule=rule, extractor=extractor
    )


def _settle_crash(entries: Path, job: Job, exit_code: int | None, attempts: int) -> dict | None:
    """The record of a job whose worker died: its entry's if the worker finished it, else None to
    try again in a new worker, or after `CRASH_RETRIES` retries a "decoder_crashed" skip, which
    is written as the entry's record."""
    record = _finished_records(entries, [job.stem]).get(job.stem)
    if record is None and attempts > CRASH_RETRIES:
        record = {
            "status": "skipped",
            "reason": "decoder_crashed",
            "detail": f"the process decoding it died (exit code {exit_code}) {attempts} times",
            "track_id": job.track.track_id,
        }
        write_json(entries / f"{job.stem}.json", record)
    return record


def _worker_failure(failure: WorkerError) -> Exception:
    """The error to raise for a worker's unexpected failure: ours as they are, others wrapped
    with the file and the worker's traceback."""
    if isinstance(failure.error, ConfigError | DatasetError | PrepareError):
        return failure.error
    where = f" while preparing {failure.job.track.path}" if failure.job else " while starting"
    return PrepareError(
        f"a feature preparation worker failed{where}: {failure.error}\n{failure.trace}"
    )


def _collect(index, cache_dir, stems, records, problems) -> PreparedDataset:
    """The kept entries per split, and every problem: the index's, then the skipped entries."""
    problems = list(index.problems) + list(problems)
    splits = {}
    for split in SPLITS:
        files, labels, ids = [], [], []
        for track in index.split(split):
            stem = stems.get(track.track_id)
            if stem is None:
                continue  # its file went away: already a problem
            record = records[stem]
            if record["status"] == "skipped":
                problem = Problem(
                    track.track_id, str(track.path), record["reason"], record["detail"], split
                )
                problems.append(problem)
                continue
            files.append(str(cache_dir / "entries" / f"{stem}.npy"))
            labels.append(index.label_id(track.label))
            ids.append(track.track_id)
        if files:
            splits[split] = SplitFeatures(files, np.asarray(labels, np.int32), ids)
    return PreparedDataset(cache_dir, index.genres, splits, problems)


def _write_report(index, prepared: PreparedDataset, stems, records) -> None:
    """report.json: per-split counts of kept and skipped recordings, the skipped ones with their
    reasons, and what the kept files were (sample rates, channels, durations)."""
    kept_per_genre = {}
    for split, features in prepared.splits.items():
        labels = np.bincount(features.labels, minlength=len(index.genres))
        kept_per_genre[split] = dict(zip(index.genres, labels.tolist()))
    kept_records = [
        records[stems[track.track_id]]
        for track in index.tracks
        if track.track_id in stems and records[stems[track.track_id]]["status"] == "kept"
    ]
    report = {
        "dataset": index.name,
        "root": str(index.root),
        "clip_rule": index.clip_rule,
        "genres": list(index.genres),
        "counts": split_counts(prepared),
        "kept_per_genre": kept_per_genre,
        "skipped_by_reason": dict(Counter(p.reason for p in prepared.problems)),
        "skipped": [asdict(p) for p in prepared.problems],
        "sources": _describe_sources(kept_records),
        "notes": index.notes,
    }
    write_json(prepared.cache_dir / "report.json", report)


def _describe_sources(records: list[dict]) -> dict:
    """Sample rates, channel counts and durations of the kept recordings' files."""
    if not records:
        return {}
    seconds = [record["seconds"] for record in records]
    return {
        "sample_rates": {
            str(k): v for k, v in sorted(Counter(r["sample_rate"] for r in records).items())
        },
        "channels": {str(k): v for k, v in sorted(Counter(r["channels"] for r in records).items())},
        "seconds": {
            "min": min(seconds),
            "median": statistics.median(seconds),
            "max": max(seconds),
        },
    }


def _reported_problems(cache_dir: Path) -> set[tuple[str, str]]:
    """(path, reason) of the recordings the cache's previous `report.json` listed as skipped."""
    try:
        report = json.loads((cache_dir / "report.json").read_text(encoding="utf-8"))
        return {(item["path"], item["reason"]) for item in report["skipped"]}
    except (OSError, ValueError, KeyError, TypeError):
        return set()


def _warn_skipped(problems: list[Problem], reported_before: set[tuple[str, str]]) -> None:
    """One warning line per newly skipped recording, with its path and the reason; recordings
    skipped for the same reason in the previous run are summed up in one line, so that a rerun
    on a partial copy of a dataset does not repeat hundreds of lines."""
    repeated = Counter()
    for problem in problems:
        if (problem.path, problem.reason) in reported_before:
            repeated[problem.reason] += 1
            continue
        detail = f" ({problem.detail})" if problem.detail else ""
        log.warning("skipped %s: %s%s", problem.path, problem.reason, detail)
    if repeated:
        reasons = ", ".join(f"{reason}: {count}" for reason, count in sorted(repeated.items()))
        log.warning(
            "skipped %d recording(s) as in the previous run (%s); each is listed in report.json",
            sum(repeated.values()),
            reasons,
        )


def summary(index: DatasetIndex, prepared: PreparedDataset) -> str:
    """A few lines for the terminal: kept and skipped recordings per split, and where the
    features and the report are."""
    lines = [f"{index.name}: {index.root}"]
    for split, counts in split_counts(prepared).items():
        lines.append(f"  {split}: {counts['kept']} kept, {counts['skipped']} skipped")
    lines.append(f"features: {prepared.cache_dir}")
    lines.append(f"report: {prepared.cache_dir / 'report.json'}")
    return "\n".join(lines)


def split_counts(prepared: PreparedDataset) -> dict[str, dict[str, int]]:
    """{split: {"kept": n, "skipped": m}} for the splits with any recording; problems found
    before splitting count under "unassigned"."""
    counts = {}
    for split in (*SPLITS, ""):
        kept = len(prepared.split(split)) if split else 0
        skipped = sum(1 for problem in prepared.problems if problem.split == split)
        if kept or skipped:
            counts[split or "unassigned"] = {"kept": kept, "skipped": skipped}
    return counts
