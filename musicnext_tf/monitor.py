"""TensorBoard for a training run: what `fit` writes to `RUN_DIR/logs` while it trains.

    logs/train/        epoch_loss, epoch_accuracy, epoch_learning_rate, epoch_lsoftmax_lambda (any
                       other training log too) and a histogram of every weight, per epoch
    logs/validation/   the validation entries of the logs (epoch_loss, epoch_accuracy, ...) and,
                       when the run has a validation split, its clip-level confusion matrix in
                       percent (an image and a table), per epoch
    logs/              the run's hyperparameters and, at the end, its results for the hparams
                       dashboard (`FINAL_METRICS`: the reported model's validation and test
                       accuracies and loss, the classical baseline's, at the last epoch), so runs
                       with different heads and margins compare in one table; a few input log-mel
                       segments as images; an embedding projector of the test clips' pooled
                       features with their genres

Steps are epoch numbers counted from 1, as in `history.csv`, so a resumed run continues its
curves. The logger writes its own summaries instead of using `keras.callbacks.TensorBoard`: it keeps one writer per
folder (TensorBoard reads a folder's event files one after the other, so a second writer in the
same folder hides data from a live TensorBoard) and flushes every epoch, so a killed run loses
nothing that a resumed run will not write again.

View it with `tensorboard --logdir RUN_DIR/logs` (or the parent of several run folders).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from musicnext_tf.audio import CLIP_RULES
from musicnext_tf.calibration import clip_probabilities, tempered_softmax
from musicnext_tf.config import SCHEDULES, STANDARD_SIZES, ExperimentConfig, FeatureConfig
from musicnext_tf.evaluate import predict_segments
from musicnext_tf.layers import LSoftmax
from musicnext_tf.model import ELU_POSITIONS, HEADS, embedding_model
from musicnext_tf.prepare import PreparedDataset, SplitFeatures
from musicnext_tf.reporting import confusion_image, confusion_matrix, confusion_table

LOGS = "logs"
TRAIN_RUN, VALIDATION_RUN, ROOT_RUN = "train", "validation", "."
CONFUSION_TAG = "confusion_matrix"  # the image
CONFUSION_TABLE_TAG = "confusion_matrix_table"  # tags are unique per run across plugins
SEGMENTS_TAG = "input_mel_segments"
EMBEDDING_CHECKPOINT = "embedding"  # prefix of the projector's checkpoint in logs/
EMBEDDING_TENSOR = "embedding/.ATTRIBUTES/VARIABLE_VALUE"  # its name inside the checkpoint
METADATA_FILE = "metadata.tsv"
MEL_IMAGE_RANGE_DB = 80.0  # dynamic range of the segment images below each image's maximum


class SummaryWriters:
    """One `tf.summary` writer per run folder under `log_dir`, created when first used."""

    def __init__(self, log_dir: str | Path):
        self.log_dir = Path(log_dir)
        self._writers: dict[str, tf.summary.SummaryWriter] = {}

    def __getitem__(self, run: str) -> tf.summary.SummaryWriter:
        if run not in self._writers:
            self._writers[run] = tf.summary.create_file_writer(str(self.log_dir / run))
        return self._writers[run]

    def flush(self) -> None:
        for writer in self._writers.values():
            writer.flush()

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers = {}


def split_epoch_logs(logs: dict) -> tuple[dict[str, float], dict[str, float]]:
    """Keras epoch logs -> (training scalars, validation scalars without the `val_` prefix)."""
    train, validation = {}, {}
    for name, value in logs.items():
        if not isinstance(value, (int, float, np.number)):
            continue
        if name.startswith("val_"):
            validation[name[len("val_") :]] = float(value)
        else:
            train[name] = float(value)
    return train, validation


def write_scalars(writer, values: dict[str, float], step: int) -> None:
    """Writes `epoch_<name>` scalars, the tag names Keras' own TensorBoard callback uses."""
    with writer.as_default():
        for name, value in values.items():
            tf.summary.scalar(f"epoch_{name}", value, step=step)


def write_weight_histograms(writer, model: keras.Model, step: int) -> None:
    """A histogram of every floating-point weight, tagged with its path (`stem_conv/kernel`)."""
    with writer.as_default():
        for weight in model.weights:
            if "float" in str(weight.dtype):
                tf.summary.histogram(weight.path, weight.value, step=step)


