"""Training: from a resolved config to a trained model, its test report and a run folder.

`fit` starts a run and `resume` continues one after any interruption (Ctrl-C, kill -9, a crash).
Both index the dataset, prepare (or reuse) the feature cache, build the model with the training
set's feature statistics and train with Adam on the L-softmax (or softmax) loss, saving a
checkpoint after every epoch. With a validation split, the epoch with the best validation clip
accuracy is kept as the best model; the test split is used once, at the end, to report on the
selected model (the best one, or the last without a validation split).

    RUN_DIR/config.json         the full resolved config (`resume` reads it)
    RUN_DIR/run.json            derived facts: genres, feature statistics, split sizes, schedule
    RUN_DIR/checkpoints/        the last complete epoch (see `run_folder`)
    RUN_DIR/history.csv         one row per completed epoch: training and validation metrics
    RUN_DIR/model_best.keras    the classifier of the best validation epoch (segments -> logits)
    RUN_DIR/model_last.keras    the classifier after the last completed epoch
    RUN_DIR/evaluation/         the test report of the selected model (see `evaluate`)
    RUN_DIR/metrics.json        test_segment_accuracy, test_clip_accuracy, test_loss,
                                epochs_completed, best_epoch, history; written last

Training runs on one device, all local GPUs or several hosts (`[train] strategy`, see
`distributed`); with several workers only the chief writes the run folder.

With `export_base`, the selected model is also exported for TF Serving as the next version of
`EXPORT_BASE/<dataset>/` (see `export`) just before `metrics.json` is written.

Reproducibility: `train.seed` seeds the initialisation (`keras.utils.set_random_seed`) and the
training stream, whose epoch k depends only on (seed, k); a resumed run restores weights,
optimizer state, the L-softmax annealing step and the random generators' states, and so trains
exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import tensorflow as tf

from musicnext_tf import datasets, distributed
from musicnext_tf.config import ConfigError, ExperimentConfig, TrainConfig, load_run_config
from musicnext_tf.evaluate import evaluate_split, report_model, run_baseline, split_for_model
from musicnext_tf.export import export_run
from musicnext_tf.files import write_csv, write_json
from musicnext_tf.layers import LSoftmax
from musicnext_tf.losses import LSoftmaxLoss
from musicnext_tf.model import build_model, needs_labels, training_model
from musicnext_tf.monitor import tensorboard_callbacks, write_final_results
from musicnext_tf.pipeline import feature_statistics, steps_per_epoch, training_dataset
from musicnext_tf.prepare import PreparedDataset, SplitFeatures, prepare
from musicnext_tf.progress import keras_verbosity
from musicnext_tf.run_folder import (
    Checkpoint,
    RunError,
    latest_checkpoint,
    publish_models,
    remove_stale,
    restore_checkpoint,
    run_lock,
    save_checkpoint,
)
from musicnext_tf.trust import trust_metrics

# validation metric -> True when larger is better; accuracy ties go to the lower validation loss
SELECTION_METRICS = {"val_clip_accuracy": True, "val_segment_accuracy": True, "val_loss": False}
log = logging.getLogger(__name__)


@dataclass
class TrainingRun:
    """What a callback may need to know about the run being trained.

    `state` is the JSON-serialisable progress saved with every checkpoint: `epochs_completed`,
    `history` (one dict per completed epoch), `best` (the best epoch's validation metrics or None),
    `train_seconds` and `sessions` (one entry per `fit` or `resume` call).
    """

    config: ExperimentConfig
    run_dir: Path
    prepared: PreparedDataset
    classifier: keras.Model
    trainer: keras.Model
    steps_per_epoch: int
    initial_epoch: int
    state: dict

    @property
    def genres(self) -> tuple[str, ...]:
        return self.prepared.genres

    def split(self, name: str) -> SplitFeatures:
        return self.prepared.split(name)

    @property
    def has_validation(self) -> bool:
        return len(self.split("validation")) > 0


class ScheduleLogger(keras.callbacks.Callback):
    """Adds the learning rate and the L-softmax annealing weight to each epoch's logs (progress
    bar and history), and says at the start what the logged figures mean."""

    def __init__(self, head: LSoftmax | None):
        super().__init__()
        self.head = head

    def on_train_begin(self, logs=None):
        if self.head is not None:
            log.info(
                "loss is the L-softmax objective (margin logits; lambda anneals from %.0f "
                "towards 0, the full margin m = %d, so loss may rise as the margin grows); "
                "accuracy and crossentropy are on the plain logits the model predicts with",
                float(self.head.current_lambda),
                self.head.margin,
            )

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        rate = self.model.optimizer.learning_rate
        logs["learning_rate"] = float(keras.ops.convert_to_numpy(rate))
        if self.head is not None:
            logs["lsoftmax_lambda"] = float(self.head.current_lambda)


class ValidationMetrics(keras.callbacks.Callback):
    """Adds `val_loss`, `val_segment_accuracy` and `val_clip_accuracy` to each epoch's logs.

    Keras' own validation works on segments only; clip accuracy needs the clips' segments
    together, which `evaluate_split` provides. The latest result stays in `self.result`.
    """

    def __init__(self, run: TrainingRun):
        super().__init__()
        self.run = run
        self.result: dict | None = None

    def on_epoch_end(self, epoch, logs=None):
        run = self.run
        self.result = evaluate_split(
            run.classifier,
            run.split("validation"),
            run.config.features,
            run.config.train.batch_size,
        )
        if logs is not None:
            logs["val_loss"] = self.result["loss"]
            logs["val_segment_accuracy"] = self.result["segment_accuracy"]
            logs["val_clip_accuracy"] = self.result["clip_accuracy"]


class EpochCheckpoint(keras.callbacks.Callback):
    """Records the epoch in the run's state, writes its checkpoint and `history.csv`.

    It must be the last callback, so that the epoch's checkpoint is written after everything else
    has seen the epoch."""

    def __init__(self, run: TrainingRun):
        super().__init__()
        self.run = run
        self.started = time.monotonic()

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        run, state = self.run, self.run.state
        seconds = time.monotonic() - self.started
        row = {"epoch": epoch + 1, "session": len(state["sessions"]), "seconds": round(seconds, 3)}
        row.update({key: float(value) for key, value in (logs or {}).items()})
        metric = run.config.train.best_metric
        best_is_new = run.has_validation and is_improvement(row, state["best"], metric)
        if best_is_new:
            state["best"] = {"epoch": epoch + 1, **{k: row[k] for k in SELECTION_METRICS}}
        state["history"].append(row)
        state["epochs_completed"] = epoch + 1
        state["train_seconds"] = round(state["train_seconds"] + seconds, 3)
        save_checkpoint(run.run_dir, epoch + 1, run.trainer, run.classifier, state, best_is_new)
        write_history(run.run_dir, state["history"])


def is_improvement(logs: dict, best: dict | None, metric: str) -> bool:
    """Whether an epoch's validation metrics beat the best so far (ties: lower validation loss)."""
    if best is None:
        return True
    if not SELECTION_METRICS[metric]:
        return logs[metric] < best[metric]
    return logs[metric] > best[metric] or (
        logs[metric] == best[metric] and logs["val_loss"] < best["val_loss"]
    )


