"""LiteRT export: the `mel` and `waveform` entry points run in the plain LiteRT interpreter and
agree with the TensorFlow graphs the SavedModel exports; the quantized variants stay close, keep
the log-mel front end in float32 and are smaller."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import timbre_clip

pytest.importorskip(
    "ai_edge_litert",
    reason="the LiteRT interpreter is not installed: pip install -e '.[litert]' (ai-edge-litert)",
)
from ai_edge_litert.interpreter import Interpreter  # noqa: E402

from musicnext_tf.inference import (  # noqa: E402
    SEGMENTS_PER_STEP,
    ClipClassifier,
    load_trained_model,
)
from musicnext_tf.litert import FRONT_END, QUANTIZATIONS, export_litert  # noqa: E402

RATE = 22050
FLOAT_TOLERANCE = 1e-4  # unquantized against TensorFlow: float32 round-off only
# quantized against unquantized, in probabilities: both move them by up to ~1e-3 per segment here;
# on the demo run (`benchmarks/litert_accuracy.py`) float16 by 5e-4 and dynamic int8 by 2e-2
QUANTIZED_TOLERANCE = {"float16": 5e-3, "dynamic-int8": 0.1}


@pytest.fixture(scope="module")
def trained(tiny_run):
    return load_trained_model(tiny_run)


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory) -> dict[str, Path]:
    """Every variant, converted once for the module, in one folder."""
    folder = tmp_path_factory.mktemp("litert")
    return {quantize: export_litert(trained, folder, quantize) for quantize in QUANTIZATIONS}


@pytest.fixture(scope="module")
def clips(trained) -> ClipClassifier:
    """The TensorFlow graphs of the SavedModel's signatures."""
    return ClipClassifier.from_trained(trained)


@pytest.fixture(scope="module")
def segments(tiny_run) -> np.ndarray:
    """Seven real log-mel segments [7, 64, 32, 1] from the run's feature cache (several clips)."""
    entries = sorted((tiny_run.parent / "cache").glob("features/*/entries/*.npy"))
    stacked = np.concatenate([np.load(path)[:2] for path in entries[:4]])[:7]
    return stacked[..., None].astype(np.float32)


@pytest.fixture(scope="module")
def waveforms() -> list[np.ndarray]:
    """Batches of clips [clips, samples]: two 3 s clips, and one 19 s clip (25 segments: two steps
    of the WHILE loop) that starts with 3 s of digital silence."""
    rng = np.random.default_rng(7)
    pair = np.stack([timbre_clip(kind, 3.0, RATE, rng) for kind in ("drone", "clicks")])
    long = timbre_clip("sweeps", 19.0, RATE, rng)
    long[: 3 * RATE] = 0.0
    assert len(long) // 256 // 64 > SEGMENTS_PER_STEP
    return [pair, long[None]]


def runners(path: Path):
    interpreter = Interpreter(model_path=str(path))
    assert set(interpreter.get_signature_list()) == {"mel", "waveform"}
    return interpreter.get_signature_runner("mel"), interpreter.get_signature_runner("waveform")


def test_unquantized_entry_points_agree_with_tensorflow(exported, clips, segments, waveforms):
    mel, waveform = runners(exported["none"])
    for batch in (1, 7):
        expected = clips.segments(segments[:batch])["probabilities"].numpy()
        outputs = mel(segments=segments[:batch])
        assert outputs["probabilities"].shape == (batch, 3)
        assert np.abs(outputs["probabilities"] - expected).max() <= FLOAT_TOLERANCE
        assert outputs["class_id"].tolist() == expected.argmax(axis=1).tolist()
    for audio in waveforms:  # two lengths and batches through one interpreter: dynamic shapes
        expected = clips.classify_waveform(audio)["probabilities"]
        outputs = waveform(waveform=audio)
        assert outputs["probabilities"].shape == (len(audio), 3)
        assert np.abs(outputs["probabilities"] - expected).max() <= FLOAT_TOLERANCE
        assert outputs["class_id"].tolist() == expected.argmax(axis=1).tolist()


