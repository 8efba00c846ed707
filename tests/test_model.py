"""MusicNeXt's structure: parameter counts from a closed formula, shapes, names and options."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from musicnext_tf import LSoftmax, MusicNeXt, training_model
from musicnext_tf.layers import StochasticDepth
from musicnext_tf.model import embedding_model, needs_labels

PAPER_DEPTHS, PAPER_WIDTHS = (3, 3, 9, 3), (96, 192, 384, 768)


def expected_parameters(
    classes, depths, widths, kernel=7, expansion=4, stem=4, layer_scale=False, head_bias=False
):
    """Trainable parameters of the architecture, counted by hand from its definition:
    stem conv (stem^2 * C0 + C0); per block depthwise (k^2 C + C), expand (C * eC + eC),
    project (eC * C + C), optional layer scale (C); downsampling 2x2 convs (4 C_in C_out + C_out);
    bias-free L-softmax head (C_last * classes)."""
    total = stem * stem * widths[0] + widths[0]
    for stage, (depth, width) in enumerate(zip(depths, widths)):
        if stage:
            total += 4 * widths[stage - 1] * width + width
        block = (
            kernel * kernel * width
            + width
            + 2 * expansion * width * width
            + expansion * width
            + width
        )
        total += depth * (block + (width if layer_scale else 0))
    return total + widths[-1] * classes + (classes if head_bias else 0)


def trainable_count(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def test_default_model_has_the_documented_parameter_count():
    model = MusicNeXt(10)
    assert (
        trainable_count(model) == expected_parameters(10, PAPER_DEPTHS, PAPER_WIDTHS) == 27_801_792
    )
    with_scale = MusicNeXt(10, layer_scale=1e-6)
    assert (
        trainable_count(with_scale)
        == expected_parameters(10, PAPER_DEPTHS, PAPER_WIDTHS, layer_scale=True)
        == 27_808_416
    )


@pytest.mark.parametrize(
    "classes,depths,widths,head",
    [
        (6, (3, 3, 9, 3), (96, 192, 384, 768), "softmax"),
        (9, (1, 1, 3, 1), (24, 48, 96, 192), "lsoftmax"),
        (4, (2, 2), (16, 32), "lsoftmax"),
    ],
)
def test_parameter_count_formula_holds_for_other_configurations(classes, depths, widths, head):
    model = MusicNeXt(classes, depths=depths, widths=widths, head=head)
    assert trainable_count(model) == expected_parameters(
        classes, depths, widths, head_bias=head == "softmax"
    )


def test_layer_names_and_feature_map_shapes():
    model = MusicNeXt(10)
    names = {layer.name for layer in model.layers}
    for name in [
        "stem_conv",
        "stage_0_block_2_depthwise_conv",
        "stage_2_block_8_pointwise_conv_2",
        "stage_3_downsample_conv",
        "pooling",
        "head",
        "input_standardization",
    ]:
        assert name in names
    assert model.get_layer("stem_conv").output.shape == (None, 64, 32, 96)
    assert model.get_layer("stage_1_block_2_add").output.shape == (None, 32, 16, 192)
    assert model.get_layer("stage_2_block_8_add").output.shape == (None, 16, 8, 384)
    assert model.get_layer("stage_3_block_2_add").output.shape == (None, 8, 4, 768)
    assert model.output.shape == (None, 10)
    assert not any(
        isinstance(layer, (keras.layers.BatchNormalization, keras.layers.LayerNormalization))
        for layer in model.layers
    )
    activations = [layer for layer in model.layers if isinstance(layer, keras.layers.ELU)]
    assert len(activations) == sum(PAPER_DEPTHS)


def test_elu_position_moves_the_activation():
    model = MusicNeXt(3, depths=(1,), widths=(8,), elu_position="after_expand")
    order = [layer.name for layer in model.layers]
    assert (
        order.index("stage_0_block_0_pointwise_conv_1")
        < order.index("stage_0_block_0_elu")
        < order.index("stage_0_block_0_pointwise_conv_2")
    )
    with pytest.raises(ValueError, match="elu_position"):
        MusicNeXt(3, depths=(1,), widths=(8,), elu_position="nowhere")
    with pytest.raises(ValueError, match="head"):
        MusicNeXt(3, depths=(1,), widths=(8,), head="arcface")


def test_input_standardization_uses_the_given_statistics(rng):
    model = MusicNeXt(3, depths=(1,), widths=(8,), input_mean=-40.0, input_std=20.0)
    x = rng.normal(-40.0, 20.0, (2, 256, 128, 1)).astype(np.float32)
    standardized = keras.Model(model.input, model.get_layer("input_standardization").output)(x)
    np.testing.assert_allclose(standardized.numpy(), (x + 40.0) / 20.0, rtol=1e-5, atol=1e-5)


def test_training_model_shares_weights_and_only_it_needs_labels(rng):
    classifier = MusicNeXt(4, depths=(1, 1), widths=(8, 16), margin=2)
    trainer = training_model(classifier)
    assert not needs_labels(classifier) and needs_labels(trainer)
    assert {id(w) for w in trainer.trainable_weights} == {
        id(w) for w in classifier.trainable_weights
    }
    x = rng.standard_normal((3, 256, 128, 1)).astype(np.float32)
    labels = np.array([0, 1, 2], np.int32)
    np.testing.assert_allclose(
        trainer({"segments": x, "labels": labels}, training=False)["margin_logits"].numpy(),
        classifier(x).numpy(),
        rtol=1e-6,
    )
    outputs = trainer({"segments": x, "labels": labels}, training=True)
    margin_logits = outputs["margin_logits"].numpy()
    np.testing.assert_allclose(outputs["logits"].numpy(), classifier(x).numpy(), rtol=1e-6)
    plain = classifier(x).numpy()
    # the margin only ever lowers the true class's logit and leaves the others alone
    assert np.all(margin_logits[np.arange(3), labels] <= plain[np.arange(3), labels] + 1e-5)
    others = np.ones_like(plain, bool)
    others[np.arange(3), labels] = False
    np.testing.assert_allclose(margin_logits[others], plain[others], rtol=1e-5)
    softmax_classifier = MusicNeXt(4, depths=(1,), widths=(8,), head="softmax")
    assert training_model(softmax_classifier) is softmax_classifier
    assert isinstance(classifier.get_layer("head"), LSoftmax)
    assert embedding_model(classifier)(x).shape == (3, 16)


def test_stochastic_depth_and_layer_scale_options_build_and_run(rng):
    model = MusicNeXt(3, depths=(2, 2), widths=(8, 16), layer_scale=1e-6, drop_path=0.2)
    x = rng.standard_normal((2, 256, 128, 1)).astype(np.float32)
    assert model(x, training=True).shape == (2, 3)
    np.testing.assert_array_equal(
        model(x, training=False).numpy(), model(x, training=False).numpy()
    )
    rates = [model.get_layer(f"stage_1_block_{b}_drop_path").rate for b in range(2)]
    assert rates[-1] == pytest.approx(0.2)


def test_drop_path_rates_rise_linearly_over_every_block_of_the_network():
    """ConvNeXt's rule counted by hand: block i of n (all stages in order) drops at
    drop_path * i / (n - 1); the first block's rate is 0, so it has no drop layer."""
    depths = (1, 2, 3)
    model = MusicNeXt(3, input_shape=(32, 16, 1), depths=depths, widths=(4, 8, 8), drop_path=0.3)
    blocks = [(stage, block) for stage, depth in enumerate(depths) for block in range(depth)]
    expected = {
        f"stage_{stage}_block_{block}_drop_path": 0.3 * index / (len(blocks) - 1)
        for index, (stage, block) in enumerate(blocks)
        if index > 0
    }
    found = {layer.name: layer.rate for layer in model.layers if isinstance(layer, StochasticDepth)}
    assert found == pytest.approx(expected)  # the same blocks, the same rates