def clip_predictions(
    classifier: keras.Model, split: SplitFeatures, features: FeatureConfig, batch_size: int
) -> np.ndarray:
    """Predicted genre id of every clip of a split: the argmax of its mean segment probability."""
    logits, _, clips = predict_segments(classifier, split, features, batch_size)
    probabilities = tempered_softmax(logits)
    return clip_probabilities(probabilities, clips, len(split)).argmax(axis=1)


def write_confusion_matrix(
    writer, truth: np.ndarray, predicted: np.ndarray, genres: Sequence[str], step: int
) -> np.ndarray:
    """Writes the clip-level confusion matrix as an image and a table; returns it in percent
    (a genre without clips has a row of zeros)."""
    matrix = confusion_matrix(truth, predicted, genres)
    description = "clip-level confusion matrix in %: rows true genre, columns predicted (" + (
        ", ".join(genres) + ")"
    )
    with writer.as_default():
        tf.summary.image(
            CONFUSION_TAG,
            confusion_image(matrix["confusion_percent"])[None],
            step=step,
            description=description,
        )
        table = "\n".join(confusion_table(matrix))
        tf.summary.text(CONFUSION_TABLE_TAG, table, step=step)
    return matrix["confusion_percent"]


def mel_image(segment: np.ndarray, dynamic_range: float = MEL_IMAGE_RANGE_DB) -> np.ndarray:
    """A log-mel segment [time, mel] (dB) as a grayscale image [mel, time, 1] in [0, 1]: time
    runs left to right, low frequencies at the bottom, the top `dynamic_range` dB visible."""
    top = float(np.max(segment))
    scaled = np.clip((segment - (top - dynamic_range)) / dynamic_range, 0.0, 1.0)
    return scaled.T[::-1, :, None].astype(np.float32)


def example_segments(
    split: SplitFeatures, genres: Sequence[str], count: int
) -> tuple[np.ndarray, list[str]]:
    """The first segment of the first clip of each genre, up to `count` genres, in genre order.

    Returns:
        (float images [n, mel, time, 1], their genre names).
    """
    images, names = [], []
    for label, genre in enumerate(genres):
        clips = np.flatnonzero(split.labels == label)
        if len(images) == count:
            break
        if len(clips):
            images.append(mel_image(np.load(split.files[clips[0]], mmap_mode="r")[0]))
            names.append(genre)
    return np.stack(images) if images else np.zeros((0, 1, 1, 1), np.float32), names


def write_example_segments(writer, split: SplitFeatures, genres: Sequence[str], count: int):
    """Writes a few training segments (what the network sees, before standardisation)."""
    images, names = example_segments(split, genres, count)
    if not len(images):
        return
    description = "log-mel input segments (time ->, low mel bands at the bottom) of: " + (
        ", ".join(names)
    )
    with writer.as_default():
        tf.summary.image(
            SEGMENTS_TAG, images, step=0, max_outputs=len(images), description=description
        )


def run_hparams(config: ExperimentConfig) -> dict[str, str | int | float]:
    """The settings that distinguish runs in the hparams table (sizes as `3:3:9:3` strings)."""
    model, train = config.model, config.train
    return {
        "dataset": config.data.name,
        "architecture": model.architecture,
        "head": model.head,
        "margin": model.margin,
        "depths": ":".join(str(d) for d in model.depths),
        "widths": ":".join(str(w) for w in model.widths),
        "layer_scale": float(model.layer_scale or 0.0),
        "drop_path": float(model.drop_path),
        "elu_position": model.elu_position,
        "learning_rate": float(train.learning_rate),
        "schedule": train.schedule,
        "weight_decay": float(train.weight_decay),
        "clip_rule": config.audio.clip_rule,
        "crops_per_recording": train.crops_per_recording,
        "batch_size": train.batch_size,
        "epochs": train.epochs,
        "seed": train.seed,
    }


# The hparams dashboard's metric columns: the run's results, written at the end into logs/ itself.
# TensorBoard looks for a metric in the folder of the run's hparams joined with the metric's group,
# which with `--logdir RUN/logs` is "./validation", a name it never matches, so the results sit
# beside the hparams (group ""), where both `--logdir RUN/logs` and a parent folder find them.
FINAL_METRICS = {
    "validation_clip_accuracy": "validation clip accuracy of the reported model's epoch",
    "validation_segment_accuracy": "validation segment accuracy of the reported model's epoch",
    "validation_loss": "validation loss of the reported model's epoch",
    "test_clip_accuracy": "test clip accuracy of the reported model",
    "test_segment_accuracy": "test segment accuracy of the reported model",
    "test_loss": "test loss of the reported model",
    "baseline_clip_accuracy": "the classical MFCC baseline's test clip accuracy",
    "baseline_macro_f1": "the classical MFCC baseline's test macro F1",
}
RESULTS_SUFFIX = ".results"  # the events file of the final results: written once per run