@pytest.mark.parametrize("quantize", ["float16", "dynamic-int8"])
def test_quantized_variants_stay_close_to_the_float_model(exported, segments, waveforms, quantize):
    tolerance = QUANTIZED_TOLERANCE[quantize]
    (float_mel, float_waveform), (mel, waveform) = (
        runners(exported["none"]),
        runners(exported[quantize]),
    )
    pairs = [(mel(segments=segments), float_mel(segments=segments))]
    pairs += [(waveform(waveform=a), float_waveform(waveform=a)) for a in waveforms]
    for outputs, reference in pairs:
        probabilities = outputs["probabilities"]
        assert np.isfinite(probabilities).all()  # also for the silent segments
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
        assert np.abs(probabilities - reference["probabilities"]).max() <= tolerance


def test_quantization_leaves_the_log_mel_front_end_in_float32(exported):
    """The converter would store the mel filterbank as int8 or float16, and the log floor 1e-10 as
    float16 (0): every constant an op of the front end reads must stay float (or integer)."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    quantized_types = {schema.TensorType.INT8, schema.TensorType.FLOAT16}
    for quantize, path in exported.items():
        model = flatbuffer_utils.read_model(str(path))
        kinds = {}
        for graph in model.subgraphs:
            for index in {index for op in graph.operators for index in op.inputs}:
                tensor = graph.tensors[index]
                data = model.buffers[tensor.buffer].data
                if FRONT_END.search(tensor.name.decode()) and data is not None and len(data):
                    kinds[tensor.name.decode()] = tensor.type
        floats = [name for name, kind in kinds.items() if kind == schema.TensorType.FLOAT32]
        assert len(floats) >= 4, (quantize, kinds)  # filterbank, window, log floor, dB factor
        assert not quantized_types & set(kinds.values()), (quantize, kinds)


def test_builtin_ops_only_with_rfft2d_and_a_while_loop(exported):
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.python.schema_util import get_builtin_code_from_operator_code
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(exported["none"]))
    codes = {get_builtin_code_from_operator_code(code) for code in model.operatorCodes}
    assert schema.BuiltinOperator.CUSTOM not in codes  # Flex (SELECT_TF_OPS) ops are custom ops
    assert {schema.BuiltinOperator.RFFT2D, schema.BuiltinOperator.WHILE} <= codes


def test_quantized_files_are_smaller(exported):
    sizes = {quantize: path.stat().st_size for quantize, path in exported.items()}
    assert sizes["dynamic-int8"] < sizes["float16"] < sizes["none"], sizes


def test_labels_and_file_names(exported, trained):
    folder = exported["none"].parent
    assert (folder / "labels.txt").read_text().splitlines() == list(trained.genres)
    assert sorted(p.name for p in folder.glob("*.tflite")) == [
        "folder-dynamic-int8.tflite",
        "folder-float16.tflite",
        "folder.tflite",
    ]


def test_unknown_quantization_is_refused(trained, tmp_path):
    with pytest.raises(ValueError, match="none, float16, dynamic-int8.*'int4'"):
        export_litert(trained, tmp_path, "int4")
    assert list(tmp_path.iterdir()) == []


def test_cli_exports_litert_files_and_refuses_quantize_for_savedmodels(tiny_run, tmp_path, capsys):
    from musicnext_tf import cli

    base = tmp_path / "edge"
    common = ["export", str(tiny_run), "--base", str(base)]
    assert cli.main([*common, "--format", "litert", "--quantize", "float16", "--name", "t"]) == 0
    assert capsys.readouterr().out.strip() == str(base / "t" / "t-float16.tflite")
    assert (base / "t" / "labels.txt").read_text().splitlines() == ["clicks", "drone", "sweeps"]
    assert cli.main([*common, "--quantize", "dynamic-int8"]) == 2
    assert "--quantize applies to --format litert only" in capsys.readouterr().err
    assert sorted(path.name for path in (base / "t").iterdir()) == [
        "labels.txt",
        "t-float16.tflite",
    ]
