"""Training and inference throughput of the default MusicNeXt against a matmul ceiling.

FLOPs are counted analytically from the layer shapes (multiply-adds x 2 of the convolutions,
the pointwise (Dense) layers and the head; elementwise work such as ELU, adds and the
standardisation is not counted); a training step is taken as 3x the forward FLOPs (forward, input
gradients, weight gradients).

The ceiling is what this machine's float32 matmul reaches on the model's own GEMMs - the pointwise
1x1 convolutions and the patchify/downsampling convolutions written as GEMMs, at the benchmark's
batch size - timed alone in this process with the same thread settings. For training each GEMM is
timed in its three forms (forward, input gradient, weight gradient). A square 1024 x 1024 matmul is
timed as well and reported for context (the machine's usual matmul peak).
"""

from __future__ import annotations

import copy
import math
import time
from collections import Counter
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from benchmarks.results import Figure
from benchmarks.timing import best_time
from musicnext_tf.config import ExperimentConfig, resolve
from musicnext_tf.model import SEGMENTS_INPUT, build_model, needs_labels, training_model
from musicnext_tf.pipeline import model_inputs
from musicnext_tf.train import compile_for_training, layer_policy

FAMILY = "compute"
NUM_CLASSES = 10  # GTZAN's genres
SQUARE_SIZE = 1024


@dataclass
class Workbench:
    """The default MusicNeXt, compiled for training as `fit` compiles it, and a synthetic batch."""

    config: ExperimentConfig
    classifier: keras.Model
    trainer: keras.Model
    batch: tuple  # (x, y) in memory, as the training model takes it

    @property
    def batch_size(self) -> int:
        return self.config.train.batch_size


def build_workbench(batch_size: int, config: ExperimentConfig | None = None) -> Workbench:
    """The model of CONFIG (default: the GTZAN preset's, the paper's MusicNeXt) at `batch_size`,
    built and compiled as `fit` does it (Adam, the L-softmax loss, `[train] precision` and
    `jit_compile`)."""
    config = copy.deepcopy(config or resolve("gtzan"))
    config.train.batch_size = batch_size
    keras.utils.set_random_seed(0)
    policy = layer_policy(config.train)
    classifier = build_model(config.model, config.features, NUM_CLASSES, dtype=policy)
    trainer = training_model(classifier)
    compile_for_training(trainer, config.train)
    features = config.features
    rng = np.random.default_rng(0)
    segments = rng.normal(-30.0, 20.0, (batch_size, features.segment_frames, features.n_mels, 1))
    labels = rng.integers(0, NUM_CLASSES, batch_size).astype(np.int32)
    batch = model_inputs(segments.astype(np.float32), labels, needs_labels(trainer))
    return Workbench(config, classifier, trainer, batch)


def synthetic_dataset(bench: Workbench) -> tf.data.Dataset:
    """The in-memory batch, repeated: training input that costs nearly nothing to produce. It is
    re-batched so that its batch size is unknown to the graph, as the real pipeline's is, and the
    two share one traced train function."""
    dataset = tf.data.Dataset.from_tensor_slices(bench.batch).repeat()
    return dataset.batch(bench.batch_size).prefetch(1)


# ---------------------------------------------------------------------------------------- FLOPs


def layer_flops(layer: keras.layers.Layer) -> int:
    """Forward FLOPs (2 x multiply-adds) of one layer for one example; 0 for elementwise layers."""
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        height, width, channels = layer.output.shape[1:]
        return 2 * height * width * channels * math.prod(layer.kernel_size)
    if isinstance(layer, keras.layers.Conv2D):
        height, width, channels = layer.output.shape[1:]
        inputs = layer.input.shape[-1]
        return 2 * height * width * channels * math.prod(layer.kernel_size) * inputs
    if layer.name == "head" or isinstance(layer, keras.layers.Dense):
        positions = math.prod(layer.input.shape[1:-1])
        return 2 * positions * layer.input.shape[-1] * layer.output.shape[-1]
    return 0


def forward_flops(classifier: keras.Model) -> int:
    """Forward FLOPs of the classifier for one segment (the analytic count described above)."""
    return sum(layer_flops(layer) for layer in classifier.layers)


def gemm_shapes(classifier: keras.Model, batch_size: int) -> Counter:
    """{(M, K, N): count} of the GEMMs a forward pass of `batch_size` segments performs: the
    pointwise layers, and the non-depthwise convolutions in their im2col form."""
    shapes = Counter()
    for layer in classifier.layers:
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            continue
        if isinstance(layer, keras.layers.Conv2D):
            height, width, channels = layer.output.shape[1:]
            depth = math.prod(layer.kernel_size) * layer.input.shape[-1]
            shapes[(batch_size * height * width, depth, channels)] += 1
        elif isinstance(layer, keras.layers.Dense):
            positions = math.prod(layer.input.shape[1:-1])
            shapes[(batch_size * positions, layer.input.shape[-1], layer.output.shape[-1])] += 1
    return shapes


# --------------------------------------------------------------------------------- matmul ceiling


