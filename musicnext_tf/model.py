"""MusicNeXt: a ConvNeXt-style CNN without normalisation, with ELU and an L-softmax head.

The network is a functional Keras model wired by small block functions, in the manner of
`keras.applications.convnext`: stem -> four stages of depthwise-convolution blocks (3:3:9:3) with
downsampling between them -> global average pooling -> head. Every layer has a hierarchical name
(`stage_2_block_5_depthwise_conv`) so checkpoints and `summary()` stay stable.

The classifier maps un-normalised log-mel segments to plain logits; input standardisation with the
training set's statistics is its first layer, so a SavedModel carries it to serving. For training
with L-softmax, `training_model` wraps the same layers with a `labels` input that only the margin
needs.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import keras

from musicnext_tf import baselines
from musicnext_tf.blocks import (  # noqa: F401  (HEADS, SEGMENTS_INPUT: re-exported)
    HEADS,
    SEGMENTS_INPUT,
    classification_head,
    downsample,
    drop_path_rates,
    stacked_stages,
    standardized_segments,
    stem,
)
from musicnext_tf.config import FeatureConfig, ModelConfig
from musicnext_tf.layers import LayerScale, LSoftmax, StochasticDepth, gamma_for_steps

LABELS_INPUT = "labels"
ELU_POSITIONS = ("after_depthwise", "after_expand")


def musicnext_block(
    x,
    width: int,
    name: str,
    kernel_size: int = 7,
    expansion: int = 4,
    elu_position: str = "after_depthwise",
    layer_scale: float | None = None,
    drop_path: float = 0.0,
    dtype=None,
):
    """Depthwise k x k -> ELU -> 1x1 to expansion*C -> 1x1 back to C, added to the input.

    `elu_position="after_expand"` moves the ELU between the two 1x1 layers (ConvNeXt's place),
    where it keeps them from collapsing into one linear map.
    """
    if elu_position not in ELU_POSITIONS:
        raise ValueError(f"elu_position must be one of {ELU_POSITIONS}, got {elu_position!r}")
    branch = keras.layers.DepthwiseConv2D(
        kernel_size, padding="same", name=f"{name}_depthwise_conv", dtype=dtype
    )(x)
    if elu_position == "after_depthwise":
        branch = keras.layers.ELU(name=f"{name}_elu", dtype=dtype)(branch)
    branch = keras.layers.Dense(expansion * width, name=f"{name}_pointwise_conv_1", dtype=dtype)(
        branch
    )
    if elu_position == "after_expand":
        branch = keras.layers.ELU(name=f"{name}_elu", dtype=dtype)(branch)
    branch = keras.layers.Dense(width, name=f"{name}_pointwise_conv_2", dtype=dtype)(branch)
    if layer_scale:
        branch = LayerScale(layer_scale, name=f"{name}_layer_scale", dtype=dtype)(branch)
    if drop_path:
        branch = StochasticDepth(drop_path, name=f"{name}_drop_path", dtype=dtype)(branch)
    return keras.layers.Add(name=f"{name}_add", dtype=dtype)([x, branch])


def MusicNeXt(
    num_classes: int,
    input_shape: Sequence[int] = (256, 128, 1),
    depths: Sequence[int] = (3, 3, 9, 3),
    widths: Sequence[int] = (96, 192, 384, 768),
    stem_kernel: int = 4,
    kernel_size: int = 7,
    expansion: int = 4,
    elu_position: str = "after_depthwise",
    layer_scale: float | None = None,
    drop_path: float = 0.0,
    head: str = "lsoftmax",
    margin: int = 4,
    lambda_base: float = 1000.0,
    lambda_gamma: float = 2.5e-5,
    lambda_power: float = 35.0,
    lambda_min: float = 0.0,
    input_mean: float = 0.0,
    input_std: float = 1.0,
    dtype=None,
    name: str = "musicnext",
) -> keras.Model:
    """Builds the MusicNeXt classifier: log-mel segments [batch, time, mel, 1] -> logits.

    Args:
        num_classes: number of genres.
        depths, widths: blocks and channels per stage (default ConvNeXt-T: 3:3:9:3, 96-768).
        elu_position: "after_depthwise" (the paper's reading) or "after_expand".
        layer_scale: initial LayerScale value, or None for none.
        drop_path: final stochastic-depth rate, increased linearly over the blocks.
        head: "lsoftmax" (default) or "softmax"; margin and lambda_* configure L-softmax.
        input_mean, input_std: training-set statistics of the log-mel values (dB).
        dtype: Keras dtype policy for the body ("mixed_bfloat16" etc.); the head stays float32.
    Returns:
        A functional `keras.Model` named `name` with input "segments" and plain-logit output.
    """
    if len(depths) != len(widths):
        raise ValueError(f"depths {list(depths)} and widths {list(widths)} must have equal length")
    segments, x = standardized_segments(input_shape, input_mean, input_std, dtype)
    x = stem(x, widths[0], stem_kernel, dtype=dtype)
    block = functools.partial(
        musicnext_block,
        kernel_size=kernel_size,
        expansion=expansion,
        elu_position=elu_position,
        layer_scale=layer_scale,
        dtype=dtype,
    )
    x = stacked_stages(
        x, depths, widths, drop_path, block, functools.partial(downsample, dtype=dtype)
    )
    # float32 from here on, whatever the body's policy: the embedding and the head's input
    pooled = keras.layers.GlobalAveragePooling2D(name="pooling", dtype="float32")(x)
    logits = classification_head(
        pooled,
        num_classes,
        head,
        margin=margin,
        lambda_base=lambda_base,
        lambda_gamma=lambda_gamma,
        lambda_power=lambda_power,
        lambda_min=lambda_min,
    )
    return keras.Model(segments, logits, name=name)


# The ModelConfig fields each architecture takes besides the sizes, drop path and head.
ARCHITECTURE_OPTIONS = {
    "musicnext": ("stem_kernel", "kernel_size", "expansion", "elu_position", "layer_scale"),
    "convnext": ("stem_kernel", "kernel_size", "expansion", "layer_scale"),
    "resnet": ("expansion",),
}


def architecture_builders() -> dict:
    """Architecture name -> the function building its classifier."""
    return {"musicnext": MusicNeXt, "convnext": baselines.ConvNeXt, "resnet": baselines.ResNet}


def build_model(
    config: ModelConfig,
    features: FeatureConfig,
    num_classes: int,
    input_mean: float = 0.0,
    input_std: float = 1.0,
    anneal_steps: int = 8000,
    dtype=None,
) -> keras.Model:
    """Builds the configured classifier (`config.architecture`); `anneal_steps` sets how fast
    L-softmax's lambda decays."""
    builders = architecture_builders()
    if config.architecture not in builders:
        raise ValueError(
            f"unknown architecture {config.architecture!r}; available: {sorted(builders)}"
        )
    options = {name: getattr(config, name) for name in ARCHITECTURE_OPTIONS[config.architecture]}
    return builders[config.architecture](
        num_classes,
        input_shape=(features.segment_frames, features.n_mels, 1),
        depths=config.depths,
        widths=config.widths,
        drop_path=config.drop_path,
        head=config.head,
        margin=config.margin,
        lambda_base=config.lambda_base,
        lambda_gamma=gamma_for_steps(anneal_steps),
        lambda_power=config.lambda_power,
        lambda_min=config.lambda_min,
        input_mean=input_mean,
        input_std=input_std,
        dtype=dtype,
        **options,
    )


MARGIN_LOGITS = "margin_logits"  # what an L-softmax training model optimises
PLAIN_LOGITS = "logits"  # what it predicts (the classifier's output)


class MarginTrainer(keras.Model):
    """An L-softmax training model: outputs the margin logits and the plain logits.

    The loss sees the margin logits (the objective); the metrics see the plain logits, so that the
    training accuracy is that of the predictions the model makes, not of the margin-shrunk
    logits (which falls as the margin takes over during the annealing of lambda).
    """

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        return super().compute_loss(x, y, objective_logits(y_pred), sample_weight, training)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return super().compute_metrics(x, y, predicted_logits(y_pred), sample_weight)


def objective_logits(y_pred):
    """The logits a training model's loss is computed on (the margin logits of L-softmax)."""
    return y_pred[MARGIN_LOGITS] if isinstance(y_pred, dict) else y_pred


def predicted_logits(y_pred):
    """The logits a training model predicts with (plain logits, whatever the head)."""
    return y_pred[PLAIN_LOGITS] if isinstance(y_pred, dict) else y_pred


def training_model(classifier: keras.Model) -> keras.Model:
    """The model `fit` trains: the classifier itself, or, for an L-softmax head, the same layers
    with an extra `labels` input so the head can apply the margin (a `MarginTrainer`). Weights
    are shared."""
    head = classifier.get_layer("head")
    if not isinstance(head, LSoftmax):
        return classifier
    labels = keras.Input(shape=(), dtype="int32", name=LABELS_INPUT)
    pooled = classifier.get_layer("pooling").output
    outputs = {MARGIN_LOGITS: head(pooled, labels=labels), PLAIN_LOGITS: head(pooled)}
    return MarginTrainer(
        {SEGMENTS_INPUT: classifier.input, LABELS_INPUT: labels},
        outputs,
        name=f"{classifier.name}_trainer",
    )


def embedding_model(classifier: keras.Model) -> keras.Model:
    """Segments -> pooled features (the input of the head), sharing the classifier's weights."""
    return keras.Model(classifier.input, classifier.get_layer("pooling").output, name="embedding")


def needs_labels(model: keras.Model) -> bool:
    """True when the model takes a `labels` input (an L-softmax training model)."""
    return isinstance(model.input, dict) and LABELS_INPUT in model.input
