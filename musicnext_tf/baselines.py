"""The baseline networks of the paper's ablation: ConvNeXt-T and a ResNet-50-style network.

Both read the same standardised 1-channel log-mel segments as MusicNeXt and end in the same
heads (softmax or L-softmax), so the ablation changes only the feature extractor. They follow the
classifier contract of `musicnext_tf.model`: input "segments", a layer named "pooling" whose output
is the head's input (the pooled features), a head layer named "head" and plain-logit output, so
`training_model` and `embedding_model` work unchanged.

Reference: Z. Liu et al., "A ConvNet for the 2020s", CVPR 2022 (ConvNeXt);
K. He et al., "Deep Residual Learning for Image Recognition", CVPR 2016 (ResNet).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import keras

from musicnext_tf import blocks
from musicnext_tf.layers import LayerScale, StochasticDepth

LAYER_NORM_EPSILON = 1e-6  # ConvNeXt's
BATCH_NORM_MOMENTUM = 0.9  # the usual ResNet value; Keras' 0.99 lags far behind in short runs
BATCH_NORM_EPSILON = 1e-5


def _layer_norm(x, name: str, dtype=None):
    return keras.layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name=name, dtype=dtype)(x)


def _batch_norm(x, name: str, dtype=None):
    return keras.layers.BatchNormalization(
        momentum=BATCH_NORM_MOMENTUM, epsilon=BATCH_NORM_EPSILON, name=name, dtype=dtype
    )(x)


def _classifier(segments, pooled, num_classes: int, head: str, name: str, **head_options):
    """Adds the head to the pooled features and wraps the graph as a classifier model."""
    logits = blocks.classification_head(pooled, num_classes, head, **head_options)
    return keras.Model(segments, logits, name=name)


def convnext_block(
    x,
    width: int,
    name: str,
    kernel_size: int = 7,
    expansion: int = 4,
    layer_scale: float | None = 1e-6,
    drop_path: float = 0.0,
    dtype=None,
):
    """Depthwise k x k -> LayerNorm -> 1x1 to expansion*C -> GELU -> 1x1 back to C -> LayerScale,
    added to the input (the ConvNeXt block)."""
    branch = keras.layers.DepthwiseConv2D(
        kernel_size, padding="same", name=f"{name}_depthwise_conv", dtype=dtype
    )(x)
    branch = _layer_norm(branch, f"{name}_norm", dtype)
    branch = keras.layers.Dense(expansion * width, name=f"{name}_pointwise_conv_1", dtype=dtype)(
        branch
    )
    branch = keras.layers.Activation("gelu", name=f"{name}_gelu", dtype=dtype)(branch)
    branch = keras.layers.Dense(width, name=f"{name}_pointwise_conv_2", dtype=dtype)(branch)
    if layer_scale:
        branch = LayerScale(layer_scale, name=f"{name}_layer_scale", dtype=dtype)(branch)
    if drop_path:
        branch = StochasticDepth(drop_path, name=f"{name}_drop_path", dtype=dtype)(branch)
    return keras.layers.Add(name=f"{name}_add", dtype=dtype)([x, branch])


def ConvNeXt(
    num_classes: int,
    input_shape: Sequence[int] = (256, 128, 1),
    depths: Sequence[int] = (3, 3, 9, 3),
    widths: Sequence[int] = (96, 192, 384, 768),
    stem_kernel: int = 4,
    kernel_size: int = 7,
    expansion: int = 4,
    layer_scale: float | None = 1e-6,
    drop_path: float = 0.0,
    head: str = "lsoftmax",
    input_mean: float = 0.0,
    input_std: float = 1.0,
    dtype=None,
    name: str = "convnext",
    **head_options,
) -> keras.Model:
    """Builds ConvNeXt (default ConvNeXt-T): log-mel segments [batch, time, mel, 1] -> logits.

    The stem and the downsampling convolutions are MusicNeXt's, each with ConvNeXt's LayerNorm
    (after the stem, before each downsampling); the pooled features are layer-normalised too.

    Args:
        num_classes: number of genres.
        depths, widths: blocks and channels per stage (ConvNeXt-T: 3:3:9:3, 96-768).
        layer_scale: initial LayerScale value (ConvNeXt: 1e-6); None or 0 for none.
        drop_path: final stochastic-depth rate, increased linearly over the blocks.
        head: "lsoftmax" or "softmax"; `head_options` (margin, lambda_*) go to the head.
        input_mean, input_std: training-set statistics of the log-mel values (dB).
        dtype: Keras dtype policy for the body; the L-softmax head stays float32.
    Returns:
        A functional `keras.Model` with input "segments" and plain-logit output. Its layer
        "pooling" is the LayerNorm of the globally averaged features: the head's input.
    """
    if len(depths) != len(widths):
        raise ValueError(f"depths {list(depths)} and widths {list(widths)} must have equal length")
    segments, x = blocks.standardized_segments(input_shape, input_mean, input_std, dtype)
    x = blocks.stem(x, widths[0], stem_kernel, dtype=dtype)
    x = _layer_norm(x, "stem_norm", dtype)
    block = functools.partial(
        convnext_block,
        kernel_size=kernel_size,
        expansion=expansion,
        layer_scale=layer_scale,
        dtype=dtype,
    )

    def normalize_and_downsample(x, width, name):
        return blocks.downsample(_layer_norm(x, f"{name}_norm", dtype), width, name, dtype=dtype)

    x = blocks.stacked_stages(x, depths, widths, drop_path, block, normalize_and_downsample)
    x = keras.layers.GlobalAveragePooling2D(name="global_average_pooling", dtype=dtype)(x)
    pooled = _layer_norm(x, "pooling", "float32")  # float32: the embedding and the head's input
    return _classifier(segments, pooled, num_classes, head, name, **head_options)


def resnet_stem(x, width: int, dtype=None):
    """7x7 stride-2 convolution, BatchNorm, ReLU and a 3x3 stride-2 max pooling: 4x smaller."""
    x = keras.layers.ZeroPadding2D(3, name="stem_pad", dtype=dtype)(x)
    x = keras.layers.Conv2D(width, 7, strides=2, use_bias=False, name="stem_conv", dtype=dtype)(x)
    x = _batch_norm(x, "stem_bn", dtype)
    x = keras.layers.ReLU(name="stem_relu", dtype=dtype)(x)
    x = keras.layers.ZeroPadding2D(1, name="stem_pool_pad", dtype=dtype)(x)
    return keras.layers.MaxPooling2D(3, strides=2, name="stem_pool", dtype=dtype)(x)


def bottleneck_block(
    x,
    width: int,
    name: str,
    stride: int = 1,
    expansion: int = 4,
    drop_path: float = 0.0,
    dtype=None,
):
    """1x1 to `width` -> 3x3 (stride here, as in ResNet v1.5) -> 1x1 to expansion*width, each
    convolution followed by BatchNorm and all but the last by ReLU; added to the input (through a
    1x1 projection with BatchNorm when the shape changes), then ReLU. Convolutions have no bias:
    BatchNorm's offset replaces it."""
    out_channels = expansion * width
    shortcut = x
    if stride != 1 or x.shape[-1] != out_channels:
        shortcut = keras.layers.Conv2D(
            out_channels,
            1,
            strides=stride,
            use_bias=False,
            name=f"{name}_projection_conv",
            dtype=dtype,
        )(x)
        shortcut = _batch_norm(shortcut, f"{name}_projection_bn", dtype)
    branch = x
    for index, (channels, kernel, step) in enumerate(
        [(width, 1, 1), (width, 3, stride), (out_channels, 1, 1)], start=1
    ):
        if kernel > 1:
            branch = keras.layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad", dtype=dtype)(
                branch
            )
        branch = keras.layers.Conv2D(
            channels, kernel, strides=step, use_bias=False, name=f"{name}_conv_{index}", dtype=dtype
        )(branch)
        branch = _batch_norm(branch, f"{name}_bn_{index}", dtype)
        if index < 3:
            branch = keras.layers.ReLU(name=f"{name}_relu_{index}", dtype=dtype)(branch)
    if drop_path:
        branch = StochasticDepth(drop_path, name=f"{name}_drop_path", dtype=dtype)(branch)
    x = keras.layers.Add(name=f"{name}_add", dtype=dtype)([shortcut, branch])
    return keras.layers.ReLU(name=f"{name}_out", dtype=dtype)(x)


