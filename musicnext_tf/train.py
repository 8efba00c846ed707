"""Training: from a resolved config to a trained model, its test metrics and a run folder.

`fit` indexes the dataset, prepares (or reuses) the feature cache, builds the model with the
training set's feature statistics, trains with Adam on the L-softmax (or softmax) loss, evaluates
on the test split and writes everything a run needs to be inspected or reproduced:

    RUN_DIR/config.json    the full resolved config
    RUN_DIR/run.json       derived facts: genres, feature statistics, split sizes, schedule
    RUN_DIR/model.keras    the trained classifier (segments -> logits)
    RUN_DIR/metrics.json   test_segment_accuracy, test_clip_accuracy, test_loss, epochs_completed
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import keras

from musicnext_tf import datasets
from musicnext_tf.config import ExperimentConfig
from musicnext_tf.evaluate import evaluate_split
from musicnext_tf.files import write_json
from musicnext_tf.layers import LSoftmax
from musicnext_tf.losses import LSoftmaxLoss
from musicnext_tf.model import build_model, needs_labels, training_model
from musicnext_tf.monitor import tensorboard_callbacks
from musicnext_tf.pipeline import feature_statistics, steps_per_epoch, training_dataset
from musicnext_tf.prepare import prepare

log = logging.getLogger(__name__)


class LambdaLogger(keras.callbacks.Callback):
    """Adds the L-softmax annealing weight to each epoch's logs (progress bar and history)."""

    def __init__(self, head: LSoftmax):
        super().__init__()
        self.head = head

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["lsoftmax_lambda"] = float(self.head.current_lambda)


def compile_for_training(trainer: keras.Model, learning_rate: float) -> None:
    trainer.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=LSoftmaxLoss(),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )


def fit(
    config: ExperimentConfig, run_dir: str | Path, progress: bool = True, strict: bool = False
) -> dict:
    """Trains and evaluates one run; returns the metrics written to `RUN_DIR/metrics.json`."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "config.json", config.to_dict())
    keras.utils.set_random_seed(config.train.seed)

    index = datasets.load_index(config)
    prepared = prepare(index, config, progress=progress, strict=strict)
    train_split, test_split = prepared.split("train"), prepared.split("test")
    if not len(train_split) or not len(test_split):
        raise datasets.DatasetError(
            f"{index.root}: {len(train_split)} training and {len(test_split)} test clips are usable; "
            f"both splits need at least one (see {prepared.cache_dir / 'report.json'})"
        )
    mean, std = feature_statistics(train_split)

    train = config.train
    steps = steps_per_epoch(train_split, train.batch_size)
    anneal_steps = round((config.model.anneal_epochs or train.epochs) * steps)
    classifier = build_model(
        config.model, config.features, len(prepared.genres), mean, std, anneal_steps=anneal_steps
    )
    trainer = training_model(classifier)
    dataset = training_dataset(train_split, config.features, train, needs_labels(trainer))
    compile_for_training(trainer, train.learning_rate)
    write_json(
        run_dir / "run.json",
        {
            "genres": list(prepared.genres),
            "input_mean": mean,
            "input_std": std,
            "steps_per_epoch": steps,
            "anneal_steps": anneal_steps,
            "clips": {name: len(split) for name, split in prepared.splits.items()},
            "feature_cache": str(prepared.cache_dir),
            "skipped_recordings": len(prepared.problems),
        },
    )
    callbacks = []
    head = classifier.get_layer("head")
    if isinstance(head, LSoftmax):
        callbacks.append(LambdaLogger(head))
    callbacks += tensorboard_callbacks(config, run_dir, classifier, prepared)
    started = time.time()
    history = trainer.fit(
        dataset,
        epochs=train.epochs,
        steps_per_epoch=steps,
        callbacks=callbacks,
        shuffle=False,  # the pipeline shuffles, reproducibly
        verbose=1 if progress else 0,
    )
    train_seconds = time.time() - started
    classifier.save(run_dir / "model.keras")

    test = evaluate_split(classifier, test_split, config.features, train.batch_size)
    metrics = {
        "test_segment_accuracy": test["segment_accuracy"],
        "test_clip_accuracy": test["clip_accuracy"],
        "test_loss": test["loss"],
        "test_segments": test["segments"],
        "test_clips": test["clips"],
        "epochs_completed": len(history.epoch),
        "train_seconds": round(train_seconds, 1),
        "history": {k: [float(v) for v in values] for k, values in history.history.items()},
    }
    write_json(run_dir / "metrics.json", metrics)
    return metrics
