"""MusicNeXt for music genre classification, in Keras 3 / TensorFlow.

The public API: `MusicNeXt` (the classifier), `ConvNeXt` and `ResNet` (the ablation's baselines),
`LSoftmax` and `LSoftmaxLoss` (the genre-sensitive adjustment layer and its loss),
`LogMelSpectrogram` (the in-graph features). Importing the package
registers these classes with Keras, so `keras.saving.load_model("model.keras")` needs no
`custom_objects`; it changes no other global state (no dtype policy, no seeds, no logging setup).
"""

__version__ = "0.1.0"

from musicnext_tf.startup import import_tensorflow  # noqa: E402

import_tensorflow()  # first, so that TensorFlow's start-up chatter stays off the terminal

from musicnext_tf.baselines import ConvNeXt, ResNet  # noqa: E402
from musicnext_tf.features import LogMelSpectrogram  # noqa: E402
from musicnext_tf.layers import LayerScale, LSoftmax, StochasticDepth  # noqa: E402
from musicnext_tf.losses import LSoftmaxLoss  # noqa: E402
from musicnext_tf.model import MusicNeXt, build_model, training_model  # noqa: E402

__all__ = [
    "ConvNeXt",
    "LSoftmax",
    "LSoftmaxLoss",
    "LayerScale",
    "LogMelSpectrogram",
    "MusicNeXt",
    "ResNet",
    "StochasticDepth",
    "build_model",
    "training_model",
]
