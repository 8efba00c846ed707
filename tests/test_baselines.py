"""The ablation's baselines: parameter counts against published figures, Keras' own ConvNeXt-T
and closed formulas; shapes; training of every architecture with both heads; serialization."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from helpers import assert_keras_round_trip, write_timbre_dataset

from musicnext_tf import cli
from musicnext_tf.baselines import ConvNeXt, ResNet
from musicnext_tf.config import (
    ConfigError,
    FeatureConfig,
    ModelConfig,
    TrainConfig,
    load_run_config,
)
from musicnext_tf.layers import LayerScale, StochasticDepth
from musicnext_tf.losses import LSoftmaxLoss
from musicnext_tf.model import build_model, drop_path_rates, embedding_model, training_model
from musicnext_tf.pipeline import model_inputs
from musicnext_tf.run_folder import model_file
from musicnext_tf.train import compile_for_training

RESNET50_IMAGENET_PARAMETERS = 25_557_032  # torchvision's resnet50 (3-channel input, 1000 classes)
CONVNEXT_T_IMAGENET_PARAMETERS = 28_589_128  # Liu et al. 2022, ConvNeXt-T (1000 classes)
TINY_INPUT = (32, 16, 1)
TINY_SIZES = {
    "musicnext": ([1, 1], [8, 16]),
    "convnext": ([1, 1], [8, 16]),
    "resnet": ([1, 1], [4, 8]),
}


def trainable_count(model) -> int:
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def layers_of(model, kind) -> list:
    return [layer for layer in model.layers if isinstance(layer, kind)]


def resnet_parameters(classes, depths, widths, channels=1, expansion=4, head_bias=True):
    """Trainable parameters of a bias-free-convolution ResNet with BatchNorm (gamma and beta per
    channel): 7x7 stem; per bottleneck 1x1 (C_in w), 3x3 (9 w^2), 1x1 (w ew), three BatchNorms,
    and on each stage's first block a 1x1 projection (C_in ew) with its BatchNorm."""
    total = 49 * channels * widths[0] + 2 * widths[0]
    previous = widths[0]
    for depth, width in zip(depths, widths):
        out = expansion * width
        for block in range(depth):
            c_in = previous if block == 0 else out
            total += c_in * width + 9 * width * width + width * out + 2 * (2 * width + out)
            if block == 0:
                total += c_in * out + 2 * out
        previous = out
    return total + previous * classes + (classes if head_bias else 0)


def convnext_parameters(classes, depths, widths, channels=1, kernel=7, expansion=4, head_bias=True):
    """Trainable parameters of ConvNeXt: 4x4 stem conv and LayerNorm; per block depthwise
    (k^2 C + C), LayerNorm (2C), expand (C eC + eC), project (eC C + C), LayerScale (C);
    LayerNorm plus 2x2 conv between stages; the pooled features' LayerNorm; the head."""
    total = 16 * channels * widths[0] + widths[0] + 2 * widths[0]
    for stage, (depth, width) in enumerate(zip(depths, widths)):
        if stage:
            total += 2 * widths[stage - 1] + 4 * widths[stage - 1] * width + width
        block = kernel * kernel * width + width + 2 * width
        block += 2 * expansion * width * width + expansion * width + width + width
        total += depth * block
    return total + 2 * widths[-1] + widths[-1] * classes + (classes if head_bias else 0)


def test_resnet50_has_the_published_parameter_count():
    imagenet = ResNet(1000, input_shape=(224, 224, 3), head="softmax")
    assert trainable_count(imagenet) == RESNET50_IMAGENET_PARAMETERS
    assert RESNET50_IMAGENET_PARAMETERS == resnet_parameters(
        1000, (3, 4, 6, 3), (64, 128, 256, 512), channels=3
    )
    ours = ResNet(10)  # 1-channel log-mel, bias-free L-softmax head
    assert trainable_count(ours) == resnet_parameters(
        10, (3, 4, 6, 3), (64, 128, 256, 512), head_bias=False
    )


def test_convnext_tiny_matches_keras_and_the_published_count():
    reference = keras.applications.ConvNeXtTiny(
        weights=None, input_shape=(256, 128, 1), classes=10, include_preprocessing=False
    )
    ours = ConvNeXt(10, head="softmax")
    assert trainable_count(ours) == trainable_count(reference) == 27_824_746
    assert trainable_count(ours) == convnext_parameters(10, (3, 3, 9, 3), (96, 192, 384, 768))
    imagenet = ConvNeXt(1000, input_shape=(224, 224, 3), head="softmax")
    assert trainable_count(imagenet) == CONVNEXT_T_IMAGENET_PARAMETERS


