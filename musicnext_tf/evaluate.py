"""Evaluation: accuracy, loss, confusion matrices and per-genre scores of a trained classifier.

A clip's prediction is the mean of its segments' probabilities (the paper reports accuracy without
saying at which level, so we report both). The loss is the softmax cross-entropy of the plain
(inference) logits, comparable between the softmax and L-softmax heads. Confusion matrices are in
percent of each true genre (rows = true genre, columns = predicted genre, as in the paper; every
row sums to 100); precision, recall and F1 per genre come from scikit-learn. A report is written
as JSON, a markdown table and a PNG of the clip-level confusion matrix. A report on the run's own
test split also carries the classical baseline (`classical`: MFCC statistics and a logistic
regression trained on the run's training split), so every figure has its classical floor beside it:

    RUN_DIR/evaluation/<model>-<dataset>-<split>.json
    RUN_DIR/evaluation/<model>-<dataset>-<split>.md
    RUN_DIR/evaluation/<model>-<dataset>-<split>-confusion.png
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from musicnext_tf import classical, probes, trust
from musicnext_tf.calibration import (
    clip_probabilities,
    read_calibration,
    reliability_png,
    tempered_softmax,
    write_calibration,
)
from musicnext_tf.config import ExperimentConfig, FeatureConfig, load_run_config, resolve
from musicnext_tf.datasets.base import SPLITS, DatasetError
from musicnext_tf.files import atomic_write, write_json
from musicnext_tf.pipeline import evaluation_dataset, segment_labels_and_clips
from musicnext_tf.prepare import PreparedDataset, SplitFeatures
from musicnext_tf.progress import Progress
from musicnext_tf.reporting import (
    as_percent,
    confusion_png,
    confusion_table,
    markdown_table,
    scores_table,
    write_pngs,
)
from musicnext_tf.run_folder import RunError, choose_model, model_epoch, model_file
from musicnext_tf.scores import level_report

EVALUATION_DIR = "evaluation"
BASELINE_KEY = "classical_baseline"  # the report's entry for the classical baseline
log = logging.getLogger(__name__)


def predict_segments(
    classifier, split: SplitFeatures, features: FeatureConfig, batch_size: int = 50, progress=False
):
    """Runs the classifier over every segment of a split.

    Returns:
        (the classifier's outputs float32 [segments, ...] (a dict of them for a model with named
        outputs), labels int [segments], clip indices int [segments]).
    """
    import tensorflow as tf

    labels, clips = segment_labels_and_clips(split)
    batches = evaluation_dataset(split, features, batch_size).map(lambda x, labels, clips: x)
    # one trace per call, whatever the batch shapes: Keras's `predict` traces again for every
    # new dataset (each epoch's validation, each split), and TensorFlow warns of retracing (a
    # partial, not a lambda: TensorFlow counts the traces of all functions of one code together)
    spec = tf.TensorSpec((None, *classifier.input.shape[1:]), tf.float32)
    step = tf.function(functools.partial(classifier, training=False), input_signature=[spec])
    outputs = []
    with Progress(math.ceil(len(labels) / batch_size), "predict", "step", progress) as bar:
        for batch in batches:
            outputs.append(tf.nest.map_structure(lambda tensor: tensor.numpy(), step(batch)))
            bar.update()
    if not outputs:
        outputs = [tf.nest.map_structure(np.asarray, step(tf.zeros((0, *spec.shape[1:]))))]
    joined = tf.nest.map_structure(
        lambda *parts: np.concatenate(parts).astype(np.float32), *outputs
    )
    return joined, labels, clips


def logits_and_embeddings(classifier):
    """segments -> {"logits", "embedding"}: the classifier and its pooled features at once."""
    import keras

    return keras.Model(
        classifier.input,
        {"logits": classifier.output, "embedding": classifier.get_layer("pooling").output},
    )


def split_outputs(
    both, split: SplitFeatures, features: FeatureConfig, batch_size: int = 50, progress=False
) -> trust.SplitOutputs:
    """The logits and pooled features of every segment of a split, from `logits_and_embeddings`
    (built once per model: each new one would trace its predict function again)."""
    outputs, _, clips = predict_segments(both, split, features, batch_size, progress)
    return trust.SplitOutputs(outputs["logits"], outputs["embedding"], clips, split.labels)


def summarize(
    logits: np.ndarray, labels: np.ndarray, clips: np.ndarray, clip_labels: np.ndarray
) -> dict:
    """Accuracy at both levels and the mean cross-entropy of the segments."""
    probabilities = tempered_softmax(logits)
    log_probabilities = np.log(np.maximum(probabilities[np.arange(len(labels)), labels], 1e-30))
    per_clip = clip_probabilities(probabilities, clips, len(clip_labels))
    return {
        "segment_accuracy": float(np.mean(probabilities.argmax(axis=1) == labels)),
        "clip_accuracy": float(np.mean(per_clip.argmax(axis=1) == clip_labels)),
        "loss": float(-np.mean(log_probabilities)),
        "segments": int(len(labels)),
        "clips": int(len(clip_labels)),
    }


def evaluate_split(
    classifier, split: SplitFeatures, features: FeatureConfig, batch_size: int = 50
) -> dict:
    """Segment accuracy, clip accuracy and loss of the classifier on a cached split."""
    logits, labels, clips = predict_segments(classifier, split, features, batch_size)
    return summarize(logits, labels, clips, split.labels)


def classification_report(
    logits: np.ndarray,
    labels: np.ndarray,
    clips: np.ndarray,
    clip_labels: np.ndarray,
    genres: Sequence[str],
) -> dict:
    """Everything `evaluate` reports about a set of predictions.

    Args:
        logits: float [segments, classes], plain logits.
        labels, clips: int [segments], the true genre id and clip index of every segment.
        clip_labels: int [clips], the true genre id of every clip.
        genres: the model's genre names, in class-id order.
    """
    probabilities = tempered_softmax(logits)
    per_clip = clip_probabilities(probabilities, clips, len(clip_labels))
    return {
        **summarize(logits, labels, clips, clip_labels),
        "genres": list(genres),
        "segment_level": level_report(labels, probabilities.argmax(axis=1), genres),
        "clip_level": level_report(clip_labels, per_clip.argmax(axis=1), genres),
    }


def report_stem(model: str, data: str, split: str) -> str:
    return f"{model}-{data}-{split}"


def write_report(report: dict, directory: str | os.PathLike, stem: str) -> list[Path]:
    """Writes `stem`.json, `stem`.md and (with matplotlib) `stem`-confusion.png and, when the
    report has calibration figures, `stem`-reliability.png; returns the paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / f"{stem}.json", directory / f"{stem}.md"]
    write_json(paths[0], report)
    atomic_write(paths[1], markdown_report(report).encode("utf-8"))
    pictures = {
        f"{stem}-confusion.png": lambda: confusion_png(report["clip_level"], _title(report))
    }
    if report.get("calibration"):
        pictures[f"{stem}-reliability.png"] = lambda: reliability_diagram(report)
    paths += write_pngs(directory, pictures, written=paths)
    return paths