def write_history(run_dir: Path, history: list[dict]) -> None:
    """`RUN_DIR/history.csv`: one row per completed epoch, epoch first, then the logged values."""
    first = ["epoch", "session", "seconds"]
    columns = first + sorted({key for row in history for key in row} - set(first))
    write_csv(run_dir / "history.csv", columns, history)


SPLIT_COLUMNS = ("track_id", "path", "genre", "split", "status")


def write_split(run_dir: Path, index: datasets.DatasetIndex, prepared: PreparedDataset) -> None:
    """`RUN_DIR/split.csv`: every recording of the dataset with its genre, its split and whether
    it was used ("kept", or "skipped: REASON"), so that other tools can be scored on the run's
    exact tracks."""
    skipped = {problem.track_id: problem.reason for problem in prepared.problems}
    rows = [
        {
            "track_id": track.track_id,
            "path": str(track.path),
            "genre": track.label,
            "split": track.split,
            "status": f"skipped: {skipped[track.track_id]}"
            if track.track_id in skipped
            else "kept",
        }
        for track in index.tracks
    ]
    rows += [
        {
            "track_id": problem.track_id,
            "path": problem.path,
            "genre": "",
            "split": problem.split,
            "status": f"skipped: {problem.reason}",
        }
        for problem in index.problems
    ]
    write_csv(run_dir / "split.csv", SPLIT_COLUMNS, rows)


