"""`musicnext-tf predict`: the genre of audio files of any length, with a trained run's model.

Each file is decoded, mixed to mono and resampled to the run's sample rate as in training
(`audio.load_clip`), cut by a clip rule (by default the whole file) and classified by the graph
that the SavedModel's `waveform` signature exports (`inference.ClipClassifier`): the mean of the
probabilities of all its whole segments, calibrated with the run's temperature. A clip whose
open-set score is below the run's threshold gets the genre "unknown" (its most probable genre stays
in `best_genre`). A file that cannot be used is reported with one warning line, listed in the output
with its `error` reason, and skipped, as dataset preparation does. With `timeline`, every segment's
probabilities are kept too (`musicnext_tf.timeline`).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from musicnext_tf.audio import (
    AUDIO_EXTENSIONS,
    CLIP_RULES,
    UNSUPPORTED_EXTENSIONS,
    AudioError,
    load_clip,
)
from musicnext_tf.config import ExperimentConfig
from musicnext_tf.datasets.base import DatasetError
from musicnext_tf.inference import ClipClassifier, TrainedModel, min_samples, whole_segments
from musicnext_tf.progress import tracked
from musicnext_tf.timeline import Timeline, timeline_names, write_timeline

DEFAULT_CLIP_RULE = "full"
DATASET_RULE = "dataset"  # the clip rule of the run's dataset ([audio] clip_rule)
FORMATS = ("csv", "json")
log = logging.getLogger(__name__)


@dataclass
class Prediction:
    """The result for one file: its genre and probabilities, or the reason it was skipped.

    Attributes:
        path: the file as found.
        genre: the most probable genre, or "unknown" when the open-set score is below the run's
            threshold (None when skipped).
        probability: the most probable genre's probability.
        best_genre: the most probable genre, known or not.
        score: the open-set score (`open_set`); `is_known`: score >= the run's threshold.
        probabilities: every genre's probability, in the model's genre order.
        segments: how many whole segments were averaged.
        seconds: the duration that was classified (after the clip rule).
        error: the reason code of `audio.AudioError` when skipped ("too_short", "undecodable"...).
        error_detail: what exactly was wrong.
        timeline: every segment's times and probabilities, when asked for.
    """

    path: str
    genre: str | None = None
    probability: float | None = None
    best_genre: str | None = None
    score: float | None = None
    is_known: bool | None = None
    probabilities: dict[str, float] | None = None
    segments: int = 0
    seconds: float | None = None
    error: str | None = None
    error_detail: str | None = None
    timeline: Timeline | None = field(default=None, repr=False, compare=False)

    def record(self) -> dict:
        """The prediction's fields for CSV and JSON output (the timeline has files of its own)."""
        return {name: value for name, value in asdict(self).items() if name != "timeline"}


def audio_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """The files to classify: files as given (whatever their extension), and the audio files
    (by extension, hidden ones skipped) anywhere under the folders given, sorted per folder;
    audio in formats we cannot decode (.m4a...) is listed too, to be reported, not dropped.

    Raises:
        DatasetError: the paths hold no file at all.
    """
    files: list[Path] = []
    for path in map(Path, paths):
        if not path.is_dir():
            files.append(path)  # a missing file is reported like an undecodable one
            continue
        found = sorted(
            file
            for file in path.rglob("*")
            if file.is_file()
            and file.suffix.lower() in AUDIO_EXTENSIONS + UNSUPPORTED_EXTENSIONS
            and not any(part.startswith(".") for part in file.relative_to(path).parts)
        )
        if not found:
            log.warning("no audio files (%s) in %s", ", ".join(AUDIO_EXTENSIONS), path)
        files += found
    if not files:
        raise DatasetError(
            f"no audio files to classify in {', '.join(map(str, paths))}; give audio files or "
            f"folders holding {', '.join(AUDIO_EXTENSIONS)} files"
        )
    return files


def resolve_clip_rule(rule: str, trained: TrainedModel) -> str:
    """`dataset` means the run's own rule; others are `audio.CLIP_RULES`."""
    rule = trained.config.audio.clip_rule if rule == DATASET_RULE else rule
    if rule not in CLIP_RULES:
        raise ValueError(f"unknown clip rule {rule!r}; expected one of {CLIP_RULES}")
    return rule


