"""LiteRT export: size and agreement with the TensorFlow path of each quantization, per variant.

    python -m benchmarks.litert_accuracy RUN_DIR [--out DIR]

Exports RUN_DIR's model in every variant of `litert.QUANTIZATIONS` and runs the recordings of its
test split (RUN_DIR/split.csv) through the `waveform` and `mel` entry points; the references are
`ClipClassifier.classify_waveform` and `.segments` (the SavedModel's graphs) on the same float32
FFT log-mel. Prints each variant's size, the max abs probability differences and the test clip
accuracy (argmax of the mean over the clip's whole segments), and the `waveform` time per
recording (one at a time, the interpreter's default threads).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

from musicnext_tf.inference import ClipClassifier, load_trained_model
from musicnext_tf.litert import QUANTIZATIONS, export_litert
from musicnext_tf.prepare import FeatureExtractor


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, help="where the .tflite files go (default: a temp dir)")
    args = parser.parse_args(argv)
    from ai_edge_litert.interpreter import Interpreter

    trained = load_trained_model(args.run_dir)
    config = trained.config
    config = dataclasses.replace(
        config, features=dataclasses.replace(config.features, fft_dtype="float32")
    )
    clips = ClipClassifier(
        trained.classifier, config.features, config.audio.sample_rate, trained.genres
    )
    extract = FeatureExtractor(config)
    with (args.run_dir / "split.csv").open() as file:
        rows = [r for r in csv.DictReader(file) if r["split"] == "test" and r["status"] == "kept"]
    audio = [soundfile.read(row["path"], dtype="float32")[0] for row in rows]
    labels = np.array([trained.genres.index(row["genre"]) for row in rows])
    reference = np.concatenate([clips.classify_waveform(a[None])["probabilities"] for a in audio])
    segments = [extract(a)[..., None] for a in audio]
    mel_reference = [clips.segments(s)["probabilities"].numpy() for s in segments]
    print(f"{len(rows)} test recordings; TensorFlow clip accuracy {_accuracy(reference, labels)}")
    print(
        "variant       MB    waveform max|dp|  mel max|dp|  ms/clip  clip accuracy (waveform, mel)"
    )
    out = args.out or Path(tempfile.mkdtemp(prefix="litert-"))
    for quantize in QUANTIZATIONS:
        path = export_litert(trained, out, quantize)
        interpreter = Interpreter(model_path=str(path))
        waveform, mel = (interpreter.get_signature_runner(k) for k in ("waveform", "mel"))
        start = time.perf_counter()
        by_waveform = np.concatenate([waveform(waveform=a[None])["probabilities"] for a in audio])
        seconds = (time.perf_counter() - start) / len(audio)
        by_mel = [mel(segments=s)["probabilities"] for s in segments]
        mel_error = max(np.abs(p - q).max() for p, q in zip(by_mel, mel_reference))
        mel_clips = np.stack([p.mean(axis=0) for p in by_mel])
        print(
            f"{quantize:12s} {path.stat().st_size / 1e6:5.2f}   "
            f"{np.abs(by_waveform - reference).max():.2e}          {mel_error:.2e}     "
            f"{seconds * 1e3:5.0f}    "
            f"{_accuracy(by_waveform, labels)}, {_accuracy(mel_clips, labels)}"
        )


def _accuracy(probabilities: np.ndarray, labels: np.ndarray) -> str:
    correct = int((probabilities.argmax(axis=-1) == labels).sum())
    return f"{correct}/{len(labels)} = {correct / len(labels):.4f}"


if __name__ == "__main__":
    main()