def layer_policy(train_config: TrainConfig) -> str | None:
    """The dtype policy of the network's body (None: Keras' default, float32)."""
    return None if train_config.precision == "float32" else train_config.precision


def learning_rate(train_config: TrainConfig, steps_per_epoch: int = 1):
    """The learning rate: constant (the paper), or a linear warm-up over `warmup_epochs` then a
    cosine decay to 0 at the last step. A schedule follows the optimizer's step counter, which is
    saved with checkpoints, so a resumed run continues on the same curve."""
    if train_config.schedule == "constant":
        return train_config.learning_rate
    total = max(1, train_config.epochs * steps_per_epoch)
    warmup = min(total - 1, round(train_config.warmup_epochs * steps_per_epoch))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else train_config.learning_rate,
        decay_steps=total - warmup,
        warmup_target=train_config.learning_rate if warmup else None,
        warmup_steps=warmup,
    )


def compile_for_training(
    trainer: keras.Model, train_config: TrainConfig, steps_per_epoch: int = 1
) -> None:
    """Adam (AdamW with `weight_decay`) on the L-softmax (or softmax) loss; under mixed_float16
    the optimizer scales the loss dynamically so that small float16 gradients do not flush to
    zero.

    Metrics are computed on the plain logits, what the model predicts: `accuracy`, and
    `crossentropy` (comparable with `val_loss`), while `loss` is the training objective, the
    cross-entropy of the margin logits."""
    rate = learning_rate(train_config, steps_per_epoch)
    if train_config.weight_decay:
        optimizer = keras.optimizers.AdamW(rate, weight_decay=train_config.weight_decay)
    else:
        optimizer = keras.optimizers.Adam(rate)
    if train_config.precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    trainer.compile(
        optimizer=optimizer,
        loss=LSoftmaxLoss(),
        metrics=[
            keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
            keras.metrics.SparseCategoricalCrossentropy(from_logits=True, name="crossentropy"),
        ],
        jit_compile=train_config.jit_compile,
    )


def observer_callbacks(run: TrainingRun) -> list[keras.callbacks.Callback]:
    """Callbacks that watch training without changing it (TensorBoard belongs here).

    They run after the validation metrics and the L-softmax lambda are in the epoch's logs and
    before the epoch's checkpoint is written."""
    return tensorboard_callbacks(run.config, run.run_dir, run.classifier, run.prepared)


def training_callbacks(
    run: TrainingRun, extra: Sequence[keras.callbacks.Callback] = ()
) -> list[keras.callbacks.Callback]:
    """The callbacks of a run, in the order they must see each epoch's end."""
    callbacks: list[keras.callbacks.Callback] = []
    if run.has_validation:
        callbacks.append(ValidationMetrics(run))
    head = run.classifier.get_layer("head")
    callbacks.append(ScheduleLogger(head if isinstance(head, LSoftmax) else None))
    callbacks += observer_callbacks(run)
    callbacks += list(extra)
    callbacks.append(EpochCheckpoint(run))
    return callbacks


