"""MusicNeXt for music genre classification, in Keras 3 / TensorFlow.

The public API: `MusicNeXt` (the classifier), `ConvNeXt` and `ResNet` (the ablation's baselines),
`LSoftmax` and `LSoftmaxLoss` (the genre-sensitive adjustment layer and its loss),
`LogMelSpectrogram` (the in-graph features), `build_model` and `training_model`.

Importing the package is cheap and changes nothing: TensorFlow is imported (with its start-up
chatter held back, see `startup`) when one of these names is first used (PEP 562), so the command
line answers `--help` at once. Using any of them registers the custom classes with Keras; to load a
`.keras` model file with plain `keras.saving.load_model`, call `register_keras_objects()` first.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_PUBLIC = {  # name -> the module defining it
    "ConvNeXt": "musicnext_tf.baselines",
    "ResNet": "musicnext_tf.baselines",
    "LogMelSpectrogram": "musicnext_tf.features",
    "LayerScale": "musicnext_tf.layers",
    "LSoftmax": "musicnext_tf.layers",
    "StochasticDepth": "musicnext_tf.layers",
    "LSoftmaxLoss": "musicnext_tf.losses",
    "MusicNeXt": "musicnext_tf.model",
    "build_model": "musicnext_tf.model",
    "training_model": "musicnext_tf.model",
}
__all__ = sorted(_PUBLIC) + ["register_keras_objects"]


def register_keras_objects() -> None:
    """Imports TensorFlow quietly and the modules whose classes Keras must know to load a model."""
    from musicnext_tf.startup import import_tensorflow

    import_tensorflow()
    for module in sorted(set(_PUBLIC.values())):
        importlib.import_module(module)


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'musicnext_tf' has no attribute {name!r}")
    register_keras_objects()
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
