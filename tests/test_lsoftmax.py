"""L-softmax layer and loss against the paper's worked example and an independent numpy reference."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from musicnext_tf import LSoftmax, LSoftmaxLoss
from musicnext_tf.layers import gamma_for_steps, lambda_schedule, large_margin_logits


def reference_margin_logits(x, W, labels, m, lam):
    """float64 numpy L-softmax logits, computed through the angle itself (arccos), unlike the
    implementation, which never takes an arccos. W is [classes, dim] as in the paper's notation."""
    logits = x @ W.T
    out = logits.copy()
    for i, y in enumerate(labels):
        w_norm, x_norm = np.linalg.norm(W[y]), np.linalg.norm(x[i])
        theta = math.acos(np.clip(logits[i, y] / (w_norm * x_norm), -1.0, 1.0))
        k = min(m - 1, math.floor(theta * m / math.pi))
        psi = (-1) ** k * math.cos(m * theta) - 2 * k
        out[i, y] = (lam * logits[i, y] + w_norm * x_norm * psi) / (1 + lam)
    return out


def reference_cross_entropy(logits, labels):
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -log_probs[np.arange(len(labels)), labels]


def head_with_kernel(W, margin, **kwargs):
    """An LSoftmax layer whose class weights are the rows of W."""
    layer = LSoftmax(W.shape[0], margin=margin, **kwargs)
    layer.build((None, W.shape[1]))
    layer.kernel.assign(W.T.astype(np.float32))
    return layer


def test_worked_example_of_paper_spec():
    W = np.array([[1.0, 0.0], [0.0, 2.0], [-1.0, -1.0]])
    x = np.array([[3.0, 4.0]], np.float32)
    head = head_with_kernel(W, margin=4, lambda_base=0.0)
    margin_logits = head(x, labels=np.array([0]), training=True).numpy()
    np.testing.assert_allclose(margin_logits, [[-5.784, 8.0, -7.0]], atol=1e-5)
    assert LSoftmaxLoss()(np.array([0]), margin_logits).numpy() == pytest.approx(
        13.784001, abs=1e-5
    )
    np.testing.assert_allclose(head(x).numpy(), [[3.0, 8.0, -7.0]], atol=1e-6)
    np.testing.assert_allclose(
        head(x, labels=np.array([0]), training=False).numpy(), [[3.0, 8.0, -7.0]], atol=1e-6
    )


@pytest.mark.parametrize("margin", [1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize("lam", [0.0, 0.5, 10.0])
def test_random_cases_match_numpy_reference(margin, lam, rng):
    classes, dim, batch = 7, 16, 64
    W = rng.standard_normal((classes, dim))
    x = rng.standard_normal((batch, dim))
    labels = rng.integers(0, classes, batch)
    ours = large_margin_logits(
        tf.constant(x, tf.float64), tf.constant(W.T, tf.float64), tf.constant(labels), margin, lam
    ).numpy()
    reference = reference_margin_logits(x, W, labels, margin, lam)
    np.testing.assert_allclose(ours, reference, rtol=1e-9, atol=1e-9)
    loss = LSoftmaxLoss(reduction=None)(labels, ours.astype(np.float32)).numpy()
    np.testing.assert_allclose(
        loss, reference_cross_entropy(reference, labels), rtol=1e-4, atol=1e-5
    )


def test_margin_one_is_plain_softmax_cross_entropy(rng):
    W = rng.standard_normal((5, 8)).astype(np.float32)
    x = rng.standard_normal((32, 8)).astype(np.float32)
    labels = rng.integers(0, 5, 32)
    head = head_with_kernel(W, margin=1, lambda_base=0.0)
    logits = head(x, labels=labels, training=True).numpy()
    np.testing.assert_allclose(logits, x @ W.T, rtol=1e-5, atol=1e-5)
    expected = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, x @ W.T).numpy()
    assert LSoftmaxLoss()(labels, logits).numpy() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("margin", [2, 3, 4, 6])
def test_gradients_match_finite_differences(margin, rng):
    W = rng.standard_normal((4, 6))
    x = rng.standard_normal((5, 6))
    labels = tf.constant(rng.integers(0, 4, 5))

    def loss(features, kernel):
        logits = large_margin_logits(features, kernel, labels, margin, 0.3)
        return tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        )

    theoretical, numerical = tf.test.compute_gradient(
        loss, [tf.constant(x), tf.constant(W.T)], delta=1e-6
    )
    for analytic, finite in zip(theoretical, numerical):
        np.testing.assert_allclose(analytic, finite, rtol=1e-5, atol=1e-6)