def fit(
    config: ExperimentConfig,
    run_dir: str | Path,
    progress: bool = True,
    strict: bool = False,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    export_base: str | Path | None = None,
) -> dict:
    """Starts a run in a new (or empty) folder, trains it and returns `RUN_DIR/metrics.json`.

    With `[train] strategy = "multi-worker"` every worker calls this with the same config; only
    the chief writes the run folder and returns its metrics, the others return
    {"worker", "workers", "epochs_completed"}.

    Args:
        callbacks: extra Keras callbacks; they run before the epoch's checkpoint is written (on
            every worker of a multi-worker run).
        export_base: export the selected model to EXPORT_BASE/<dataset>/<next version>/ at the
            end (None: no export).
    Raises:
        RunError: `run_dir` already holds a run.
    """
    strategy = distributed.create_strategy(config.train.strategy)  # before any TensorFlow op
    role = distributed.worker_role(strategy)
    run_dir = Path(run_dir)
    if role.is_chief and (run_dir / "config.json").exists():
        raise RunError(
            f"{run_dir} already holds a run; continue it with `musicnext-tf fit --resume "
            f"{run_dir}`, or choose another --run-dir"
        )
    _check_config(config)
    # a wrong data folder fails here, before anything is written
    index = datasets.load_index(config, progress)
    if role.is_chief:
        run_dir.mkdir(parents=True, exist_ok=True)
    with _writer_lock(run_dir, role):
        if role.is_chief:
            write_json(run_dir / "config.json", config.to_dict())
        return _train(config, run_dir, progress, strict, callbacks, index, export_base, strategy)


def resume(
    run_dir: str | Path,
    progress: bool = True,
    strict: bool = False,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    export_base: str | Path | None = None,
    strategy: str | None = None,
    data_service: str | None = None,
) -> dict:
    """Continues a run from its last complete epoch with the settings in `RUN_DIR/config.json`.

    A finished run is left as it is: its metrics are returned and nothing is trained.
    `strategy` and `data_service` (when given) replace the run's `[train]` settings: they say
    where the run trains, not what, so it may continue on other hardware.
    """
    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    config.train.strategy = strategy or config.train.strategy
    config.train.data_service = data_service or config.train.data_service
    tf_strategy = distributed.create_strategy(config.train.strategy)
    role = distributed.worker_role(tf_strategy)
    if not is_finished(run_dir):
        with _writer_lock(run_dir, role):
            if not is_finished(run_dir):  # another process may have finished it meanwhile
                return _train(
                    config, run_dir, progress, strict, callbacks, None, export_base, tf_strategy
                )
    return json.loads((run_dir / "metrics.json").read_text())


def _writer_lock(run_dir: Path, role: distributed.WorkerRole):
    """The run lock, for the process that writes the run folder (the other workers take none)."""
    return run_lock(run_dir) if role.is_chief else contextlib.nullcontext()


def is_finished(run_dir: str | Path) -> bool:
    """True once a run has trained all its epochs and written its test metrics."""
    return (Path(run_dir) / "metrics.json").is_file()


def interruption_message(run_dir: str | Path) -> str:
    """What was kept of an interrupted run, and the command that continues it."""
    checkpoint = latest_checkpoint(run_dir)
    kept = (
        f"epochs 1-{checkpoint.epoch} are kept in {checkpoint.path}"
        if checkpoint
        else "no epoch had completed"
    )
    return f"interrupted: {kept}; continue with\n  musicnext-tf fit --resume {run_dir}"


def _check_config(config: ExperimentConfig) -> None:
    if config.train.best_metric not in SELECTION_METRICS:
        raise ConfigError(
            f"[train] best_metric = {config.train.best_metric!r} is not one of "
            f"{sorted(SELECTION_METRICS)}"
        )


def _split_digest(prepared: PreparedDataset) -> str:
    """Identifies which clips are in which split, so that a resume on changed data is refused."""
    ids = sorted(
        (name, track) for name, split in prepared.splits.items() for track in split.track_ids
    )
    return hashlib.sha256(json.dumps(ids).encode("utf-8")).hexdigest()[:16]


