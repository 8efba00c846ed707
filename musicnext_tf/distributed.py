"""Distributed training on TensorFlow's own engine: `[train] strategy` (`fit --strategy`).

    default       one device: the GPU if there is one, else the CPU
    mirrored      every local GPU (every logical CPU device without a GPU), one replica each,
                  synchronous all-reduce (`tf.distribute.MirroredStrategy`)
    multi-worker  several processes, usually one per host, each with its local devices
                  (`tf.distribute.MultiWorkerMirroredStrategy`), configured by the standard
                  `TF_CONFIG` environment variable

One replica trains with `model.fit`. Several replicas train with `fit_distributed`, because
`model.fit` fails under MultiWorkerMirroredStrategy with TensorFlow 2.21 and Keras 3.15 while it
builds the model ("Invalid reduction dimension 0"; tensorflow issue 72388, keras issue 20585) and
under MirroredStrategy as soon as a batch does not split evenly over the replicas. It is the same
training: a distributed step (`strategy.run` over the Keras model with its compiled loss, metrics
and optimizer) and the same Keras callbacks, called as `fit` calls them.

`[train] batch_size` is the global batch: every batch of the single-device stream is cut into one
consecutive part per replica (`replica_rows`), so the replicas together train on exactly the
batches one device would. When the batch size does not divide by the number of replicas the parts
differ by one segment; each replica's loss is its examples' summed loss divided by the size of the
whole batch, so the all-reduced gradient is the whole batch's gradient in every case (the smaller
last batch of an epoch included). Each worker reads the whole training stream and keeps its
replicas' rows, so the epochs stay the seeded, reproducible ones of `pipeline`.

Multi-worker: the chief (task "chief", else worker 0) is the only process that writes (run folder,
checkpoints, TensorBoard logs, test report); the other workers train in lock-step and write
nothing. A resumed run restores every worker from the latest checkpoint, so RUN_DIR must be on a
file system all workers share (or a copy of it at the same path on each); `check_same_start`
stops a run whose workers found different checkpoints. `MultiWorkerMirroredStrategy` must be
created before TensorFlow runs its first operation in the process, so `train.fit` and
`train.resume` call `create_strategy` before anything else.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from musicnext_tf.config import STRATEGIES, ConfigError
from musicnext_tf.model import objective_logits
from musicnext_tf.run_folder import latest_checkpoint

TF_CONFIG = "TF_CONFIG"
log = logging.getLogger(__name__)
_TF_CONFIG_EXAMPLE = (
    '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", '
    '"index": 0}}'
)


@dataclass(frozen=True)
class WorkerRole:
    """This process's place in the cluster: `index` of `count` workers; the chief writes."""

    index: int = 0
    count: int = 1
    is_chief: bool = True


def create_strategy(name: str) -> tf.distribute.Strategy:
    """The `tf.distribute` strategy called `name` (one of `STRATEGIES`).

    Raises:
        ConfigError: an unknown name, or `multi-worker` without a usable `TF_CONFIG`.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([device.name for device in devices])
    if name == "multi-worker":
        cluster_role(os.environ.get(TF_CONFIG))  # a clear error before TensorFlow reads it
        try:
            return tf.distribute.MultiWorkerMirroredStrategy()
        except RuntimeError as error:  # "Collective ops must be configured at program startup"
            raise RuntimeError(
                "the multi-worker strategy must be created before TensorFlow runs any operation "
                f"in this process; start a new process for the run ({error})"
            ) from error
    raise ConfigError(f"[train] strategy = {name!r} is not one of {list(STRATEGIES)}")


def cluster_role(tf_config: str | None) -> WorkerRole:
    """This process's role as the `TF_CONFIG` text describes it (the chief is task "chief", or
    worker 0 in a cluster without one).

    Raises:
        ConfigError: TF_CONFIG is missing, not JSON, or names no valid task of its cluster.
    """
    fix = f"set it on every worker, e.g. TF_CONFIG='{_TF_CONFIG_EXAMPLE}'"
    if not tf_config:
        raise ConfigError(
            f"--strategy multi-worker needs the {TF_CONFIG} environment variable; {fix} (or "
            "train on this host alone with --strategy default or mirrored)"
        )
    try:
        values = json.loads(tf_config)
        cluster, task = values["cluster"], values["task"]
        task_type, index = task["type"], int(task["index"])
        tasks = list(cluster.get("chief", [])) + list(cluster.get("worker", []))
        position = index + (len(cluster.get("chief", [])) if task_type == "worker" else 0)
        if task_type not in ("chief", "worker") or not 0 <= index < len(cluster[task_type]):
            raise ValueError(f"task {task} is not a chief or worker of the cluster")
    except (ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"{TF_CONFIG} is not usable ({error}); {fix}") from None
    return WorkerRole(position, len(tasks), position == 0)


def worker_role(strategy: tf.distribute.Strategy) -> WorkerRole:
    """This process's role: the only worker of a single-process strategy, or its `TF_CONFIG` task."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return WorkerRole()
    return cluster_role(os.environ.get(TF_CONFIG))