def hparams_domains() -> dict[str, list[str]]:
    """The allowed values of the hparams that take one of a few names (filters in the table)."""
    return {
        "architecture": sorted(STANDARD_SIZES),
        "head": list(HEADS),
        "elu_position": list(ELU_POSITIONS),
        "schedule": list(SCHEDULES),
        "clip_rule": list(CLIP_RULES),
    }


def write_hparams(writer, config: ExperimentConfig, trial_id: str) -> None:
    """The run's hyperparameters, and the table's columns: every hparam (with its allowed values
    where they are few) and the results of `FINAL_METRICS`."""
    from tensorboard.plugins.hparams import api as hp

    values = run_hparams(config)
    domains = hparams_domains()
    columns = [
        hp.HParam(name, hp.Discrete(domains[name]) if name in domains else None) for name in values
    ]
    metrics = [
        hp.Metric(tag, display_name=tag, description=description)
        for tag, description in FINAL_METRICS.items()
    ]
    with writer.as_default():
        hp.hparams_config(hparams=columns, metrics=metrics)
        hp.hparams(values, trial_id=trial_id)


def clip_embeddings(
    classifier: keras.Model, split: SplitFeatures, features: FeatureConfig, batch_size: int
) -> np.ndarray:
    """Pooled features (the head's input) of every clip: the mean over its segments.

    Returns:
        float32 [clips, feature dimension].
    """
    segment_features, _, clips = predict_segments(
        embedding_model(classifier), split, features, batch_size
    )
    return clip_probabilities(segment_features, clips, len(split)).astype(np.float32)  # the mean


def _tsv_field(text: str) -> str:
    return " ".join(str(text).split())  # tabs and line breaks would break the TSV layout


def write_projector(
    log_dir: str | Path,
    embeddings: np.ndarray,
    labels: np.ndarray,
    track_ids: Sequence[str],
    genres: Sequence[str],
) -> None:
    """Writes an embedding projector of `embeddings` [clips, dim] labelled by genre and clip.

    The projector reads a checkpoint of the embedding variable and a `metadata.tsv`; it shows a
    folder only if the folder also holds an events file (the logger's root writer provides one).
    """
    from tensorboard.plugins import projector

    log_dir = Path(log_dir)
    rows = ["genre\tclip"] + [
        f"{_tsv_field(genres[label])}\t{_tsv_field(track)}"
        for label, track in zip(labels, track_ids)
    ]
    (log_dir / METADATA_FILE).write_text("\n".join(rows) + "\n", encoding="utf-8")
    variable = tf.Variable(np.asarray(embeddings, np.float32), name="embedding")
    # save() records the checkpoint in logs/checkpoint with a relative path, which the projector
    # finds by itself, so the run folder can be moved
    tf.train.Checkpoint(embedding=variable).save(str(log_dir / EMBEDDING_CHECKPOINT))
    config = projector.ProjectorConfig()
    embedding = config.embeddings.add()
    embedding.tensor_name = EMBEDDING_TENSOR
    embedding.metadata_path = METADATA_FILE
    projector.visualize_embeddings(str(log_dir), config)