def reliability_diagram(report: dict) -> bytes:
    """The PNG reliability diagram of a report's test clips, before and after calibration."""
    clip = report["calibration"]["clip"]
    return reliability_png(clip["before"], clip.get("after"), f"{_title(report)}: clips")


def _title(report: dict) -> str:
    epoch = f" (epoch {report['epoch']})" if report.get("epoch") else ""
    return f"{report.get('model', 'model')} model{epoch} on {report.get('data', '?')}, " + (
        f"{report.get('split', '?')} split"
    )


def markdown_report(report: dict) -> str:
    """The report as markdown: summary, clip-level confusion matrix (%) and per-genre scores."""
    clip_level = report["clip_level"]
    summary = [
        ["clip accuracy", as_percent(report["clip_accuracy"])],
        ["segment accuracy", as_percent(report["segment_accuracy"])],
        ["loss (segment cross-entropy)", f"{report['loss']:.4f}"],
        ["clips", report["clips"]],
        ["segments", report["segments"]],
    ]
    lines = [
        f"# Evaluation: {_title(report)}",
        "",
        *markdown_table(["metric", "value"], summary),
        "",
        "## Confusion matrix (clips, % of each true genre; rows: true, columns: predicted)",
        "",
        *confusion_table(clip_level),
        "",
        "## Per genre (clips)",
        "",
        *scores_table(clip_level, macro_average=True),
    ]
    text = "\n".join(lines) + "\n"
    if report.get(BASELINE_KEY):
        text += "\n" + classical.markdown_section(report[BASELINE_KEY])
    trust_text = trust.markdown_section(report)
    return text + ("\n" + trust_text if trust_text else "")