def replica_rows(rows, replica, replicas):
    """The rows [start, stop) of a batch of `rows` rows that `replica` of `replicas` trains on:
    consecutive parts whose sizes differ by at most one."""
    return rows * replica // replicas, rows * (replica + 1) // replicas


def replica_part(x, y, replica, replicas):
    """`replica`'s part of the batch (x, y) as (x, y, weights).

    A part never has zero rows (a batch smaller than the number of replicas, at the end of an
    epoch): an empty part is the batch's last row with weight 0, since some kernels (oneDNN's
    fused convolutions on CPU) fail on empty batches."""
    rows = tf.shape(y)[0]
    start, stop = replica_rows(rows, replica, replicas)
    taken = tf.maximum(stop - start, 1)
    indices = tf.minimum(tf.range(start, start + taken), rows - 1)
    weights = tf.cast(tf.range(taken) < stop - start, tf.float32)
    x, y = tf.nest.map_structure(lambda tensor: tf.gather(tensor, indices), (x, y))
    return x, y, weights


def distribute_batches(
    dataset: tf.data.Dataset, strategy: tf.distribute.Strategy
) -> tf.distribute.DistributedDataset:
    """Cuts every (x, y) batch of `dataset` into one part per replica of `strategy`.

    Each worker keeps the parts of its own replicas, in the order of their replica ids; a part
    comes as ((x, y, weights), rows of the whole batch as float32), see `replica_part`.
    """
    replicas = strategy.num_replicas_in_sync

    def worker_stream(context: tf.distribute.InputContext) -> tf.data.Dataset:
        local = replicas // context.num_input_pipelines
        first = context.input_pipeline_id * local

        def parts(x, y):
            def part(local_replica):
                replica = first + tf.cast(local_replica, tf.int32)
                return replica_part(x, y, replica, replicas), tf.cast(tf.shape(y)[0], tf.float32)

            return tf.data.Dataset.range(local).map(part)

        return dataset.flat_map(parts).prefetch(tf.data.AUTOTUNE)

    return strategy.distribute_datasets_from_function(worker_stream)


def from_data_service(dataset: tf.data.Dataset, service: str) -> tf.data.Dataset:
    """`dataset`'s elements, produced by the tf.data service whose dispatcher is at `service`
    ("grpc://HOST:PORT") instead of by this process: the service's worker reads the feature cache,
    shuffles, augments and batches; this process only receives the batches.

    The service's workers must see the feature cache at the same path. Each of them produces
    the whole stream (processing mode OFF, the only one that keeps the seeded order), so every
    batch comes once and in order when the dispatcher has one worker: run one dispatcher and one
    worker for each training process (see README, Distributed training).
    """
    return dataset.apply(
        tf.data.experimental.service.distribute(
            processing_mode=tf.data.experimental.service.ShardingPolicy.OFF, service=service
        )
    )