def _finite_loss_and_gradients(x, W, labels, margin=4):
    features = tf.Variable(np.asarray(x, np.float32))
    kernel = tf.Variable(np.asarray(W.T, np.float32))
    with tf.GradientTape() as tape:
        logits = large_margin_logits(features, kernel, tf.constant(labels), margin, 0.0)
        loss = LSoftmaxLoss()(labels, logits)
    gradients = tape.gradient(loss, [features, kernel])
    for value in [logits, loss, *gradients]:
        assert np.all(np.isfinite(value.numpy())), value
    return logits.numpy()


def test_no_nan_or_inf_at_the_edges():
    W = np.array([[1.0, 2.0, 0.5], [-1.0, 0.5, 2.0], [0.3, -0.2, 0.1]])
    theta_zero = _finite_loss_and_gradients(3.0 * W[:1], W, [0])  # feature parallel to W_y
    assert theta_zero[0, 0] == pytest.approx(W[0] @ (3.0 * W[0]), rel=1e-5)  # psi(0) = 1
    theta_pi = _finite_loss_and_gradients(-2.0 * W[:1], W, [0])  # antiparallel: psi(pi) = -(2m - 1)
    assert theta_pi[0, 0] == pytest.approx(
        -7.0 * np.linalg.norm(W[0]) * 2.0 * np.linalg.norm(W[0]), rel=1e-5
    )
    _finite_loss_and_gradients(np.zeros((2, 3)), W, [0, 1])
    _finite_loss_and_gradients(np.full((2, 3), 1e18), W, [0, 2])
    _finite_loss_and_gradients(np.array([[1e-30, 0.0, 0.0]]), W, [1])


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_head_and_loss_stay_float32_under_mixed_precision(policy, rng):
    inputs = keras.Input((8,))
    labels = keras.Input((), dtype="int32")
    hidden = keras.layers.Dense(16, dtype=policy)(inputs)
    head = LSoftmax(3, margin=4)
    model = keras.Model([inputs, labels], head(hidden, labels=labels))
    x = rng.standard_normal((10, 8)).astype(np.float32) * 100.0
    y = rng.integers(0, 3, 10).astype(np.int32)
    logits = model([x, y], training=True)
    assert logits.dtype == tf.float32 and head.kernel.dtype == "float32"
    loss = LSoftmaxLoss()(y, logits)
    assert loss.dtype == tf.float32 and np.isfinite(loss.numpy())


def test_lambda_schedule_and_annealing_state():
    assert float(lambda_schedule(0, 1000.0, 2.5e-5, 35.0, 0.0)) == pytest.approx(1000.0)
    assert float(lambda_schedule(8000, 1000.0, 2.5e-5, 35.0, 0.0)) == pytest.approx(
        1000 * 1.2**-35, rel=1e-5
    )
    assert float(lambda_schedule(8000, 1000.0, 2.5e-5, 35.0, 5.0)) == pytest.approx(5.0)
    assert float(lambda_schedule(300, 1000.0, gamma_for_steps(300), 35.0, 0.0)) == pytest.approx(
        1.7, abs=0.05
    )

    head = LSoftmax(3, margin=2, lambda_gamma=0.01)
    x = np.ones((4, 5), np.float32)
    head(x)  # inference: no step
    head(x, labels=np.zeros(4, np.int32), training=False)
    assert int(head.anneal_step.numpy()) == 0
    for _ in range(3):
        head(x, labels=np.zeros(4, np.int32), training=True)
    assert int(head.anneal_step.numpy()) == 3
    assert float(head.current_lambda) == pytest.approx(1000.0 * (1 + 0.03) ** -35, rel=1e-5)