class TensorBoardLogger(keras.callbacks.Callback):
    """Writes a run's TensorBoard logs (see the module docstring) during `fit`.

    Args:
        log_dir: the logs folder, `RUN_DIR/logs`.
        config: the run's resolved config (hparams; features for evaluation passes).
        classifier: the classifier being trained (segments -> logits), whose weights the
            training model shares.
        prepared: the cached dataset; its train split gives the example segments, its validation
            split (if any) the confusion matrices, its test split the projector.
        trial_id: the run's name in the hparams table.
        example_count: how many input segments to show (one per genre).
        histograms: whether to write weight histograms every epoch.
    """

    def __init__(
        self,
        log_dir: str | Path,
        config: ExperimentConfig,
        classifier: keras.Model,
        prepared: PreparedDataset,
        trial_id: str,
        example_count: int = 3,
        histograms: bool = True,
    ):
        super().__init__()
        self.writers = SummaryWriters(log_dir)
        self.config = config
        self.classifier = classifier
        self.prepared = prepared
        self.trial_id = trial_id
        self.example_count = example_count
        self.histograms = histograms

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 0:  # once per run: a resumed run has written these already
            root = self.writers[ROOT_RUN]
            write_hparams(root, self.config, self.trial_id)
            write_example_segments(
                root, self.prepared.split("train"), self.prepared.genres, self.example_count
            )
            root.flush()

    def on_epoch_end(self, epoch, logs=None):
        step = epoch + 1  # Keras counts epochs from 0, history.csv and TensorBoard from 1
        self._write_epoch_scalars(logs or {}, step)
        if self.histograms:
            write_weight_histograms(self.writers[TRAIN_RUN], self.classifier, step)
        self._write_validation_confusion(step)
        self.writers.flush()

    def _write_epoch_scalars(self, logs: dict, step: int) -> None:
        train, validation = split_epoch_logs(logs)
        learning_rate = self.model.optimizer.learning_rate
        train["learning_rate"] = float(keras.ops.convert_to_numpy(learning_rate))
        head = self.classifier.get_layer("head")
        if isinstance(head, LSoftmax):
            train.setdefault("lsoftmax_lambda", float(head.current_lambda))
        write_scalars(self.writers[TRAIN_RUN], train, step)
        if validation:
            write_scalars(self.writers[VALIDATION_RUN], validation, step)

    def _write_validation_confusion(self, step: int) -> None:
        split = self.prepared.split("validation")
        if not len(split):
            return  # a run without a validation split
        train = self.config.train
        predicted = clip_predictions(self.classifier, split, self.config.features, train.batch_size)
        write_confusion_matrix(
            self.writers[VALIDATION_RUN], split.labels, predicted, self.prepared.genres, step
        )

    def on_train_end(self, logs=None):
        test = self.prepared.split("test")
        if len(test):
            self.writers[ROOT_RUN].flush()  # the projector needs an events file in its folder
            embeddings = clip_embeddings(
                self.classifier, test, self.config.features, self.config.train.batch_size
            )
            write_projector(
                self.writers.log_dir, embeddings, test.labels, test.track_ids, self.prepared.genres
            )
        self.writers.close()


def final_results(metrics: dict) -> dict[str, float]:
    """The `FINAL_METRICS` of a finished run's `metrics.json` values; the validation figures are
    the history's at the reported model's epoch (absent without a validation split)."""
    results = {name: metrics.get(name) for name in FINAL_METRICS}
    history = metrics.get("history", {})
    reported = metrics.get("best_epoch") if metrics.get("model") == "best" else None
    index = (reported or metrics["epochs_completed"]) - 1
    for name in ("clip_accuracy", "segment_accuracy", "loss"):
        values = history.get(f"val_{name}") or []
        results[f"validation_{name}"] = values[index] if 0 <= index < len(values) else None
    return {name: float(value) for name, value in results.items() if value is not None}


def write_final_results(
    run_dir: str | Path, metrics: dict, images: dict[str, bytes] | None = None
) -> None:
    """Writes the run's `final_results` into `RUN_DIR/logs` once, at its last epoch, where the
    hparams dashboard shows them beside the run's hyperparameters and the scalars tab beside
    the curves; `images` ({tag: PNG bytes}, e.g. the reliability diagram) go to the images tab."""
    folder = Path(run_dir) / LOGS
    if any(folder.glob(f"*{RESULTS_SUFFIX}")):
        return
    writer = tf.summary.create_file_writer(str(folder), filename_suffix=RESULTS_SUFFIX)
    with writer.as_default():
        for name, value in final_results(metrics).items():
            tf.summary.scalar(name, value, step=metrics["epochs_completed"])
        for tag, png in (images or {}).items():
            picture = tf.io.decode_png(png, channels=3)[None]
            tf.summary.image(tag, picture, step=metrics["epochs_completed"])
    writer.close()


def tensorboard_callbacks(
    config: ExperimentConfig,
    run_dir: str | Path,
    classifier: keras.Model,
    prepared: PreparedDataset,
    **options,
) -> list[keras.callbacks.Callback]:
    """The callbacks that write a run's TensorBoard logs to `RUN_DIR/logs`.

    Append them after any callback that adds entries to the epoch logs, so those entries reach
    TensorBoard too. `options` go to `TensorBoardLogger` (example_count, histograms).
    """
    run_dir = Path(run_dir)
    return [
        TensorBoardLogger(
            run_dir / LOGS, config, classifier, prepared, trial_id=run_dir.name, **options
        )
    ]
