"""The run folder on disk: per-epoch checkpoints, the published models and a lock.

A checkpoint is one folder per completed epoch, self-contained and written atomically:

    RUN_DIR/checkpoints/epoch-0007/
        trainer.weights.h5   training-model weights, including the L-softmax `anneal_step`, and
                             the optimizer state (Adam moments and iteration count)
        last.keras           the classifier after this epoch
        best.keras           the classifier of the best validation epoch so far (a hard link)
        state.json           the trainer's state (epochs completed, history, best epoch) and the
                             states of the random generators (stochastic depth)

The folder is filled under a temporary name and renamed when complete, and older checkpoints are
deleted only after that, so a kill -9 at any moment leaves the previous checkpoint loadable.
`RUN_DIR/model_last.keras` and `model_best.keras` are hard links to the latest checkpoint's models,
replaced atomically. A lock keeps two processes from training one run folder at the same time.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from musicnext_tf.config import load_run_config
from musicnext_tf.errors import RunError  # noqa: F401  (raised here; re-exported)
from musicnext_tf.files import atomic_directory, exclusive_lock, link_or_copy, write_json

CHECKPOINTS = "checkpoints"
TRAINER_WEIGHTS = "trainer.weights.h5"
STATE = "state.json"
MODELS = ("best", "last")
_SEED_STATES = "seed_generator_states"
_CHECKPOINT_NAME = re.compile(r"epoch-(\d+)$")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Checkpoint:
    """A complete checkpoint folder and the number of epochs it has completed."""

    path: Path
    epoch: int

    def model_file(self, which: str) -> Path:
        return self.path / f"{which}.keras"

    def state(self) -> dict:
        """The trainer's state saved with the checkpoint (without the random generator states)."""
        state = json.loads((self.path / STATE).read_text())
        state.pop(_SEED_STATES, None)
        return state


def model_file(run_dir: str | os.PathLike, which: str) -> Path:
    """`RUN_DIR/model_best.keras` or `RUN_DIR/model_last.keras`."""
    if which not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {which!r}")
    return Path(run_dir) / f"model_{which}.keras"


def latest_checkpoint(run_dir: str | os.PathLike) -> Checkpoint | None:
    """The checkpoint with the most completed epochs, or None before the first epoch ends."""
    folder = Path(run_dir) / CHECKPOINTS
    found = []
    for path in folder.iterdir() if folder.is_dir() else ():
        match = _CHECKPOINT_NAME.match(path.name)
        if match and (path / STATE).is_file():
            found.append(Checkpoint(path, int(match.group(1))))
    return max(found, key=lambda checkpoint: checkpoint.epoch, default=None)


def uncompiled(classifier: keras.Model) -> keras.Model:
    """The classifier's layers as a model without optimizer, so that saving it writes only what
    inference needs (a compiled softmax classifier would also save its Adam moments)."""
    return keras.Model(classifier.input, classifier.output, name=classifier.name)


def save_checkpoint(
    run_dir: str | os.PathLike,
    epoch: int,
    trainer: keras.Model,
    classifier: keras.Model,
    state: dict,
    best_is_new: bool,
) -> Checkpoint:
    """Writes the checkpoint of `epoch` completed epochs atomically, deletes the older ones and
    publishes its models as `RUN_DIR/model_{best,last}.keras`.

    Args:
        trainer: the compiled training model (its weights and optimizer state are saved).
        classifier: the inference classifier (shares its weights with `trainer`).
        state: JSON-serialisable trainer state, returned by `restore_checkpoint`.
        best_is_new: this epoch is the new best one; otherwise the previous checkpoint's best
            model (if any) is carried over.
    """
    folder = Path(run_dir) / CHECKPOINTS
    folder.mkdir(parents=True, exist_ok=True)
    previous = latest_checkpoint(run_dir)
    checkpoint = Checkpoint(folder / f"epoch-{epoch:04d}", epoch)
    if checkpoint.path.exists():  # a folder without state.json (not ours) would block the rename
        shutil.rmtree(checkpoint.path)
    with atomic_directory(checkpoint.path) as temporary:
        trainer.save_weights(temporary / TRAINER_WEIGHTS)
        uncompiled(classifier).save(temporary / "last.keras")
        if best_is_new:
            link_or_copy(temporary / "last.keras", temporary / "best.keras")
        elif previous is not None and previous.model_file("best").exists():
            link_or_copy(previous.model_file("best"), temporary / "best.keras")
        seed_states = [np.asarray(v).tolist() for v in _seed_generator_states(trainer)]
        write_json(temporary / STATE, {**state, _SEED_STATES: seed_states})
    remove_stale(run_dir, keep=checkpoint)
    publish_models(run_dir, checkpoint)
    return checkpoint


