"""Serving costs on this CPU: the exported SavedModel and the LiteRT file, per 30 s request.

The model is the benchmark's (the GTZAN preset's MusicNeXt), exported as `export` writes it.
"Model only" is the classifier on the request's segments as already computed log-mel (the
`serving_default` signature; LiteRT's `mel` entry point); each request path is held to it, so the
ratio is the cost of everything the served graph adds: WAV decoding, mixing, resampling, log-mel,
segmenting and averaging.

- latency: one 30 s stereo 44.1 kHz clip per request (batch 1), through `wav` (the file's bytes)
  and `waveform` (the samples and their rate), float32 and mixed_bfloat16 exports;
- throughput: `serving_batch` clips per request through `waveform`;
- LiteRT: its `waveform` entry point (mono at the model's rate) against its `mel` entry point;
- request size: TF Serving's REST JSON of the clip as floats (`waveform`, columnar) against the
  base64 WAV request of the README (`wav`).
"""

from __future__ import annotations

import base64
import copy
import io
import json
import tempfile
from pathlib import Path

import numpy as np
import soundfile
import soxr
import tensorflow as tf

from benchmarks.compute import NUM_CLASSES, Workbench
from benchmarks.corpus import FORMATS, recording
from benchmarks.results import Figure
from benchmarks.timing import best_times
from musicnext_tf.export import write_saved_model
from musicnext_tf.inference import TrainedModel
from musicnext_tf.model import build_model
from musicnext_tf.prepare import FeatureExtractor

FAMILY = "serving"
CLIENT_RATE = 44100  # what clients send: CD-rate stereo


def client_clip(seconds: float) -> np.ndarray:
    """A stereo clip [samples, 2] at `CLIENT_RATE`, the kind of audio a client holds."""
    return recording(FORMATS["mp3"], 0, seconds).astype(np.float32)


def wav_bytes(audio: np.ndarray, rate: int) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, audio, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def request_sizes(audio: np.ndarray, rate: int) -> dict[str, int]:
    """Bytes of the REST JSON bodies: the samples as floats (`waveform`) and the WAV file as
    base64 (`wav`, the README's request)."""
    floats = {
        "signature_name": "waveform",
        "inputs": {"audio": [audio.tolist()], "sample_rate": rate},
    }
    encoded = base64.b64encode(wav_bytes(audio, rate)).decode()
    wav = {"signature_name": "wav", "instances": [{"b64": encoded}]}
    return {"waveform_json": len(json.dumps(floats)), "wav_json": len(json.dumps(wav))}


def exported(bench: Workbench, genres: list[str], folder: Path, precision: str):
    """The benchmark's classifier exported as `export` does, built with `precision`'s policy (the
    float32 weights either way); returns the loaded SavedModel."""
    config = copy.deepcopy(bench.config)
    config.train.precision = precision
    classifier = bench.classifier
    if precision != "float32":
        classifier = build_model(config.model, config.features, NUM_CLASSES, dtype=precision)
        classifier.set_weights(bench.classifier.get_weights())
    trained = TrainedModel(classifier, config, tuple(genres), folder / "model.keras", folder)
    write_saved_model(trained, folder / precision)
    return tf.saved_model.load(str(folder / precision)), trained


def savedmodel_times(loaded, audio, segments, batch: int, repeats: int) -> dict[str, float]:
    """Best seconds per request of each path at batch 1, and at `batch` clips per request."""
    signatures = loaded.signatures
    one = tf.constant(audio[None])
    many = tf.constant(np.repeat(audio[None], batch, axis=0))
    contents = tf.constant([wav_bytes(audio, CLIENT_RATE)])
    rate = tf.constant(CLIENT_RATE)
    one_segments = tf.constant(segments)
    many_segments = tf.constant(np.tile(segments, (batch, 1, 1, 1)))
    return best_times(
        {
            "model_1": lambda: signatures["serving_default"](segments=one_segments),
            "wav_1": lambda: signatures["wav"](wav=contents),
            "waveform_1": lambda: signatures["waveform"](audio=one, sample_rate=rate),
            "model_batch": lambda: signatures["serving_default"](segments=many_segments),
            "waveform_batch": lambda: signatures["waveform"](audio=many, sample_rate=rate),
        },
        repeats,
    )


def litert_times(trained, mono, segments, folder: Path, repeats: int) -> dict[str, float] | None:
    """Best seconds of LiteRT's `waveform` and `mel` entry points on one clip, or None where
    the interpreter is not installed (`pip install "musicnext-tf[litert]"`)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        return None
    from musicnext_tf.litert import export_litert

    path = export_litert(trained, folder / "litert")
    interpreter = Interpreter(model_path=str(path))
    waveform, mel = (interpreter.get_signature_runner(name) for name in ("waveform", "mel"))
    return best_times(
        {
            "litert_waveform": lambda: waveform(waveform=mono[None]),
            "litert_mel": lambda: mel(segments=segments),
        },
        repeats,
    )


def run(bench: Workbench, repeats: int, batch: int) -> list[Figure]:
    config = bench.config
    genres = [f"genre{index}" for index in range(NUM_CLASSES)]
    seconds = config.audio.clip_seconds
    audio = client_clip(seconds)
    mono = soxr.resample(audio.mean(axis=1), CLIENT_RATE, config.audio.sample_rate, quality="HQ")
    mono = mono.astype(np.float32)
    segments = FeatureExtractor(config)(mono)[..., None].astype(np.float32)
    times, trained, figures = {}, {}, []
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        for precision in ("float32", "mixed_bfloat16"):
            loaded, trained[precision] = exported(bench, genres, folder, precision)
            times[precision] = savedmodel_times(loaded, audio, segments, batch, repeats)
        litert = litert_times(trained["float32"], mono, segments, folder, repeats)
    for precision, best in times.items():
        figures += [
            Figure(
                FAMILY,
                f"wav request / model only, batch 1 ({precision})",
                best["wav_1"] / best["model_1"],
                target=1.2 if precision == "float32" else None,
                comparison="<=",
                details={"seconds": best},
            ),
            Figure(
                FAMILY,
                f"waveform request / model only, batch 1 ({precision})",
                best["waveform_1"] / best["model_1"],
                details={"seconds": best},
            ),
            Figure(
                FAMILY,
                f"waveform request / model only, batch {batch} ({precision})",
                best["waveform_batch"] / best["model_batch"],
                details={"seconds": best, "clips_per_second": batch / best["waveform_batch"]},
            ),
        ]
    if litert is not None:
        ratio = litert["litert_waveform"] / litert["litert_mel"]
        name = "LiteRT waveform / mel entry point, batch 1"
        figures.append(Figure(FAMILY, name, ratio, details={"seconds": litert}))
    sizes = request_sizes(audio, CLIENT_RATE)
    figures.append(
        Figure(
            FAMILY,
            f"REST float JSON / base64 WAV request ({seconds:g} s stereo, {CLIENT_RATE} Hz)",
            sizes["waveform_json"] / sizes["wav_json"],
            details={"bytes": sizes},
        )
    )
    return figures