def predict_files(
    trained: TrainedModel,
    files: Sequence[str | os.PathLike],
    clip_rule: str = DEFAULT_CLIP_RULE,
    progress: bool = True,
    timeline: bool = False,
) -> list[Prediction]:
    """Classifies every file; unusable ones are logged, listed with their error and skipped.

    Args:
        clip_rule: "full" (every whole segment of the file), "head", "paper" (see
            `audio.clip_window`) or "dataset" (the run's rule); the clip length and minimum
            duration are the run's `[audio]` settings.
        timeline: keep every segment's times and probabilities in `Prediction.timeline`.
    """
    rule = resolve_clip_rule(clip_rule, trained)
    classifier = ClipClassifier.from_trained(trained)
    shown = tracked(files, "predict", "file", progress and len(files) > 1)
    return [_predict_file(path, trained, rule, classifier, timeline) for path in shown]


def _predict_file(
    path, trained: TrainedModel, rule: str, classifier: ClipClassifier, timeline: bool
) -> Prediction:
    try:
        waveform = load_waveform(path, trained.config, rule)
    except AudioError as error:
        log.warning("skipped %s", error)
        return Prediction(str(path), error=error.reason, error_detail=error.detail)
    outputs = classifier.classify_waveform(waveform[None])
    probabilities = outputs["probabilities"][0]
    segments = None
    if timeline:
        segments = Timeline(
            outputs["segment_start_s"][0],
            outputs["segment_end_s"][0],
            outputs["segment_probabilities"][0],
        )
    return Prediction(
        str(path),
        genre=outputs["genre"][0],
        probability=float(probabilities.max()),
        best_genre=outputs["best_genre"][0],
        score=float(outputs["score"][0]),
        is_known=bool(outputs["is_known"][0]),
        probabilities={g: float(p) for g, p in zip(trained.genres, probabilities)},
        segments=whole_segments(len(waveform), trained.config.features),
        seconds=round(len(waveform) / trained.config.audio.sample_rate, 3),
        timeline=segments,
    )


def load_waveform(path, config: ExperimentConfig, rule: str):
    """The file's mono waveform at the run's sample rate, cut by `rule`, at least one segment
    long.

    Raises:
        AudioError: the file cannot be used (its reason, e.g. "too_short").
    """
    audio, features = config.audio, config.features
    waveform = load_clip(path, audio.sample_rate, rule, audio.clip_seconds, audio.min_seconds)
    if len(waveform) < min_samples(features):
        needed = min_samples(features) / audio.sample_rate
        raise AudioError(
            path,
            "too_short",
            f"{len(waveform) / audio.sample_rate:.2f} s < one segment, {needed:.2f} s",
        )
    return waveform


def format_predictions(
    predictions: Sequence[Prediction], trained: TrainedModel, clip_rule: str, format: str
) -> str:
    """The predictions as CSV (one row per file, a `p_<genre>` column per genre) or JSON (the
    model, genres and clip rule, then one object per file)."""
    if format == "json":
        document = {
            "model": str(trained.model_file),
            "genres": list(trained.genres),
            "sample_rate": trained.config.audio.sample_rate,
            "clip_rule": resolve_clip_rule(clip_rule, trained),
            "calibration": trained.calibration.record() if trained.calibration else None,
            "predictions": [prediction.record() for prediction in predictions],
        }
        return json.dumps(document, indent=2) + "\n"
    if format != "csv":
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    columns = [
        "path",
        "genre",
        "probability",
        "best_genre",
        "score",
        "is_known",
        "segments",
        "seconds",
        "error",
        "error_detail",
    ]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns + [f"p_{genre}" for genre in trained.genres])
    for prediction in predictions:
        row = prediction.record()
        fixed = [_csv_value(row[column]) for column in columns]
        scores = prediction.probabilities or {}
        writer.writerow(fixed + [_csv_value(scores.get(genre)) for genre in trained.genres])
    return buffer.getvalue()


def write_timelines(
    predictions: Sequence[Prediction],
    genres: Sequence[str],
    directory: str | os.PathLike,
    format: str = "csv",
    plot: bool = False,
) -> list[Path]:
    """Writes the timeline of every classified file into `directory` (`timeline.write_timeline`);
    returns the paths written."""
    done = [prediction for prediction in predictions if prediction.timeline is not None]
    written = []
    for prediction, name in zip(done, timeline_names([p.path for p in done])):
        written += write_timeline(
            prediction.timeline, genres, prediction.path, directory, name, format, plot
        )
    return written


def _csv_value(value) -> str:
    if value is None:
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)