def restore_checkpoint(checkpoint: Checkpoint, trainer: keras.Model) -> dict:
    """Loads a checkpoint into a freshly built, compiled training model; returns its state."""
    trainer.optimizer.build(trainer.trainable_variables)
    trainer.load_weights(checkpoint.path / TRAINER_WEIGHTS)
    saved = json.loads((checkpoint.path / STATE).read_text()).get(_SEED_STATES, [])
    variables = _seed_generator_states(trainer)
    if len(saved) != len(variables):
        raise RunError(
            f"{checkpoint.path}: holds {len(saved)} random generator state(s), the model has "
            f"{len(variables)}; the checkpoint does not belong to this configuration"
        )
    for variable, value in zip(variables, saved):
        variable.assign(np.asarray(value, dtype=variable.dtype))
    return checkpoint.state()


def publish_models(run_dir: str | os.PathLike, checkpoint: Checkpoint) -> None:
    """Points `RUN_DIR/model_{best,last}.keras` at the checkpoint's models (hard links)."""
    for which in MODELS:
        if checkpoint.model_file(which).exists():
            link_or_copy(checkpoint.model_file(which), model_file(run_dir, which))


def remove_stale(run_dir: str | os.PathLike, keep: Checkpoint | None) -> None:
    """Deletes checkpoints other than `keep` and temporary files a killed process left behind."""
    run_dir = Path(run_dir)
    folder = run_dir / CHECKPOINTS
    for path in folder.iterdir() if folder.is_dir() else ():
        if keep is None or path != keep.path:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    for path in run_dir.glob(".tmp-*"):
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def _seed_generator_states(model: keras.Model) -> list:
    """The state variables of the model's random generators (stochastic depth), in layer order.

    Keras does not save them with the weights; without them a resumed run would draw the
    dropped paths of its first epochs again."""
    return [v for v in model.non_trainable_variables if v.path.endswith("seed_generator_state")]


def run_lock(run_dir: str | os.PathLike):
    """Holds an exclusive lock on `RUN_DIR/.lock` while a process trains the run; a second
    process is refused. The system releases it however the process ends (kill -9 included)."""

    def refuse(holder: str) -> None:
        raise RunError(
            f"{run_dir} is being trained by another process"
            f"{f' (pid {holder})' if holder else ''}; wait for it to end or stop it first"
        )

    return exclusive_lock(Path(run_dir) / ".lock", on_busy=refuse)


def choose_model(run_dir: str | os.PathLike, which: str | None) -> str:
    """ "best" or "last": the one asked for, else the run's `[train] report_model` (the best by
    default) when the run kept it, else the last."""
    if which is None:
        preferred = load_run_config(run_dir).train.report_model
        which = preferred if model_file(run_dir, preferred).exists() else "last"
    if which not in MODELS:
        raise RunError(f"--model must be one of {MODELS}, got {which!r}")
    if model_file(run_dir, which).exists():
        return which
    if which == "best" and model_file(run_dir, "last").exists():
        raise RunError(
            f"{run_dir} has no best model: the run had no validation split ([data] "
            "validation_fraction = 0); use the last model with --model last"
        )
    raise RunError(
        f"{model_file(run_dir, which)} not found: no epoch of this run has completed yet; "
        f"continue it with `musicnext-tf fit --resume {run_dir}`"
    )


def model_epoch(run_dir: str | os.PathLike, which: str) -> int | None:
    """The epoch whose weights `model_{which}.keras` holds, from the latest checkpoint."""
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None:
        return None
    state = checkpoint.state()
    if which == "best":
        return (state.get("best") or {}).get("epoch")
    return state.get("epochs_completed")