def _run_facts(
    run_dir: Path, prepared: PreparedDataset, config: ExperimentConfig, write: bool = True
) -> dict:
    """run.json: written when a run starts (if `write`); a resume checks the data against it and
    reuses its feature statistics, so the rebuilt model is the same."""
    path = run_dir / "run.json"
    train_split = prepared.split("train")
    facts = {
        "genres": list(prepared.genres),
        "clips": {name: len(split) for name, split in prepared.splits.items()},
        "split_digest": _split_digest(prepared),
        "feature_cache": str(prepared.cache_dir),
        "skipped_recordings": len(prepared.problems),
    }
    if path.exists():
        saved = json.loads(path.read_text())
        changed = [k for k in ("genres", "clips", "split_digest") if saved.get(k) != facts[k]]
        if changed:
            raise RunError(
                f"the data changed since the run started ({', '.join(changed)} differ from "
                f"{path}); resume needs the same recordings, or start a new run"
            )
        return saved
    mean, std = feature_statistics(train_split)
    steps = steps_per_epoch(train_split, config.train)
    facts.update(
        input_mean=mean,
        input_std=std,
        steps_per_epoch=steps,
        anneal_steps=round((config.model.anneal_epochs or config.train.epochs) * steps),
    )
    if write:
        write_json(path, facts)
    return facts


def _prepare_data(
    config: ExperimentConfig, index: datasets.DatasetIndex, progress: bool, strict: bool
) -> PreparedDataset:
    """The cached splits; training and test must not be empty, validation may be."""
    prepared = prepare(index, config, progress=progress, strict=strict)
    train_split, test_split = prepared.split("train"), prepared.split("test")
    if not len(train_split) or not len(test_split):
        raise datasets.DatasetError(
            f"{index.root}: {len(train_split)} training and {len(test_split)} test clips are usable; "
            f"both splits need at least one (see {prepared.cache_dir / 'report.json'})"
        )
    if not len(prepared.split("validation")):
        log.warning(
            "no validation split ([data] validation_fraction = 0): the last epoch's model is "
            "the one reported; set validation_fraction to keep the best epoch's model"
        )
    return prepared


def _build_models(
    config: ExperimentConfig, genres: Sequence[str], facts: dict
) -> tuple[keras.Model, keras.Model]:
    """(classifier, compiled training model), initialised from the seed."""
    keras.utils.set_random_seed(config.train.seed)
    classifier = build_model(
        config.model,
        config.features,
        len(genres),
        facts["input_mean"],
        facts["input_std"],
        anneal_steps=facts["anneal_steps"],
        dtype=layer_policy(config.train),
    )
    trainer = training_model(classifier)
    compile_for_training(trainer, config.train, facts["steps_per_epoch"])
    return classifier, trainer


def _restore_or_start(run_dir: Path, trainer: keras.Model, tidy: bool = True) -> dict:
    """Loads the latest checkpoint into `trainer` and returns its state (a new state without one),
    after removing (if `tidy`) what a killed process may have left half written."""
    checkpoint = latest_checkpoint(run_dir)
    if tidy:
        remove_stale(run_dir, keep=checkpoint)
    if checkpoint is None:
        return {
            "epochs_completed": 0,
            "history": [],
            "best": None,
            "train_seconds": 0.0,
            "sessions": [],
        }
    state = restore_checkpoint(checkpoint, trainer)
    if tidy:
        publish_models(run_dir, checkpoint)  # in case a kill came between checkpoint and links
        write_history(run_dir, state["history"])
    log.info("resuming %s after epoch %d", run_dir, checkpoint.epoch)
    return state