@pytest.mark.parametrize(
    "architecture,depths,widths,head",
    [
        ("resnet", (2, 1, 3), (16, 24, 32), "lsoftmax"),
        ("resnet", (1, 1), (8, 8), "softmax"),
        ("convnext", (2, 2, 1), (16, 32, 48), "lsoftmax"),
        ("convnext", (1,), (8,), "softmax"),
    ],
)
def test_parameter_formulas_hold_for_other_stacking_ratios(architecture, depths, widths, head):
    builder, formula = {
        "resnet": (ResNet, resnet_parameters),
        "convnext": (ConvNeXt, convnext_parameters),
    }[architecture]
    model = builder(7, depths=depths, widths=widths, head=head)
    assert trainable_count(model) == formula(7, depths, widths, head_bias=head == "softmax")


def test_feature_maps_match_musicnext_and_each_network_has_its_own_layers():
    resnet, convnext = ResNet(10), ConvNeXt(10)
    for stage, shape in enumerate([(64, 32, 256), (32, 16, 512), (16, 8, 1024), (8, 4, 2048)]):
        last = (3, 4, 6, 3)[stage] - 1
        assert resnet.get_layer(f"stage_{stage}_block_{last}_out").output.shape == (None, *shape)
    for stage, shape in enumerate([(64, 32, 96), (32, 16, 192), (16, 8, 384), (8, 4, 768)]):
        last = (3, 3, 9, 3)[stage] - 1
        assert convnext.get_layer(f"stage_{stage}_block_{last}_add").output.shape == (None, *shape)
    assert resnet.get_layer("pooling").output.shape == (None, 2048)
    assert convnext.get_layer("pooling").output.shape == (None, 768)

    # BatchNorm: stem, 3 per block, one per projection shortcut; LayerNorm: stem, blocks,
    # downsampling, pooled features
    assert len(layers_of(resnet, keras.layers.BatchNormalization)) == 1 + 3 * 16 + 4
    assert not layers_of(resnet, keras.layers.LayerNormalization)
    assert len(layers_of(convnext, keras.layers.LayerNormalization)) == 1 + 18 + 3 + 1
    assert not layers_of(convnext, keras.layers.BatchNormalization)
    assert [layer.init_value for layer in layers_of(convnext, LayerScale)] == [1e-6] * 18
    gelus = [layer for layer in convnext.layers if layer.name.endswith("_gelu")]
    assert len(gelus) == 18 and gelus[0].get_config()["activation"] == "gelu"


def test_drop_path_rates_rise_linearly_over_all_blocks():
    rates = drop_path_rates((1, 2, 2), 0.2)
    assert [len(stage) for stage in rates] == [1, 2, 2]
    np.testing.assert_allclose(sum(rates, []), [0.0, 0.05, 0.1, 0.15, 0.2])
    model = ResNet(3, input_shape=TINY_INPUT, depths=(1, 2), widths=(4, 8), drop_path=0.2)
    rates = [layer.rate for layer in model.layers if isinstance(layer, StochasticDepth)]
    assert rates == pytest.approx([0.1, 0.2])  # a rate of 0 adds no layer


def tiny_batch(rng, classes=3, per_class=4):
    """Segments whose class is a bright band of mel rows, plus noise: learnable in a few steps."""
    labels = np.repeat(np.arange(classes), per_class).astype(np.int32)
    x = rng.normal(0.0, 1.0, (len(labels), *TINY_INPUT)).astype(np.float32)
    for i, label in enumerate(labels):
        x[i, :, 4 * label : 4 * label + 4] += 3.0
    return x, labels