def test_invalid_margin_is_refused():
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match="margin"):
            LSoftmax(3, margin=bad)


def test_keras_round_trip_keeps_outputs_and_annealing_state(tmp_path, rng):
    inputs = keras.Input((6,), name="features")
    model = keras.Model(inputs, LSoftmax(4, margin=3, lambda_gamma=0.5, name="head")(inputs))
    model.get_layer("head").anneal_step.assign(17)
    model.compile(loss=LSoftmaxLoss())
    path = tmp_path / "head.keras"
    model.save(path)
    restored = keras.saving.load_model(path)  # no custom_objects: the classes are registered
    x = rng.standard_normal((9, 6)).astype(np.float32)
    np.testing.assert_array_equal(restored.predict(x, verbose=0), model.predict(x, verbose=0))
    head = restored.get_layer("head")
    assert isinstance(head, LSoftmax) and head.margin == 3 and int(head.anneal_step.numpy()) == 17
    assert isinstance(restored.loss, LSoftmaxLoss)


@pytest.mark.parametrize("step", [1_000_000, 3_000])
def test_training_model_applies_the_margin_of_the_annealed_lambda(step, rng):
    """Through `training_model` after `step` annealing steps: at step 1e6 lambda is ~0, so the
    true class's logit is |W_y||x| psi(theta_y) alone (the full margin); at step 3000 lambda is
    about 1000 (1 + 0.075)^-35 = 79. The other logits stay W_j.x."""
    from musicnext_tf import MusicNeXt, training_model
    from musicnext_tf.model import embedding_model

    margin, classes = 4, 8
    classifier = MusicNeXt(
        classes, input_shape=(32, 16, 1), depths=(1, 1), widths=(8, 16), margin=margin
    )
    segments = rng.standard_normal((2, 32, 16, 1)).astype(np.float32)
    features = embedding_model(classifier)(segments).numpy().astype(np.float64)
    # class j's weights at angle (j + 1/2) pi / classes from the first segment's features, so
    # its true-class angles fall in every interval [k pi/m, (k+1) pi/m] of psi
    first = features[0] / np.linalg.norm(features[0])
    other = rng.standard_normal(first.size)
    other -= (other @ first) * first
    other /= np.linalg.norm(other)
    angles = (np.arange(classes) + 0.5) * np.pi / classes
    W = np.cos(angles)[:, None] * first + np.sin(angles)[:, None] * other  # [classes, dim]
    head = classifier.get_layer("head")
    head.kernel.assign(W.T.astype(np.float32))
    head.anneal_step.assign(step)
    lam = 1000.0 * (1.0 + 2.5e-5 * step) ** -35.0  # the schedule's defaults, in numpy
    assert float(head.current_lambda) == pytest.approx(lam, rel=1e-4, abs=1e-30)

    x = np.repeat(features, classes, axis=0)  # every segment with every label
    labels = np.tile(np.arange(classes), len(features))
    outputs = training_model(classifier)(
        {"segments": np.repeat(segments, classes, axis=0), "labels": labels}, training=True
    )
    expected = reference_margin_logits(x, W, labels, margin, lam)
    cosines = np.sum(x * W[labels], axis=1) / np.linalg.norm(x, axis=1)
    intervals = np.minimum(np.floor(np.arccos(cosines) * margin / np.pi), margin - 1)
    assert set(intervals) == set(range(margin))  # every branch of psi is checked
    np.testing.assert_allclose(outputs["margin_logits"].numpy(), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(outputs["logits"].numpy(), x @ W.T, rtol=1e-4, atol=1e-5)
    assert int(head.anneal_step.numpy()) == step + 1