def _train(
    config: ExperimentConfig,
    run_dir: Path,
    progress: bool,
    strict: bool,
    callbacks: Sequence[keras.callbacks.Callback],
    index: datasets.DatasetIndex | None = None,
    export_base: str | Path | None = None,
    strategy: tf.distribute.Strategy | None = None,
) -> dict:
    """Trains the run in `run_dir` from its latest checkpoint (or from the start) and finishes it.

    Under `strategy` (default: one device) the models are built in its scope; a worker other
    than the chief only trains: it writes nothing and returns its progress."""
    _check_config(config)
    strategy = strategy or tf.distribute.get_strategy()
    role = distributed.worker_role(strategy)
    distributed.check_same_start(strategy, run_dir)
    index = index or datasets.load_index(config, progress)
    prepared = _prepare_data(config, index, progress, strict)
    facts = _run_facts(run_dir, prepared, config, write=role.is_chief)
    if role.is_chief:
        write_split(run_dir, index, prepared)
    with strategy.scope():
        classifier, trainer = _build_models(config, prepared.genres, facts)
        state = _restore_or_start(run_dir, trainer, tidy=role.is_chief)
    distributed.evaluate_locally(classifier, strategy)
    initial_epoch = state["epochs_completed"]
    state["sessions"].append(
        {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "initial_epoch": initial_epoch}
    )
    run = TrainingRun(
        config,
        run_dir,
        prepared,
        classifier,
        trainer,
        facts["steps_per_epoch"],
        initial_epoch,
        state,
    )
    epochs_completed = initial_epoch
    if initial_epoch < config.train.epochs:
        dataset = training_dataset(
            prepared.split("train"),
            config.features,
            config.train,
            needs_labels(trainer),
            initial_epoch,
            fill_value=facts["input_mean"],
        )
        if config.train.data_service:
            dataset = distributed.from_data_service(dataset, config.train.data_service)
        history = distributed.fit_model(
            trainer,
            dataset,
            strategy,
            epochs=config.train.epochs,
            initial_epoch=initial_epoch,
            steps_per_epoch=run.steps_per_epoch,
            callbacks=training_callbacks(run, callbacks) if role.is_chief else list(callbacks),
            verbose=keras_verbosity(progress and role.is_chief),
        )
        epochs_completed += len(history.epoch)
    if not role.is_chief:
        return {"worker": role.index, "workers": role.count, "epochs_completed": epochs_completed}
    return _finish(run, progress, export_base)


def report_images(paths: Sequence[Path]) -> dict[str, bytes]:
    """The PNG figures among an evaluation's files, by TensorBoard tag (`evaluation/<name>`)."""
    return {f"evaluation/{path.stem}": path.read_bytes() for path in paths if path.suffix == ".png"}


def _finish(run: TrainingRun, progress: bool = True, export_base: str | Path | None = None) -> dict:
    """Reports the selected model on the test split and writes `metrics.json` (the run's last
    file: its presence marks the run finished)."""
    checkpoint: Checkpoint | None = latest_checkpoint(run.run_dir)
    if checkpoint is None:
        raise RunError(f"{run.run_dir}: no completed epoch to report ([train] epochs = 0?)")
    publish_models(run.run_dir, checkpoint)
    wants_best = run.config.train.report_model == "best"
    which = "best" if run.state["best"] and wants_best else "last"
    test = split_for_model(run.prepared, "test", run.genres)
    batch_size = run.config.train.batch_size
    baseline = run_baseline(run.prepared)
    validation = (
        split_for_model(run.prepared, "validation", run.genres) if run.has_validation else None
    )
    report, paths = report_model(
        run.run_dir,
        which,
        run.config,
        test,
        run.genres,
        "test",
        batch_size,
        progress,
        baseline,
        validation=validation,
        training=split_for_model(run.prepared, "train", run.genres),
        recalibrate=True,
    )
    history = run.state["history"]
    keys = sorted({key for row in history for key in row} - {"epoch", "session"})
    metrics = {
        "test_segment_accuracy": report["segment_accuracy"],
        "test_clip_accuracy": report["clip_accuracy"],
        "test_loss": report["loss"],
        "test_segments": report["segments"],
        "test_clips": report["clips"],
        "baseline_clip_accuracy": baseline["clip_accuracy"] if baseline else None,
        "baseline_macro_f1": baseline["macro_f1"] if baseline else None,
        "epochs_completed": run.state["epochs_completed"],
        "model": which,
        "best_epoch": (run.state["best"] or {}).get("epoch"),
        "best_metric": run.config.train.best_metric if which == "best" else None,
        "train_seconds": round(run.state["train_seconds"], 1),
        "sessions": len(run.state["sessions"]),
        "evaluation": [str(path.relative_to(run.run_dir)) for path in paths],
        **trust_metrics(report),
        "history": {key: [row.get(key) for row in history] for key in keys},
    }
    write_final_results(run.run_dir, metrics, images=report_images(paths))
    if export_base is not None:  # the run is finished but for metrics.json: a kill exports again
        metrics["export"] = str(export_run(run.run_dir, export_base, which=which))
    write_json(run.run_dir / "metrics.json", metrics)
    return metrics
