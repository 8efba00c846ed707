"""The building blocks every architecture shares: the standardised input, the patchify stem,
downsampling, stacked stages with linearly rising stochastic depth, and the classification head.

MusicNeXt (`model`) and the paper's baselines (`baselines`) are wired from these, so neither
architecture module imports the other.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from musicnext_tf.layers import LSoftmax

SEGMENTS_INPUT = "segments"
HEADS = ("lsoftmax", "softmax")


def stem(x, width: int, kernel: int, dtype=None):
    """Patchify stem: non-overlapping `kernel` x `kernel` convolution (ConvNeXt), no normalisation."""
    return keras.layers.Conv2D(width, kernel, strides=kernel, name="stem_conv", dtype=dtype)(x)


def downsample(x, width: int, name: str, dtype=None):
    """Halves time and frequency with a 2x2 stride-2 convolution between stages."""
    return keras.layers.Conv2D(width, 2, strides=2, name=f"{name}_conv", dtype=dtype)(x)


def standardized_segments(
    input_shape: Sequence[int], input_mean: float, input_std: float, dtype=None
):
    """The classifier's input and its standardisation with the training set's statistics.

    Every architecture starts this way, so a SavedModel carries the statistics to serving.
    Returns:
        (the "segments" `keras.Input` [batch, time, mel, 1], the standardised tensor).
    """
    segments = keras.Input(shape=tuple(input_shape), name=SEGMENTS_INPUT)
    standardized = keras.layers.Normalization(
        axis=None,
        mean=float(input_mean),
        variance=float(input_std) ** 2,
        name="input_standardization",
        dtype=dtype,
    )(segments)
    return segments, standardized


def drop_path_rates(depths: Sequence[int], drop_path: float) -> list[list[float]]:
    """Stochastic-depth rate of every block, per stage: rising linearly from 0 to `drop_path`
    over all blocks of the network (ConvNeXt's rule)."""
    total = sum(depths)
    rates = [drop_path * index / max(1, total - 1) for index in range(total)]
    starts = [sum(depths[:stage]) for stage in range(len(depths))]
    return [rates[start : start + depth] for start, depth in zip(starts, depths)]


def stacked_stages(x, depths, widths, drop_path: float, block, downsample_stage):
    """The stages of a ConvNeXt-style network: `depths[s]` blocks of `widths[s]` channels per
    stage, with `downsample_stage(x, width, name)` before every stage but the first.

    `block(x, width, name=..., drop_path=...)` builds one residual block; blocks are named
    `stage_{s}_block_{b}` and their stochastic-depth rates rise linearly over the network.
    """
    for stage, (width, rates) in enumerate(zip(widths, drop_path_rates(depths, drop_path))):
        if stage > 0:
            x = downsample_stage(x, width, name=f"stage_{stage}_downsample")
        for index, rate in enumerate(rates):
            x = block(x, width, name=f"stage_{stage}_block_{index}", drop_path=rate)
    return x


def classification_head(pooled, num_classes: int, head: str, margin: int = 4, **lambda_schedule):
    """The genre-sensitive adjustment layer (L-softmax, no bias) or a plain softmax dense layer."""
    if head == "lsoftmax":
        return LSoftmax(num_classes, margin=margin, name="head", **lambda_schedule)(pooled)
    if head == "softmax":
        return keras.layers.Dense(num_classes, name="head", dtype="float32")(pooled)
    raise ValueError(f"head must be one of {HEADS}, got {head!r}")
