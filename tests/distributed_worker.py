"""One training process of test_distributed.py: a worker of a multi-worker run, or a mirrored run.

    python distributed_worker.py DATA_DIR CACHE_DIR RUN_DIR WEIGHTS [--strategy NAME] [--cpus N]
                                 [--resume] [--stop-at-epoch N]

Trains `run_config`'s tiny run (or resumes RUN_DIR) with the strategy (default: multi-worker, as
TF_CONFIG describes) and saves the training model's final weights to WEIGHTS (.npz), on every
worker. --cpus N splits the CPU into N logical devices (N replicas for `mirrored`). With
--stop-at-epoch N every worker raises `Stopped` as epoch N begins (after epoch N-1's checkpoint),
like a job that dies there, and the process exits with `STOPPED_EXIT_CODE`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from helpers import tiny_config

from musicnext_tf import train

STOPPED_EXIT_CODE = 3


def run_config(data_dir: Path, cache_dir: Path, strategy: str):
    """The run both the workers and the single-process reference train: 2 epochs, a validation
    split (the chief evaluates it alone) and a batch of 5 segments, which splits unevenly over two
    workers and leaves a last batch of one segment (one worker's part is empty)."""
    return tiny_config(
        data_dir,
        data={"cache_dir": str(cache_dir), "validation_fraction": 0.2},
        train={"epochs": 2, "batch_size": 5, "strategy": strategy},
    )


class Stopped(RuntimeError):
    """Raised by `StopAtEpoch` on every worker."""


class StopAtEpoch(keras.callbacks.Callback):
    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            raise Stopped(f"stopped as epoch {self.epoch} began")


class SaveWeights(keras.callbacks.Callback):
    """Saves the training model's weights (in `get_weights` order) when training ends."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = path

    def on_train_end(self, logs=None):
        np.savez(self.path, *self.model.get_weights())


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    for name in ("data_dir", "cache_dir", "run_dir", "weights"):
        parser.add_argument(name, type=Path)
    parser.add_argument("--strategy", default="multi-worker")
    parser.add_argument("--cpus", type=int)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--stop-at-epoch", type=int)
    args = parser.parse_args(argv)
    if args.cpus:
        devices = [tf.config.LogicalDeviceConfiguration()] * args.cpus
        tf.config.set_logical_device_configuration(
            tf.config.list_physical_devices("CPU")[0], devices
        )
    callbacks = [SaveWeights(args.weights)]
    if args.stop_at_epoch:
        callbacks.append(StopAtEpoch(args.stop_at_epoch))
    try:
        if args.resume:
            result = train.resume(
                args.run_dir, progress=False, callbacks=callbacks, strategy=args.strategy
            )
        else:
            config = run_config(args.data_dir, args.cache_dir, args.strategy)
            result = train.fit(config, args.run_dir, progress=False, callbacks=callbacks)
    except Stopped as stopped:
        print(stopped, flush=True)
        return STOPPED_EXIT_CODE
    print(result, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