class GemmCeiling:
    """Float32 matmuls of the model's GEMM shapes, timed alone: each shape in its forward form,
    and for training also as input gradient [M, N] x [N, K] and weight gradient [K, M] x [M, N].

    `sample()` times every distinct product once and keeps the best time of each, so samples can
    be interleaved with the model's steps; `flops_per_s` weighs the products by how often the
    model performs them.
    """

    def __init__(self, shapes: Counter, training: bool, dtype: str = "float32"):
        self._products = []  # (count, flops, timed function)
        for (m, k, n), count in shapes.items():
            a, b, grad = (
                tf.cast(tf.random.normal(shape), dtype) for shape in ([m, k], [k, n], [m, n])
            )
            forms = [(a, b, False)]
            if training:
                forms += [(grad, tf.transpose(b), False), (a, grad, True)]
            for left, right, transpose_left in forms:
                self._products.append(
                    (count, 2 * m * k * n, _reduced_matmul(left, right, transpose_left))
                )
        self._best = [float("inf")] * len(self._products)

    def sample(self) -> None:
        for index, (_, _, product) in enumerate(self._products):
            if self._best[index] == float("inf"):
                product().numpy()  # trace and warm up
            start = time.perf_counter()
            product().numpy()
            self._best[index] = min(self._best[index], time.perf_counter() - start)

    @property
    def flops(self) -> int:
        return sum(count * flops for count, flops, _ in self._products)

    @property
    def flops_per_s(self) -> float:
        seconds = sum(count * best for (count, _, _), best in zip(self._products, self._best))
        return self.flops / seconds


def _reduced_matmul(left, right, transpose_left: bool):
    """A graph computing one matmul; a corner of the product is returned, so that no copy of it
    to numpy is timed."""

    @tf.function
    def product():
        return tf.reduce_sum(tf.matmul(left, right, transpose_a=transpose_left)[:1, :1])

    return product


def square_matmul_flops_per_s(size: int, repeats: int) -> float:
    """FLOP/s of one float32 [size, size] x [size, size] matmul: the machine's matmul peak."""
    product = _reduced_matmul(tf.random.normal([size, size]), tf.random.normal([size, size]), False)
    return 2 * size**3 / best_time(lambda: product().numpy(), repeats)


# ---------------------------------------------------------------------------- model throughput


class StepTimer(keras.callbacks.Callback):
    """Wall time of every training step, from `on_train_batch_begin` to `on_train_batch_end`
    (input fetching included); `between()`, if given, runs after each step, untimed."""

    def __init__(self, between=None):
        super().__init__()
        self.seconds: list[float] = []
        self._start = 0.0
        self._between = between

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)
        if self._between is not None:
            self._between()


def fit_step_seconds(
    bench: Workbench, dataset: tf.data.Dataset, steps: int, between=None
) -> list[float]:
    """Wall times of `steps` training steps of `fit` fed by `dataset`, after one untimed step
    (which traces the train function the first time, and fills the pipeline); `between()` runs
    after every step, untimed."""
    timer = StepTimer(between)
    bench.trainer.fit(
        dataset, epochs=1, steps_per_epoch=steps + 1, callbacks=[timer], verbose=0, shuffle=False
    )
    return timer.seconds[1:]


def inference_seconds(bench: Workbench, repeats: int, between) -> float:
    """Best time of the classifier's forward pass on the batch (training=False, in a graph) over
    `repeats` passes after a warm-up; `between()` runs after every pass, untimed."""
    x = bench.batch[0]
    segments = tf.constant(x[SEGMENTS_INPUT] if isinstance(x, dict) else x)
    forward = tf.function(lambda s: bench.classifier(s, training=False))
    forward(segments).numpy()
    best = float("inf")
    for _ in range(repeats):
        best = min(best, best_time(lambda: forward(segments).numpy(), repeats=1, warmup=0))
        between()
    return best


def run(bench: Workbench, repeats: int, train_steps: int) -> list[Figure]:
    """Training (steps of `fit` on the in-memory batch) and inference segments/s and FLOP/s
    against the GEMM ceiling, each step alternating with a sample of its ceiling; the square
    matmul peak for context."""
    batch = bench.batch_size
    flops = forward_flops(bench.classifier)
    shapes = gemm_shapes(bench.classifier, batch)
    figures = []
    dtype = keras.DTypePolicy(layer_policy(bench.config.train) or "float32").compute_dtype
    for mode, multiplier in (("training", 3), ("inference", 1)):
        ceiling = GemmCeiling(shapes, training=mode == "training", dtype=dtype)
        if mode == "training":
            steps = fit_step_seconds(bench, synthetic_dataset(bench), train_steps, ceiling.sample)
            seconds = min(steps)
        else:
            seconds = inference_seconds(bench, repeats, ceiling.sample)
        achieved = multiplier * flops * batch / seconds
        figures.append(
            Figure(
                FAMILY,
                f"{mode} FLOP/s / GEMM ceiling",
                achieved / ceiling.flops_per_s,
                target=0.85 if mode == "training" else 0.90,
                details={
                    "batch_size": batch,
                    "step_seconds": seconds,
                    "segments_per_s": batch / seconds,
                    "flops_per_segment": multiplier * flops,
                    "achieved_flops_per_s": achieved,
                    "ceiling_flops_per_s": ceiling.flops_per_s,
                    "gemm_share_of_flops": ceiling.flops / (multiplier * flops * batch),
                    "compute_dtype": dtype,
                },
                note=None
                if dtype == "float32"
                else f"the ceiling's GEMMs in {dtype}, as the model's",
            )
        )
        figures.append(
            Figure(FAMILY, f"{mode} segments/s (batch {batch})", batch / seconds, unit="seg/s")
        )
    peak = square_matmul_flops_per_s(SQUARE_SIZE, 10 * repeats)  # a few ms each
    ceiling = figures[0].details["ceiling_flops_per_s"]
    figures.append(
        Figure(
            FAMILY,
            f"training GEMM ceiling / square {SQUARE_SIZE} matmul",
            ceiling / peak,
            details={"square_flops_per_s": peak},
            note=f"the model's GEMMs alone (96-3072 channels) reach {ceiling / 1e9:.0f} GFLOP/s, "
            f"this share of a square {SQUARE_SIZE} matmul's {peak / 1e9:.0f} GFLOP/s",
        )
    )
    return figures
