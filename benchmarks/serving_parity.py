"""The exported `wav` and `waveform` signatures against `musicnext-tf predict` on real recordings.

    python -m benchmarks.serving_parity RUN_DIR AUDIO_FILE_OR_FOLDER... [--seconds S] [--limit N]

Each recording's first S seconds (default 30) are written as the WAV files clients send: stereo
44.1 kHz 16-bit, mono 48 kHz 24-bit and mono 16 kHz float (converted from the recording with
soxr). `predict` classifies each file (soundfile, mean of the channels, soxr HQ to the model's
rate); the SavedModel that `export` writes classifies the same file through `wav` (its bytes) and
`waveform` (its samples and rate), resampling in the graph. Prints the largest absolute class
probability difference per form and overall, and how often the genres differ.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import soundfile
import soxr
import tensorflow as tf

from musicnext_tf.audio import AUDIO_EXTENSIONS
from musicnext_tf.export import export_model
from musicnext_tf.inference import load_trained_model
from musicnext_tf.predict import predict_files

FORMS = {  # name: (rate, channels, subtype)
    "stereo 44.1 kHz 16-bit": (44100, 2, "PCM_16"),
    "mono 48 kHz 24-bit": (48000, 1, "PCM_24"),
    "mono 16 kHz float": (16000, 1, "FLOAT"),
}


def recordings(paths: list[str]) -> list[Path]:
    found = []
    for path in map(Path, paths):
        found += (
            sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)
            if path.is_dir()
            else [path]
        )
    return found


def client_file(recording: Path, form: tuple, seconds: float, target: Path) -> Path:
    """The recording's first `seconds` as a WAV file of `form` (rate, channels, subtype)."""
    rate, channels, subtype = form
    audio, source_rate = soundfile.read(str(recording), dtype="float32", always_2d=True)
    audio = audio[: int(seconds * source_rate)]
    audio = np.repeat(audio, 2, axis=1) if audio.shape[1] == 1 and channels == 2 else audio
    audio = audio[:, :2] if channels == 2 else audio.mean(axis=1, keepdims=True)
    if source_rate != rate:
        audio = soxr.resample(audio, source_rate, rate, quality="HQ")
    soundfile.write(str(target), np.clip(audio, -1.0, 1.0), rate, subtype=subtype)
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serving_parity")
    parser.add_argument("run_dir")
    parser.add_argument("audio", nargs="+")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--limit", type=int, default=20, help="recordings used (default 20)")
    args = parser.parse_args(argv)
    trained = load_trained_model(args.run_dir)
    genres = list(trained.genres)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        loaded = tf.saved_model.load(str(export_model(trained, scratch / "models")))
        files = [
            (name, client_file(recording, form, args.seconds, scratch / f"{index}-{form[0]}.wav"))
            for index, recording in enumerate(recordings(args.audio)[: args.limit])
            for name, form in FORMS.items()
        ]
        predictions = predict_files(trained, [path for _, path in files], progress=False)
        worst, disagreements, count = {}, 0, 0
        for (name, path), expected in zip(files, predictions):
            reference = np.array([expected.probabilities[g] for g in genres])
            audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
            served = {
                "wav": loaded.signatures["wav"](wav=tf.constant([path.read_bytes()])),
                "waveform": loaded.signatures["waveform"](
                    audio=tf.constant(audio[None]), sample_rate=tf.constant(rate)
                ),
            }
            for signature, outputs in served.items():
                difference = float(np.abs(outputs["probabilities"][0] - reference).max())
                key = (name, signature)
                worst[key] = max(worst.get(key, 0.0), difference)
                disagreements += outputs["genre"][0].numpy().decode() != expected.genre
                count += 1
    for (name, signature), difference in worst.items():
        print(f"{name:24s} {signature:9s} max |probability difference| {difference:.2e}")
    print(f"overall max {max(worst.values()):.2e}; genre differs in {disagreements} of {count}")


if __name__ == "__main__":
    main()