def ResNet(
    num_classes: int,
    input_shape: Sequence[int] = (256, 128, 1),
    depths: Sequence[int] = (3, 4, 6, 3),
    widths: Sequence[int] = (64, 128, 256, 512),
    expansion: int = 4,
    drop_path: float = 0.0,
    head: str = "lsoftmax",
    input_mean: float = 0.0,
    input_std: float = 1.0,
    dtype=None,
    name: str = "resnet",
    **head_options,
) -> keras.Model:
    """Builds a ResNet with bottleneck blocks (default ResNet-50): segments -> logits.

    Args:
        num_classes: number of genres.
        depths: bottleneck blocks per stage (ResNet-50: 3:4:6:3).
        widths: bottleneck widths per stage (ResNet-50: 64-512); stage s outputs
            expansion * widths[s] channels; the stem has widths[0] channels.
        drop_path: final stochastic-depth rate (0: none, as in the original ResNet).
        head: "lsoftmax" or "softmax"; `head_options` (margin, lambda_*) go to the head.
        input_mean, input_std: training-set statistics of the log-mel values (dB).
        dtype: Keras dtype policy for the body; the L-softmax head stays float32.
    Returns:
        A functional `keras.Model` with input "segments" and plain-logit output; its global
        average pooling is the layer "pooling". A 256 x 128 input ends at an 8 x 4 feature map,
        as in MusicNeXt.
    """
    if len(depths) != len(widths):
        raise ValueError(f"depths {list(depths)} and widths {list(widths)} must have equal length")
    segments, x = blocks.standardized_segments(input_shape, input_mean, input_std, dtype)
    x = resnet_stem(x, widths[0], dtype)
    for stage, (width, rates) in enumerate(zip(widths, blocks.drop_path_rates(depths, drop_path))):
        for block, rate in enumerate(rates):
            x = bottleneck_block(
                x,
                width,
                name=f"stage_{stage}_block_{block}",
                stride=2 if stage > 0 and block == 0 else 1,
                expansion=expansion,
                drop_path=rate,
                dtype=dtype,
            )
    # float32 from here on, whatever the body's policy: the embedding and the head's input
    pooled = keras.layers.GlobalAveragePooling2D(name="pooling", dtype="float32")(x)
    return _classifier(segments, pooled, num_classes, head, name, **head_options)