def format_summary(report: dict, paths: Sequence[Path] = ()) -> str:
    """A few lines for the terminal: accuracies, loss and the per-genre scores."""
    clip_level = report["clip_level"]
    width = max(len("genre"), *(len(g) for g in clip_level["per_genre"]))
    lines = [
        f"{_title(report)}: {report['clips']} clips, {report['segments']} segments",
        f"  clip accuracy {report['clip_accuracy']:.4f}   segment accuracy "
        f"{report['segment_accuracy']:.4f}   loss {report['loss']:.4f}",
        f"  {'genre':<{width}}  precision  recall      F1  clips",
    ]
    for genre, scores in clip_level["per_genre"].items():
        lines.append(
            f"  {genre:<{width}}  {scores['precision']:9.3f}  {scores['recall']:6.3f}  "
            f"{scores['f1']:6.3f}  {scores['support']:5d}"
        )
    baseline = report.get(BASELINE_KEY)
    if baseline:
        lines.append(
            f"  classical baseline (MFCC statistics + logistic regression, same split): clip "
            f"accuracy {baseline['clip_accuracy']:.4f}, macro F1 {baseline['macro_f1']:.4f}"
        )
    lines += trust.summary_lines(report)
    if paths:
        lines.append("report: " + ", ".join(str(path) for path in paths))
    return "\n".join(lines)


def evaluation_config(
    run_config: ExperimentConfig, data: str | None = None, data_dir: str | None = None
) -> ExperimentConfig:
    """The run's config pointed at the data to evaluate.

    Another dataset takes its own preset's data and audio settings (split, clip rule) but keeps the
    run's sample rate and features, which the model's input depends on.
    """
    if data and data != run_config.data.name:
        other = resolve(data, None, {"data": {"data_dir": data_dir}})
        audio = dataclasses.replace(other.audio, sample_rate=run_config.audio.sample_rate)
        return dataclasses.replace(run_config, data=other.data, audio=audio)
    if data_dir:
        return dataclasses.replace(
            run_config, data=dataclasses.replace(run_config.data, data_dir=data_dir)
        )
    return run_config


def split_for_model(prepared: PreparedDataset, split: str, genres: Sequence[str]) -> SplitFeatures:
    """A split (or "all" of them) with labels renumbered to the model's genre order.

    Raises:
        DatasetError: the split is empty, or holds genres the model does not know.
    """
    names = SPLITS if split == "all" else (split,)
    parts = [prepared.split(name) for name in names]
    unknown = sorted(set(prepared.genres) - set(genres))
    if unknown:
        raise DatasetError(
            f"{prepared.cache_dir}: genres {unknown} of the data are not among the model's "
            f"genres {list(genres)}; evaluate on data with the model's genres"
        )
    to_model = np.array([list(genres).index(genre) for genre in prepared.genres], np.int32)
    files = [file for part in parts for file in part.files]
    if not files:
        raise DatasetError(
            f"the {split} split of the data is empty (see {prepared.cache_dir / 'report.json'}); "
            f"choose another --split"
        )
    labels = np.concatenate([to_model[part.labels] for part in parts if len(part)])
    return SplitFeatures(files, labels, [i for part in parts for i in part.track_ids])


def evaluate_run(
    run_dir: str | os.PathLike,
    model: str | None = None,
    data: str | None = None,
    data_dir: str | None = None,
    split: str = "test",
    batch_size: int | None = None,
    progress: bool = True,
    strict: bool = False,
    unknown: Sequence[str | os.PathLike] = (),
    probes_per_kind: int = trust.PROBES_PER_KIND,
) -> tuple[dict, list[Path]]:
    """Evaluates a run's best or last model on a split of its dataset (or of `data`) and writes
    the report to `RUN_DIR/evaluation/`.

    The model's stored calibration is used; a run without one is calibrated on its validation
    split first (when it has one). `unknown`: audio files or folders of genres the model never
    learnt, for the open-set figures (cut by the run's clip rule).

    Returns:
        (the report, the paths written).
    """
    from musicnext_tf import datasets
    from musicnext_tf.prepare import prepare

    run_dir = Path(run_dir)
    config = evaluation_config(load_run_config(run_dir), data, data_dir)
    which = choose_model(run_dir, model)
    genres = json.loads((run_dir / "run.json").read_text())["genres"]
    prepared = prepare(
        datasets.load_index(config, progress), config, progress=progress, strict=strict
    )
    features = split_for_model(prepared, split, genres)
    batch_size = batch_size or config.train.batch_size
    own_data = not data and tuple(prepared.genres) == tuple(genres)
    baseline = run_baseline(prepared) if own_data and split == "test" else None
    validation = training = None
    if own_data and len(prepared.split("validation")):
        validation = split_for_model(prepared, "validation", genres)
    if own_data and len(prepared.split("train")):
        training = split_for_model(prepared, "train", genres)
    return report_model(
        run_dir,
        which,
        config,
        features,
        genres,
        split,
        batch_size,
        progress,
        baseline,
        validation=validation,
        training=training,
        unknown={"unknown recordings": load_unknown(unknown, config)} if unknown else None,
        probes_per_kind=probes_per_kind,
    )