def evaluate_locally(model: keras.Model, strategy: tf.distribute.Strategy) -> None:
    """Lets `model.predict` run in this process alone under the multi-worker strategy.

    Keras spreads `predict` over the strategy the model was built under; the chief evaluates
    (validation metrics, TensorBoard) while the other workers wait for the next training step,
    so it must predict on its own copy of the mirrored weights instead."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        model._distribute_strategy = None  # Keras then uses the default strategy


def check_same_start(strategy: tf.distribute.Strategy, run_dir: str | os.PathLike) -> None:
    """Stops a multi-worker run whose workers find different checkpoints in RUN_DIR (a folder
    they do not share), before anything is restored: workers that restored different states
    would no longer run the same collective operations, and would fail or hang.

    Raises:
        RuntimeError: on every worker, naming the epochs each one found.
    """
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return
    checkpoint = latest_checkpoint(run_dir)
    found = checkpoint.epoch if checkpoint else 0
    epochs = np.asarray(_replica_gatherer(strategy)(found)).tolist()
    if len(set(epochs)) > 1:
        raise RuntimeError(
            f"the workers found different checkpoints in {run_dir} (epochs completed per replica: "
            f"{epochs}); resuming needs RUN_DIR on a file system all workers share, or a copy of "
            "the chief's run folder at the same path on every worker"
        )


def fit_model(
    trainer: keras.Model,
    dataset: tf.data.Dataset,
    strategy: tf.distribute.Strategy,
    *,
    epochs: int,
    initial_epoch: int,
    steps_per_epoch: int,
    callbacks: Sequence[keras.callbacks.Callback],
    verbose: int,
) -> keras.callbacks.History:
    """Trains `trainer` (built under `strategy.scope()`) on the global batches of `dataset`:
    `model.fit` on one replica, `fit_distributed` on several or on several workers.

    `model.fit` is not used with several replicas: under MultiWorkerMirroredStrategy it fails
    while building the model, under MirroredStrategy as soon as a batch does not split evenly
    over the replicas (an `AddN` shape error with TensorFlow 2.21 and Keras 3.15)."""
    arguments = dict(
        epochs=epochs,
        initial_epoch=initial_epoch,
        steps_per_epoch=steps_per_epoch,
        callbacks=callbacks,
        verbose=verbose,
    )
    if strategy.num_replicas_in_sync > 1 or isinstance(
        strategy, tf.distribute.MultiWorkerMirroredStrategy
    ):
        return fit_distributed(trainer, dataset, strategy, **arguments)
    return trainer.fit(dataset, shuffle=False, **arguments)  # the pipeline shuffles, reproducibly


def fit_distributed(
    trainer: keras.Model,
    dataset: tf.data.Dataset,
    strategy: tf.distribute.Strategy,
    *,
    epochs: int,
    initial_epoch: int,
    steps_per_epoch: int,
    callbacks: Sequence[keras.callbacks.Callback],
    verbose: int,
) -> keras.callbacks.History:
    """`model.fit` for a model built under `strategy.scope()`, with a distributed training step.

    The compiled loss (a `keras.losses.Loss`), metrics and optimizer train on the global batches
    of `dataset`; callbacks see the same calls and epoch logs as under `fit`. Every worker runs
    this with the same arguments (the callbacks may differ); a callback that stops training on
    one worker stops all of them after that epoch.
    """
    if not isinstance(trainer.loss, keras.losses.Loss):
        raise TypeError(f"distributed training needs a keras.losses.Loss, got {trainer.loss!r}")
    _build_training_state(trainer, dataset, strategy)
    train_step = _distributed_train_step(trainer, strategy)
    any_worker = _any_worker_function(strategy)
    batches = iter(distribute_batches(dataset, strategy))
    callback_list = keras.callbacks.CallbackList(
        list(callbacks),
        add_history=True,
        add_progbar=verbose != 0,
        verbose=verbose,
        epochs=epochs,
        steps=steps_per_epoch,
        model=trainer,
    )
    trainer.stop_training = False
    callback_list.on_train_begin()
    logs: dict = {}
    for epoch in range(initial_epoch, epochs):
        trainer.reset_metrics()
        callback_list.on_epoch_begin(epoch)
        for step in range(steps_per_epoch):
            callback_list.on_train_batch_begin(step)
            logs = _python_logs(train_step(batches))
            callback_list.on_train_batch_end(step, logs)
        logs = dict(logs)
        callback_list.on_epoch_end(epoch, logs)
        if any_worker(trainer.stop_training):
            break
    callback_list.on_train_end(logs)
    return trainer.history


def _build_training_state(
    trainer: keras.Model, dataset: tf.data.Dataset, strategy: tf.distribute.Strategy
) -> None:
    """Creates the optimizer's and the metrics' variables under the strategy, in the same order
    on every worker (creating a variable is a collective operation there)."""
    with strategy.scope():
        if not trainer.optimizer.built:
            trainer.optimizer.build(trainer.trainable_variables)
        x, y = tf.nest.map_structure(
            lambda spec: tf.zeros([1, *spec.shape[1:]], spec.dtype), dataset.element_spec
        )
        trainer.compute_metrics(x, y, trainer(x, training=False))
        trainer.reset_metrics()


def _distributed_train_step(trainer: keras.Model, strategy: tf.distribute.Strategy):
    """One synchronous step on every replica: forward, loss of the global batch, all-reduced
    gradients (the optimizer sums them across replicas), metric updates; returns the metrics.
    Compiled with XLA on GPUs when the model was compiled so (`[train] jit_compile`)."""
    variables = trainer.trainable_variables
    loss_tracker = next(metric for metric in trainer.metrics if metric.name == "loss")

    def update(x, y, weights, batch_rows):
        """Forward and backward pass, all-reduce, optimizer step; returns the predictions and
        the weighted per-example losses."""
        with tf.GradientTape() as tape:
            y_pred = trainer(x, training=True)
            per_example = tf.cast(trainer.loss.call(y, objective_logits(y_pred)), tf.float32)
            per_example *= weights
            loss = tf.reduce_sum(per_example) / batch_rows
            if trainer.losses:  # regularisation, counted once over all replicas
                loss += tf.add_n(trainer.losses) / strategy.num_replicas_in_sync
            scaled = trainer.optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled, variables)
        trainer.optimizer.apply_gradients(zip(gradients, variables))
        return y_pred, per_example

    if trainer.jit_compile and tf.config.list_logical_devices("GPU"):
        # XLA, as `fit` compiles its per-replica step; TensorFlow 2.21 has no XLA collectives
        # (the gradients' all-reduce) on CPU devices
        update = tf.function(update, jit_compile=True, reduce_retracing=True)
    elif trainer.jit_compile:
        log.warning("[train] jit_compile is ignored on CPU devices with several replicas")

    def replica_step(part, batch_rows):
        x, y, weights = part
        y_pred, per_example = update(x, y, weights, batch_rows)
        rows = tf.reduce_sum(weights)
        loss_tracker.update_state(
            tf.math.divide_no_nan(tf.reduce_sum(per_example), rows), sample_weight=rows
        )
        kept = weights > 0  # the compiled metrics are unweighted: leave the padding out
        trainer.compute_metrics(
            x,
            tf.boolean_mask(y, kept),
            tf.nest.map_structure(lambda t: tf.boolean_mask(t, kept), y_pred),
        )

    @tf.function
    def train_step(iterator):
        part, batch_rows = next(iterator)
        strategy.run(replica_step, args=(part, batch_rows))
        return trainer.get_metrics_result()  # reduced over all replicas

    return train_step


def _python_logs(logs: dict) -> dict:
    return {
        name: float(value) if np.ndim(value) == 0 else np.asarray(value)
        for name, value in logs.items()
    }


def _any_worker_function(strategy: tf.distribute.Strategy):
    """flag -> whether `flag` is true on any worker (a collective: every worker must call it)."""
    gather = _replica_gatherer(strategy)
    return lambda flag: bool(np.max(gather(int(bool(flag)))) > 0)


def _replica_gatherer(strategy: tf.distribute.Strategy):
    """value -> every replica's value (this process's for its replicas) as one int64 vector."""

    @tf.function
    def gather(value):
        return strategy.gather(strategy.run(lambda: tf.reshape(value, [1])), axis=0)

    return lambda value: gather(tf.constant(value, tf.int64))
