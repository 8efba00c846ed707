"""The L-softmax loss: softmax cross-entropy over the logits of an `LSoftmax` head, in float32."""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="musicnext_tf")
class LSoftmaxLoss(keras.losses.Loss):
    """Cross-entropy of integer genre labels against L-softmax logits.

    During training the `LSoftmax` layer emits margin logits (the true class's logit shrunk by the
    angular margin), so this cross-entropy is the L-softmax loss of Liu et al. (2016); on plain
    logits (evaluation) it is the ordinary softmax cross-entropy, which makes test losses of the
    softmax and L-softmax heads comparable. Logits are cast to float32 so the loss stays exact
    under mixed precision.

    Reference: W. Liu et al., "Large-Margin Softmax Loss for Convolutional Neural Networks", ICML 2016.
    """

    def __init__(
        self, name: str = "lsoftmax_loss", reduction: str = "sum_over_batch_size", **kwargs
    ):
        super().__init__(name=name, reduction=reduction, **kwargs)

    def call(self, y_true, y_pred):
        labels = tf.cast(tf.reshape(y_true, [-1]), tf.int32)
        logits = tf.cast(y_pred, tf.float32)
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
