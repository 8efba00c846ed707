"""LiteRT (TFLite) export: one `.tflite` file with two signatures, for phones and small devices.

    mel       segments float32 [batch, segment_frames, n_mels, 1] (log-mel in dB, before
              standardisation, as the SavedModel's serving_default takes them)
              -> probabilities float32 [batch, classes], class_id int64 [batch]; one row per segment
    waveform  waveform float32 [clips, samples] (mono, at the run's sample rate, at least
              `min_samples(features)` samples) -> probabilities float32 [clips, classes], class_id
              int64 [clips]: the mean over each clip's whole segments

Every dimension is dynamic except the segment and mel sizes: any batch, and any length of waveform
(`get_signature_runner` resizes the inputs to the arrays it is given). `waveform` is the graph the
SavedModel runs for mono waveforms (`ClipClassifier`): a WHILE loop over steps of
`SEGMENTS_PER_STEP` segments per clip, so memory stays bounded for long recordings, with the STFT
as RFFT2D. Only builtin ops are used (no Flex / SELECT_TF_OPS), so the plain `ai_edge_litert`
interpreter runs the file. LiteRT cannot raise errors: a waveform shorter than `min_samples` (no
whole segment) gives NaN probabilities where the SavedModel fails.

The FFT runs in float32 whatever the run's `fft_dtype` (LiteRT has no complex128). Quantization
shrinks the classifier's weights: "float16" stores them as float16 (computed in float32),
"dynamic-int8" as int8 with activations quantized on the fly (dynamic range quantization, no
calibration data). The converter would quantize the log-mel front end's constants too, which breaks
it: dynamic int8 of the mel filterbank quantizes each frame's power spectrum to 8 bits, zeroing
every bin more than ~24 dB below the frame's loudest (quiet bands fall to the -100 dB floor), and
float16 turns the log floor 1e-10 into 0, so digital silence gives -inf dB and NaN probabilities.
`_restore_front_end` puts the front end's constants back in float32: it is exactly the float one.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from musicnext_tf.config import QUANTIZATIONS
from musicnext_tf.files import atomic_write
from musicnext_tf.inference import ClipClassifier, TrainedModel

SIGNATURES = ("mel", "waveform")
FRONT_END = re.compile(r"(^|/)log_mel(_\d+)?/")  # the name scope of `ClipClassifier`'s log-mel
log = logging.getLogger(__name__)


def export_litert(
    trained: TrainedModel,
    folder: str | os.PathLike,
    quantize: str = "none",
    name: str | None = None,
) -> Path:
    """Writes `folder/<name>.tflite` and `folder/labels.txt` (the genres in class-id order, one per
    line) and returns the `.tflite` path. NAME defaults to the run's dataset; `-<quantize>` is
    appended unless `quantize` is "none", so that the variants of a run can share a folder.

    Raises:
        ValueError: `quantize` is not one of `QUANTIZATIONS`.
    """
    check_quantize(quantize)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = (name or trained.config.data.name) + ("" if quantize == "none" else f"-{quantize}")
    path = folder / f"{name}.tflite"
    atomic_write(path, convert(trained, quantize))
    atomic_write(folder / "labels.txt", "".join(f"{g}\n" for g in trained.genres).encode("utf-8"))
    log.info("exported %s as %s (quantization: %s)", trained.model_file, path, quantize)
    return path


def check_quantize(quantize: str) -> str:
    """`quantize` if it is one of `QUANTIZATIONS`, else ValueError naming them."""
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be one of {', '.join(QUANTIZATIONS)}; got {quantize!r}")
    return quantize


def convert(trained: TrainedModel, quantize: str = "none") -> bytes:
    """The `.tflite` flatbuffer of `trained` with the `SIGNATURES` entry points."""
    check_quantize(quantize)
    functions = signature_functions(trained)
    ordered = [functions[key] for key in SIGNATURES]
    model = _convert(ordered, "none")
    if quantize != "none":  # the unquantized model gives the front end's exact constants
        model = _restore_front_end(_convert(ordered, quantize), model)
    return bytes(model)


def _convert(functions: list, quantize: str) -> bytes:
    """One conversion; builtin ops only, so that it fails rather than needing the Flex delegate."""
    converter = tf.lite.TFLiteConverter.from_concrete_functions(functions, tf.Module())
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    return converter.convert()


def signature_functions(trained: TrainedModel) -> dict[str, tf.types.experimental.ConcreteFunction]:
    """The entry points as concrete functions named after their signature keys (the converter
    names the signatures after the functions), with the classifier's weights as constants.

    The converter freezes the variables read in a function's main graph but not those read inside
    the WHILE body of `waveform`: they would stay READ_VARIABLE ops that fail at run time. So the
    functions are traced in a `keras.StatelessScope` that maps every weight to a constant.
    """
    features = dataclasses.replace(trained.config.features, fft_dtype="float32")
    clips = ClipClassifier(
        trained.classifier, features, trained.config.audio.sample_rate, trained.genres
    )
    weights = [
        (v, tf.constant(keras.ops.convert_to_numpy(v))) for v in trained.classifier.variables
    ]

    def outputs(probabilities: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"probabilities": probabilities, "class_id": tf.argmax(probabilities, axis=-1)}

    def mel(segments):
        with keras.StatelessScope(state_mapping=weights):
            return outputs(clips.segments(segments)["probabilities"])

    def waveform(waveform):
        with keras.StatelessScope(state_mapping=weights):
            return outputs(clips.mono(waveform, timeline=False)["probabilities"])

    mel_graph = tf.function(mel, input_signature=[clips.segments_spec])
    waveform_graph = tf.function(waveform, input_signature=[clips.mono_spec])
    return {
        "mel": mel_graph.get_concrete_function(),
        "waveform": waveform_graph.get_concrete_function(),
    }


def _restore_front_end(quantized: bytes, reference: bytes) -> bytearray:
    """Puts the log-mel front end's constants that the converter quantized back in float32.

    The front end's tensors are those in the `log_mel` layer's name scope (`FRONT_END`); their
    exact values come from the same tensors of the unquantized conversion `reference`. An int8
    weight becomes float32 in place (its op then runs in float); a float16 constant is read through
    a DEQUANTIZE op, which is removed, its output becoming the float32 constant.
    """
    # the flatbuffer schema and reader that ship with the converter
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.python.schema_util import get_builtin_code_from_operator_code
    from tensorflow.lite.tools import flatbuffer_utils

    exact = {}
    original = flatbuffer_utils.read_model_from_bytearray(bytearray(reference))
    for position, graph in enumerate(original.subgraphs):
        for tensor in graph.tensors:
            data = original.buffers[tensor.buffer].data
            if FRONT_END.search(tensor.name.decode()) and data is not None and len(data):
                if tensor.type == schema.TensorType.FLOAT32:
                    exact[position, tensor.name] = np.asarray(data, np.uint8).copy()

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(quantized))
    if len(model.subgraphs) != len(original.subgraphs):
        raise RuntimeError("the quantized and the float LiteRT models have different subgraphs")
    users = np.bincount(
        [t.buffer for g in model.subgraphs for t in g.tensors], minlength=len(model.buffers)
    )
    dequantize = {
        index
        for index, code in enumerate(model.operatorCodes)
        if get_builtin_code_from_operator_code(code) == schema.BuiltinOperator.DEQUANTIZE
    }

    def store(tensor, data: np.ndarray) -> None:
        buffer = schema.BufferT()
        buffer.data = data
        if users[tensor.buffer] == 1:  # its own buffer: replace it, else add one
            model.buffers[tensor.buffer] = buffer
        else:
            users[tensor.buffer] -= 1
            model.buffers.append(buffer)
            tensor.buffer = len(model.buffers) - 1
        tensor.type = schema.TensorType.FLOAT32
        tensor.quantization = None

    restored = 0
    quantized_types = (schema.TensorType.INT8, schema.TensorType.FLOAT16)
    for position, graph in enumerate(model.subgraphs):
        for index, tensor in enumerate(graph.tensors):
            data = exact.get((position, tensor.name))
            if data is None or tensor.type not in quantized_types:
                continue
            restored += 1
            if tensor.type == schema.TensorType.INT8:
                store(tensor, data)
                continue
            for op in [op for op in graph.operators if op.opcodeIndex in dequantize]:
                if list(op.inputs) == [index]:
                    store(graph.tensors[op.outputs[0]], data)
                    graph.operators.remove(op)
                    users[tensor.buffer] -= 1
            if users[tensor.buffer] == 0:  # the float16 copy is read no more
                model.buffers[tensor.buffer] = schema.BufferT()
    log.debug("restored %d quantized front-end constants to float32", restored)
    return flatbuffer_utils.convert_object_to_bytearray(model)
