"""Accelerator training options on CPU: mixed precision (bfloat16, float16 with loss scaling) and XLA
compilation must train a tiny model correctly, and compute what float32 computes, to the precision
of the format."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from helpers import tiny_config, write_timbre_dataset

from musicnext_tf import cli
from musicnext_tf.config import ConfigError, FeatureConfig, ModelConfig, TrainConfig, resolve
from musicnext_tf.model import build_model, training_model
from musicnext_tf.train import compile_for_training, fit, layer_policy

TINY_MODEL = ModelConfig(depths=[1, 1], widths=[16, 32], margin=2)
TINY_FEATURES = FeatureConfig(segment_frames=32, n_mels=16)
# bfloat16 keeps 8 significant bits, float16 11: the probabilities of a tiny network agree with
# float32 to about a few units of that precision
PROBABILITY_TOLERANCE = {"mixed_bfloat16": 5e-3, "mixed_float16": 1e-3}  # measured: 9e-4, 1.2e-4


def tiny_batch(rng, size: int = 24):
    """Segments whose class shows in which third of the mel bands is loud."""
    labels = rng.integers(0, 3, size)
    x = rng.normal(-60.0, 5.0, (size, 32, 16, 1)).astype("float32")
    for row, label in enumerate(labels):
        x[row, :, 5 * label : 5 * label + 5] += 30.0
    return x, labels.astype("int32")


def tiny_classifier(precision: str) -> keras.Model:
    keras.utils.set_random_seed(0)
    policy = layer_policy(TrainConfig(precision=precision))
    return build_model(TINY_MODEL, TINY_FEATURES, 3, -50.0, 12.0, anneal_steps=40, dtype=policy)


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_computes_what_float32_computes(precision, rng):
    reference = tiny_classifier("float32")
    mixed = tiny_classifier(precision)
    mixed.set_weights(reference.get_weights())
    floating = [w.dtype for w in mixed.weights if w.dtype != "int64"]  # int64: anneal step
    assert set(floating) == {"float32"}  # variables stay float32
    body = mixed.get_layer("stage_1_block_0_pointwise_conv_1")
    assert body.compute_dtype == precision.removeprefix("mixed_")
    for name in ("pooling", "head"):
        assert mixed.get_layer(name).compute_dtype == "float32"
    x, _ = tiny_batch(rng)
    logits = mixed(x, training=False)
    assert logits.dtype == "float32"
    expected = keras.ops.softmax(reference(x, training=False)).numpy()
    actual = keras.ops.softmax(logits).numpy()
    assert np.all(np.isfinite(actual))
    assert np.max(np.abs(actual - expected)) <= PROBABILITY_TOLERANCE[precision]


@pytest.mark.parametrize(
    "precision, jit_compile",
    [("mixed_bfloat16", False), ("mixed_float16", False), ("float32", True)],
)
def test_tiny_model_learns_under_each_option(precision, jit_compile, rng):
    classifier = tiny_classifier(precision)
    trainer = training_model(classifier)
    compile_for_training(
        trainer, TrainConfig(learning_rate=3e-3, precision=precision, jit_compile=jit_compile)
    )
    scaled = isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer)
    assert scaled == (precision == "mixed_float16")
    x, labels = tiny_batch(rng)
    inputs = {"segments": x, "labels": labels}
    losses = trainer.fit(inputs, labels, batch_size=12, epochs=10, verbose=0).history["loss"]
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.5 * losses[0]
    predicted = np.argmax(classifier.predict(x, verbose=0), axis=1)
    assert np.mean(predicted == labels) >= 0.9


def test_fit_and_export_with_bfloat16_and_xla(tmp_path):
    """The whole run (checkpoints, evaluation, SavedModel) works with a mixed policy and XLA, and
    the exported signatures still take and give float32."""
    import tensorflow as tf

    data = write_timbre_dataset(tmp_path / "data", clips_per_class=6)
    config = tiny_config(
        data, train={"precision": "mixed_bfloat16", "jit_compile": True, "epochs": 4}
    )
    metrics = fit(config, tmp_path / "run", progress=False, export_base=tmp_path / "exports")
    losses = metrics["history"]["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert metrics["test_clip_accuracy"] >= 2 / 3  # chance is 1/3
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["train"]
    assert saved["precision"] == "mixed_bfloat16" and saved["jit_compile"] is True
    served = tf.saved_model.load(metrics["export"]).signatures["serving_default"]
    segments = tf.fill([2, 64, 32, 1], -40.0)
    outputs = served(segments=segments)
    assert outputs["probabilities"].dtype == tf.float32
    np.testing.assert_allclose(tf.reduce_sum(outputs["probabilities"], axis=1), 1.0, atol=1e-5)


def test_precision_options_are_checked(tmp_path, capsys):
    with pytest.raises(ConfigError, match="precision.*mixed_bfloat16"):
        resolve("demo", None, {"train": {"precision": "float16"}})
    with pytest.raises(ConfigError, match="jit_compile"):
        resolve("demo", None, {"train": {"jit_compile": "yes"}})
    with pytest.raises(SystemExit):
        cli.main(["fit", "--data", "demo", "--precision", "half"])
    assert "invalid choice" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["fit", "--help"])
    text = capsys.readouterr().out
    assert "--precision" in text and "--jit-compile" in text and "--no-jit-compile" in text