@pytest.mark.parametrize("head", ["lsoftmax", "softmax"])
@pytest.mark.parametrize("architecture", ["musicnext", "convnext", "resnet"])
def test_every_architecture_and_head_learns_a_tiny_batch(architecture, head, rng, tmp_path):
    keras.utils.set_random_seed(0)
    depths, widths = TINY_SIZES[architecture]
    config = ModelConfig(architecture=architecture, depths=depths, widths=widths, head=head)
    features = FeatureConfig(segment_frames=TINY_INPUT[0], n_mels=TINY_INPUT[1])
    classifier = build_model(config, features, 3)  # lambda stays ~1000 for these few steps
    assert classifier.name == architecture and classifier.output_shape == (None, 3)
    trainer = training_model(classifier)
    compile_for_training(trainer, TrainConfig(learning_rate=3e-3))
    x, labels = tiny_batch(rng)
    inputs, targets = model_inputs(x, labels, trainer is not classifier)
    plain_before = LSoftmaxLoss()(labels, classifier(x, training=False))
    losses = trainer.fit(inputs, targets, batch_size=len(x), epochs=12, verbose=0).history["loss"]
    plain_after = LSoftmaxLoss()(labels, classifier(x, training=False))
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.7 * losses[0], losses
    # the inference logits learned too (less clearly for ResNet: after 12 steps, BatchNorm's
    # moving statistics still hold ~30 % of their initial values)
    assert float(plain_after) < 0.85 * float(plain_before)
    loaded = assert_keras_round_trip(classifier, x, tmp_path / f"{architecture}.keras")
    pooled_width = classifier.get_layer("pooling").output.shape[-1]
    assert embedding_model(loaded)(x).shape == (len(x), pooled_width)


def test_model_config_sizes_follow_the_architecture():
    assert (ModelConfig().depths, ModelConfig().widths) == ([3, 3, 9, 3], [96, 192, 384, 768])
    resnet = ModelConfig(architecture="resnet")
    assert (resnet.depths, resnet.widths) == ([3, 4, 6, 3], [64, 128, 256, 512])
    assert ModelConfig(architecture="resnet", depths=[2, 2, 2, 2]).widths == [64, 128, 256, 512]
    with pytest.raises(ConfigError, match=r"architecture 'vgg' is unknown; choose one of "):
        ModelConfig(architecture="vgg")
    with pytest.raises(ConfigError, match=r"depths \[3, 3\] and widths \[96, 192, 384, 768\]"):
        ModelConfig(depths=[3, 3])


def test_convnext_layer_scale_setting():
    features = FeatureConfig(segment_frames=TINY_INPUT[0], n_mels=TINY_INPUT[1])
    assert ModelConfig(architecture="convnext").layer_scale == 1e-6  # ConvNeXt's, when unset
    assert ModelConfig(architecture="resnet").layer_scale is None
    config = ModelConfig(architecture="convnext", depths=[1], widths=[8], layer_scale=0.1)
    scales = layers_of(build_model(config, features, 3), LayerScale)
    assert [layer.init_value for layer in scales] == [0.1]
    config.layer_scale = 0.0  # turns it off
    assert not layers_of(build_model(config, features, 3), LayerScale)


@pytest.mark.slow  # trains two networks end to end (~20 s)
def test_cli_fit_trains_the_chosen_network(tmp_path):
    root = write_timbre_dataset(tmp_path / "data", clips_per_class=3)
    user = tmp_path / "tiny.toml"
    user.write_text(
        "[audio]\nclip_seconds = 3.0\nmin_seconds = 1.0\n"
        "[features]\nn_fft = 512\nn_mels = 32\nsegment_frames = 64\nsegments_per_clip = 4\n"
        "[model]\nwidths = [4, 8]\n[data]\ntest_fraction = 0.34\n"
    )
    common = ["fit", "--data", "folder", "--data-dir", str(root), "--config", str(user)]
    options = ["--model", "resnet", "--depths", "1:2", "--epochs", "1", "--quiet"]
    assert cli.main([*common, *options, "--run-dir", str(tmp_path / "run")]) == 0
    config = load_run_config(tmp_path / "run")
    assert (config.model.architecture, config.model.depths) == ("resnet", [1, 2])
    model = keras.saving.load_model(model_file(tmp_path / "run", "last"))
    assert model.name == "resnet" and "stage_1_block_1_out" in [
        layer.name for layer in model.layers
    ]


def test_cli_model_and_depths_options(capsys):
    args = cli.build_parser().parse_args(["fit", "--model", "resnet", "--depths", "2:2:4:2"])
    assert (args.model, args.depths) == ("resnet", [2, 2, 4, 2])
    for bad in (["--model", "vgg"], ["--depths", "3:x:9"], ["--depths", "3:0"]):
        with pytest.raises(SystemExit):
            cli.build_parser().parse_args(["fit", *bad])
    error = capsys.readouterr().err
    assert "invalid choice: 'vgg'" in error and "invalid _stacking_ratio value: '3:0'" in error
