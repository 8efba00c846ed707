"""Custom layers: the large-margin softmax head and the residual-block helpers.

Everything here is new math that standard Keras layers do not provide; each layer is registered for
serialization so `.keras` files load without `custom_objects`.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf


def lambda_schedule(step, base: float, gamma: float, power: float, minimum: float):
    """Annealing weight of the plain logit: max(minimum, base * (1 + gamma * step) ** -power).

    Reference: W. Liu et al., "Large-Margin Softmax Loss for Convolutional Neural Networks",
    ICML 2016 (the schedule of the authors' released code).
    """
    step = tf.cast(step, tf.float32)
    return tf.maximum(minimum, base * tf.pow(1.0 + gamma * step, -power))


def gamma_for_steps(anneal_steps: int) -> float:
    """The `gamma` that stretches the authors' schedule (gamma 2.5e-5 over 8000 steps) to a run.

    With base 1000 and power 35, lambda then falls to about 1.7 at `anneal_steps`, as it does after
    8000 iterations with the original constants.
    """
    return 2.5e-5 * 8000.0 / max(1, int(anneal_steps))


def chebyshev_cos_multiple(cos_theta, margin: int):
    """cos(m * theta) from cos(theta) with the Chebyshev recurrence T_m (no acos, stable gradients)."""
    previous, current = tf.ones_like(cos_theta), cos_theta
    if margin == 0:
        return previous
    for _ in range(margin - 1):
        previous, current = current, 2.0 * cos_theta * current - previous
    return current


def _stable_norm(values, axis, epsilon: float):
    """Euclidean norm that neither overflows for huge entries nor has a NaN gradient at zero."""
    scale = tf.stop_gradient(tf.reduce_max(tf.abs(values), axis=axis, keepdims=True))
    scale = tf.where(scale > 0.0, scale, tf.ones_like(scale))
    scaled = values / scale
    norm = tf.sqrt(tf.reduce_sum(tf.square(scaled), axis=axis, keepdims=True) + epsilon)
    return tf.squeeze(norm * scale, axis=axis)


def large_margin_logits(
    features, kernel, labels, margin: int, lambda_value, epsilon: float = 1e-12
):
    """Logits of L-softmax: the true class's logit is replaced by an annealed angular-margin logit.

    For class weights W_j (columns of `kernel`) and a feature x, the plain logit is W_j.x =
    |W_j||x|cos(theta_j). For the label y, psi(theta) = (-1)^k cos(m theta) - 2k on
    [k pi/m, (k+1) pi/m] and f_y = (lambda W_y.x + |W_y||x| psi(theta_y)) / (1 + lambda).

    Args:
        features: float [batch, dim] (float32, or float64 for gradient checks).
        kernel: float [dim, classes], same dtype.
        labels: integer [batch] class ids.
        margin: integer m >= 1; m = 1 gives the plain logits.
        lambda_value: scalar annealing weight (large early in training, 0 at the full margin).
    Returns:
        [batch, classes] in the dtype of `features`.
    Reference: W. Liu et al., "Large-Margin Softmax Loss for Convolutional Neural Networks", ICML 2016.
    """
    logits = tf.matmul(features, kernel)
    labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)
    one_hot = tf.one_hot(labels, tf.shape(kernel)[1], dtype=logits.dtype)
    target_logit = tf.reduce_sum(logits * one_hot, axis=1)
    weight_norm = tf.gather(_stable_norm(kernel, axis=0, epsilon=epsilon), labels)
    feature_norm = _stable_norm(features, axis=1, epsilon=epsilon)
    norm_product = weight_norm * feature_norm
    cos_theta = tf.clip_by_value(target_logit / norm_product, -1.0, 1.0)
    # k is the index of the interval [k pi/m, (k+1) pi/m] holding theta; it carries no gradient.
    boundaries = tf.constant(
        [math.cos(j * math.pi / margin) for j in range(1, margin)],
        cos_theta.dtype,
        shape=[margin - 1],
    )
    k = tf.stop_gradient(
        tf.reduce_sum(tf.cast(cos_theta[:, None] < boundaries[None, :], cos_theta.dtype), axis=1)
    )
    sign = 1.0 - 2.0 * tf.math.floormod(k, 2.0)
    psi = sign * chebyshev_cos_multiple(cos_theta, margin) - 2.0 * k
    lambda_value = tf.cast(lambda_value, logits.dtype)
    margin_logit = (lambda_value * target_logit + norm_product * psi) / (1.0 + lambda_value)
    return logits + one_hot * (margin_logit - target_logit)[:, None]


@keras.saving.register_keras_serializable(package="musicnext_tf")
class LSoftmax(keras.layers.Layer):
    """Bias-free dense classifier whose training logits carry the L-softmax angular margin.

    `call(features)` returns plain logits W^T x (inference and serving never need labels);
    `call(features, labels=labels, training=True)` returns margin logits and advances the
    annealing step. The step is a non-trainable weight, so it is saved with checkpoints and the
    lambda schedule resumes where it stopped. The layer always computes in float32.

    Args:
        units: number of classes.
        margin: integer m >= 1 (m = 1 is the plain softmax classifier without bias).
        lambda_base, lambda_gamma, lambda_power, lambda_min: see `lambda_schedule`.
    """

    def __init__(
        self,
        units: int,
        margin: int = 4,
        lambda_base: float = 1000.0,
        lambda_gamma: float = 2.5e-5,
        lambda_power: float = 35.0,
        lambda_min: float = 0.0,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        kwargs["dtype"] = "float32"  # margin math needs float32 even under mixed precision
        super().__init__(**kwargs)
        if int(margin) != margin or margin < 1:
            raise ValueError(f"LSoftmax margin must be a positive integer, got {margin!r}")
        self.units = int(units)
        self.margin = int(margin)
        self.lambda_base = float(lambda_base)
        self.lambda_gamma = float(lambda_gamma)
        self.lambda_power = float(lambda_power)
        self.lambda_min = float(lambda_min)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        self.kernel = self.add_weight(
            name="kernel",
            shape=(input_shape[-1], self.units),
            initializer=self.kernel_initializer,
        )
        self.anneal_step = self.add_weight(
            name="anneal_step",
            shape=(),
            initializer="zeros",
            dtype="int64",
            trainable=False,
            aggregation="only_first_replica",
        )

    @property
    def current_lambda(self):
        """The annealing weight that the next training step will use."""
        return lambda_schedule(
            self.anneal_step,
            self.lambda_base,
            self.lambda_gamma,
            self.lambda_power,
            self.lambda_min,
        )

    def call(self, features, labels=None, training=None):
        features = tf.cast(features, tf.float32)
        if not training or labels is None or self.margin == 1:
            return tf.matmul(features, self.kernel)
        lambda_value = self.current_lambda
        self.anneal_step.assign_add(1)
        return large_margin_logits(features, self.kernel, labels, self.margin, lambda_value)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        config = super().get_config()
        config.update(
            units=self.units,
            margin=self.margin,
            lambda_base=self.lambda_base,
            lambda_gamma=self.lambda_gamma,
            lambda_power=self.lambda_power,
            lambda_min=self.lambda_min,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config


@keras.saving.register_keras_serializable(package="musicnext_tf")
class LayerScale(keras.layers.Layer):
    """Learnable per-channel scale of a residual branch (ConvNeXt), initialised to a small value.

    Reference: H. Touvron et al., "Going deeper with Image Transformers", ICCV 2021.
    """

    def __init__(self, init_value: float, **kwargs):
        super().__init__(**kwargs)
        self.init_value = float(init_value)

    def build(self, input_shape):
        self.gamma = self.add_weight(
            name="gamma",
            shape=(input_shape[-1],),
            initializer=keras.initializers.Constant(self.init_value),
        )

    def call(self, inputs):
        return inputs * tf.cast(self.gamma, inputs.dtype)

    def get_config(self):
        config = super().get_config()
        config.update(init_value=self.init_value)
        return config


def _replica_position() -> tuple:
    """(this replica's index, the number of replicas) under a tf.distribute strategy; (0, 1)
    outside one."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return 0, 1
    return tf.cast(context.replica_id_in_sync_group, tf.int32), context.num_replicas_in_sync


@keras.saving.register_keras_serializable(package="musicnext_tf")
class StochasticDepth(keras.layers.Layer):
    """Drops a whole residual branch per example with probability `rate` during training.

    Reference: G. Huang et al., "Deep Networks with Stochastic Depth", ECCV 2016.
    """

    def __init__(self, rate: float, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=None):
        if not training or self.rate == 0.0:
            return inputs
        keep = 1.0 - self.rate
        rows = tf.shape(inputs)[0]
        replica, replicas = _replica_position()
        # every replica advances the same (mirrored) generator alike, so each draws the decisions
        # of all replicas' rows and keeps its own: no two replicas drop the same rows
        noise = keras.random.uniform(
            (replicas * rows,), dtype=inputs.dtype, seed=self.seed_generator
        )
        noise = noise[replica * rows : (replica + 1) * rows]
        noise = tf.reshape(noise, [rows] + [1] * (len(inputs.shape) - 1))
        return inputs * tf.floor(keep + noise) / keep

    def get_config(self):
        config = super().get_config()
        config.update(rate=self.rate, seed=self.seed)
        return config
