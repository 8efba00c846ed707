"""Feature preparation: decode, resample, clip and compute log-mel segments once, into a cache.

The cache folder is keyed by the dataset and the full audio and feature config, so a changed setting
gives a new cache and never a stale one. Each recording becomes one `.npy` file of segments
[n, segment_frames, n_mels] (float32), written to a temporary name and renamed, so an interrupted
run leaves only complete entries and the rerun picks up where it stopped. A recording that cannot
be used gets a small `.skip.json` marker with the reason instead.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from musicnext_tf.audio import AudioError, load_clip
from musicnext_tf.config import ExperimentConfig, default_cache_dir
from musicnext_tf.datasets.base import SPLITS, DatasetIndex, Problem, Track
from musicnext_tf.files import write_json, write_npy

CACHE_VERSION = 1
log = logging.getLogger(__name__)


class PrepareError(RuntimeError):
    """Raised in strict mode when any recording had to be skipped."""


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
    """File-name stem of a track's cache entry: a digest of its id, safe on every file system."""
    return hashlib.sha1(track.track_id.encode("utf-8")).hexdigest()[:20]


class FeatureExtractor:
    """Waveform -> log-mel segments [n, frames, mels] with the graph shared with serving."""

    def __init__(self, config: ExperimentConfig):
        import tensorflow as tf

        from musicnext_tf.features import LogMelSpectrogram, segment

        features = config.features
        layer = LogMelSpectrogram.from_feature_config(features, config.audio.sample_rate)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def extract(waveform):
            log_mel = layer(waveform[None, :])[0]
            return segment(log_mel, features.segment_frames, features.segments_per_clip)[..., 0]

        self._extract = extract

    def __call__(self, waveform: np.ndarray) -> np.ndarray:
        return self._extract(waveform).numpy()


def compute_entry(
    track: Track, config: ExperimentConfig, rule: str, extractor: FeatureExtractor
) -> np.ndarray:
    """Segments of one recording; raises AudioError when it cannot be used."""
    audio = config.audio
    waveform = load_clip(track.path, audio.sample_rate, rule, audio.clip_seconds, audio.min_seconds)
    segments = extractor(waveform)
    if len(segments) == 0:
        raise AudioError(track.path, "too_short", "shorter than one segment after decoding")
    return segments


def prepare(
    index: DatasetIndex, config: ExperimentConfig, progress: bool = True, strict: bool = False
) -> PreparedDataset:
    """Makes sure every track of the index has a cache entry; returns the cached splits.

    Finished entries are reused; missing ones are computed. Unusable recordings are skipped with a
    warning naming the file and the reason, and listed in `report.json` in the cache folder.
    """
    cache_dir = feature_cache_dir(index, config)
    entries = cache_dir / "entries"
    entries.mkdir(parents=True, exist_ok=True)
    pending = [t for t in index.tracks if not _entry_done(entries, t)]
    if pending:
        extractor = FeatureExtractor(config)
        for track in _progress(pending, progress, f"prepare {index.name}"):
            try:
                segments = compute_entry(track, config, index.clip_rule, extractor)
            except AudioError as error:
                write_json(
                    entries / f"{entry_stem(track)}.skip.json",
                    {"reason": error.reason, "detail": error.detail},
                )
                continue
            write_npy(entries / f"{entry_stem(track)}.npy", segments.astype("<f4"))
    prepared = _collect(index, cache_dir)
    for problem in prepared.problems:
        log.warning(
            "skipped %s: %s%s",
            problem.path,
            problem.reason,
            f" ({problem.detail})" if problem.detail else "",
        )
    _write_report(index, prepared)
    if strict and prepared.problems:
        raise PrepareError(
            f"{len(prepared.problems)} recording(s) skipped (see {cache_dir / 'report.json'}); "
            "rerun without --strict to train on the rest"
        )
    return prepared


def _entry_done(entries: Path, track: Track) -> bool:
    stem = entry_stem(track)
    return (entries / f"{stem}.npy").exists() or (entries / f"{stem}.skip.json").exists()


def _collect(index: DatasetIndex, cache_dir: Path) -> PreparedDataset:
    entries = cache_dir / "entries"
    problems = list(index.problems)
    splits = {}
    for split in SPLITS:
        files, labels, ids = [], [], []
        for track in index.split(split):
            stem = entry_stem(track)
            marker = entries / f"{stem}.skip.json"
            if marker.exists():
                details = json.loads(marker.read_text())
                problems.append(
                    Problem(
                        track.track_id,
                        str(track.path),
                        details["reason"],
                        details.get("detail", ""),
                        split,
                    )
                )
                continue
            files.append(str(entries / f"{stem}.npy"))
            labels.append(index.label_id(track.label))
            ids.append(track.track_id)
        if files:
            splits[split] = SplitFeatures(files, np.asarray(labels, np.int32), ids)
    return PreparedDataset(cache_dir, index.genres, splits, problems)


def _write_report(index: DatasetIndex, prepared: PreparedDataset) -> None:
    counts = {}
    for split in SPLITS:
        skipped = sum(1 for p in prepared.problems if p.split == split)
        kept = len(prepared.split(split))
        if kept or skipped:
            counts[split] = {"kept": kept, "skipped": skipped}
    report = {
        "dataset": index.name,
        "root": str(index.root),
        "genres": list(index.genres),
        "counts": counts,
        "skipped": [asdict(p) for p in prepared.problems],
    }
    write_json(prepared.cache_dir / "report.json", report)


def _progress(items, enabled: bool, description: str):
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=description, unit="clip")