def load_unknown(paths: Sequence[str | os.PathLike], config: ExperimentConfig) -> list[np.ndarray]:
    """The mono waveforms of recordings of unknown genres, cut by the run's clip rule; files that
    cannot be used (or are shorter than one segment) are skipped with a warning."""
    from musicnext_tf.audio import AudioError
    from musicnext_tf.predict import audio_files, load_waveform

    waveforms = []
    for path in audio_files(paths):
        try:
            waveform = load_waveform(path, config, config.audio.clip_rule)
        except AudioError as error:
            log.warning("skipped %s", error)
            continue
        waveforms.append(waveform)
    return waveforms


def run_baseline(prepared: PreparedDataset, test: str = "test") -> dict | None:
    """The classical baseline trained on the training split and scored on `test`, or None
    (with a warning) when the splits cannot train it (one genre, no recordings)."""
    try:
        return classical.evaluate_baseline(prepared, prepared.genres, test=test)
    except ValueError as error:
        log.warning("no classical baseline: %s", error)
        return None


def report_model(
    run_dir: Path,
    which: str,
    config: ExperimentConfig,
    split_features: SplitFeatures,
    genres: Sequence[str],
    split: str,
    batch_size: int,
    progress: bool = True,
    baseline: dict | None = None,
    validation: SplitFeatures | None = None,
    training: SplitFeatures | None = None,
    recalibrate: bool = False,
    unknown: dict[str, Sequence[np.ndarray]] | None = None,
    probes_per_kind: int = trust.PROBES_PER_KIND,
) -> tuple[dict, list[Path]]:
    """Loads `model_{which}.keras`, evaluates it and writes the report, with the classical
    `baseline` result beside it when given; shared by `fit` and `evaluate`.

    The model's calibration (`trust.calibrate`) is fitted on `validation` (and `training`, whose
    clips the knn score compares with) and stored when `recalibrate` is set or the run has none
    stored yet; the report then carries the
    calibration figures and the open-set rejection of `probes_per_kind` generated clips of each
    `probes.PROBE_KINDS` and of the `unknown` recordings ({set name: mono waveforms at the run's
    sample rate}).

    Returns (the report, the paths written)."""
    import keras

    from musicnext_tf import register_keras_objects

    register_keras_objects()  # the custom layers, for load_model
    from musicnext_tf.inference import ClipClassifier

    path = model_file(run_dir, which)
    classifier = keras.saving.load_model(path)
    epoch = model_epoch(run_dir, which)
    both = logits_and_embeddings(classifier)
    test = split_outputs(both, split_features, config.features, batch_size, progress)
    report = classification_report(
        test.logits, split_features.labels[test.clips], test.clips, split_features.labels, genres
    )
    report.update(
        model=which,
        model_file=str(path),
        epoch=epoch,
        data=config.data.name,
        data_dir=config.data.data_dir,
        split=split,
    )
    if baseline:
        report[BASELINE_KEY] = baseline
    valid = None
    if validation is not None and len(validation):
        valid = split_outputs(both, validation, config.features, batch_size, progress)
    class_weights = np.asarray(classifier.get_layer("head").kernel)
    calibration = None if recalibrate else read_calibration(run_dir, which)
    if calibration is None:
        if training is None:
            raise RunError(
                f"{run_dir} has no calibration for its {which} model and the data has no "
                "training split to fit one on; evaluate it on its own dataset first"
            )
        trained = split_outputs(both, training, config.features, batch_size, progress)
        calibration = trust.calibrate(trained, valid, class_weights, epoch)
        write_calibration(run_dir, which, calibration)
    clip_classifier = ClipClassifier(
        classifier, config.features, config.audio.sample_rate, genres, calibration=calibration
    )
    unknown = {
        **probes.probe_set(
            count=probes_per_kind,
            seconds=config.audio.clip_seconds,
            sample_rate=config.audio.sample_rate,
        ),
        **(unknown or {}),
    }
    unknown_outputs = {
        name: trust.classify_waveforms(clip_classifier, waveforms)
        for name, waveforms in unknown.items()
        if len(waveforms)
    }
    report["calibration"] = trust.calibration_section(test, calibration)
    report["open_set"] = trust.open_set_section(
        test, valid, calibration, class_weights, unknown_outputs
    )
    report["open_set"]["speech_source"] = probes.speech_source()
    stem = report_stem(which, config.data.name, split)
    return report, write_report(report, Path(run_dir) / EVALUATION_DIR, stem)
