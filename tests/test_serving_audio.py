"""The exported `waveform` and `wav` signatures take audio as clients have it (any supported rate,
stereo, WAV bytes) and agree with `musicnext-tf predict`, which decodes, mixes and resamples
with soxr; the README's REST request, built by its own command line, runs through the exported
signature in a fresh process that cannot import musicnext_tf."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import tensorflow as tf
from helpers import timbre_clip
from test_export import GENRES, run_python

from musicnext_tf.export import export_run
from musicnext_tf.inference import load_trained_model
from musicnext_tf.predict import predict_files

README = Path(__file__).resolve().parent.parent / "README.md"
PARITY = 1e-4  # class probabilities, in-graph resampler vs soxr: measured ~1e-6 on real music


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory) -> Path:
    return export_run(tiny_run, base=tmp_path_factory.mktemp("exports") / "saved_models")


@pytest.fixture(scope="module")
def loaded(exported):
    return tf.saved_model.load(str(exported))


def write_clip(path: Path, kind: str, rate: int, channels: int, subtype: str, seed: int) -> Path:
    """Eight seconds of a timbre class at `rate`, each channel its own take (a real stereo
    difference), written as a WAV file with `subtype`."""
    rng = np.random.default_rng(seed)
    audio = np.stack([timbre_clip(kind, 8.0, rate, rng) for _ in range(channels)], axis=1)
    soundfile.write(str(path), 0.9 * audio / np.abs(audio).max(), rate, subtype=subtype)
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """Files as users have them: stereo 44.1 kHz 16-bit, mono 48 kHz 24-bit, mono 16 kHz float."""
    folder = tmp_path_factory.mktemp("clips")
    return {
        "stereo 44.1 kHz": write_clip(folder / "a.wav", "sweeps", 44100, 2, "PCM_16", 1),
        "48 kHz": write_clip(folder / "b.wav", "drone", 48000, 1, "PCM_24", 2),
        "16 kHz": write_clip(folder / "c.wav", "clicks", 16000, 1, "FLOAT", 3),
    }


@pytest.fixture(scope="module")
def predicted(tiny_run, clips) -> dict[str, np.ndarray]:
    """`predict`'s probabilities (soundfile, mean of the channels, soxr HQ) per clip."""
    trained = load_trained_model(tiny_run)
    results = predict_files(trained, list(clips.values()), progress=False)
    return {
        name: np.array([result.probabilities[genre] for genre in GENRES])
        for name, result in zip(clips, results)
    }


def test_waveform_signature_takes_any_supported_rate_and_channels(loaded, clips, predicted):
    serve = loaded.signatures["waveform"]
    for name, path in clips.items():
        audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
        outputs = serve(audio=tf.constant(audio[None]), sample_rate=tf.constant(rate))
        difference = np.abs(outputs["probabilities"].numpy()[0] - predicted[name]).max()
        assert difference <= PARITY, (name, difference)
        assert outputs["genre"].numpy()[0].decode() == GENRES[predicted[name].argmax()]
    # one rate per clip (TF Serving's row format sends one per instance), all equal
    audio, rate = soundfile.read(str(clips["48 kHz"]), dtype="float32", always_2d=True)
    batch = np.stack([audio, audio])
    twice = serve(audio=tf.constant(batch), sample_rate=tf.constant([rate, rate]))
    np.testing.assert_allclose(twice["probabilities"][0], twice["probabilities"][1], atol=1e-6)
    with pytest.raises(tf.errors.InvalidArgumentError, match="share one sample_rate"):
        serve(audio=tf.constant(batch), sample_rate=tf.constant([rate, 44100]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="44100"):
        serve(audio=tf.constant(batch), sample_rate=tf.constant(12345))


def test_wav_signature_decodes_files_of_any_length_rate_and_encoding(loaded, clips, predicted):
    contents = [path.read_bytes() for path in clips.values()]
    outputs = loaded.signatures["wav"](wav=tf.constant(contents))
    probabilities = outputs["probabilities"].numpy()
    assert probabilities.shape == (3, 3) and outputs["embedding"].shape == (3, 16)
    for row, name in enumerate(clips):
        difference = np.abs(probabilities[row] - predicted[name]).max()
        assert difference <= PARITY, (name, difference)
    with pytest.raises(tf.errors.InvalidArgumentError, match="RIFF"):
        loaded.signatures["wav"](wav=tf.constant([b"ID3\x04 not a wav file at all"]))


# Emulates TF Serving's REST front end for a row-format request ({"b64": ...} is a binary string)
# and runs the request through the SavedModel, as the server would; musicnext_tf is unimportable.
REST_SERVER = """
import base64, json, sys
sys.modules["musicnext_tf"] = None
import tensorflow as tf

saved_model, request_file = sys.argv[1:]
request = json.loads(open(request_file).read())
signature = tf.saved_model.load(saved_model).signatures[request["signature_name"]]
(name,) = signature.structured_input_signature[1]
def value(entry):
    return base64.b64decode(entry["b64"]) if isinstance(entry, dict) else entry
inputs = {name: tf.constant([value(entry) for entry in request["instances"]])}
outputs = signature(**inputs)
rows = [
    {key: (v[i].numpy().tolist() if v.dtype != tf.string else v[i].numpy().decode())
     for key, v in outputs.items()}
    for i in range(len(request["instances"]))
]
print(json.dumps({"predictions": rows}))
"""


def readme_request_command() -> str:
    """The README's one-line REST request builder (a `python3 -c '...' song.wav` line)."""
    (line,) = re.findall(r"^python3 -c '.*' song\.wav > request\.json$", README.read_text(), re.M)
    return line


def test_readme_rest_request_gives_predicts_genre(exported, clips, predicted, tmp_path):
    song = tmp_path / "song.wav"
    song.write_bytes(clips["stereo 44.1 kHz"].read_bytes())
    command = readme_request_command().replace("python3", sys.executable, 1)
    subprocess.run(command, shell=True, cwd=tmp_path, check=True, timeout=60)
    request = json.loads((tmp_path / "request.json").read_text())
    assert request["signature_name"] == "wav" and len(request["instances"]) == 1

    server = tmp_path / "server.py"
    server.write_text(REST_SERVER)
    result = run_python([str(server), str(exported), str(tmp_path / "request.json")])
    (prediction,) = json.loads(result.stdout.strip().splitlines()[-1])["predictions"]
    expected = predicted["stereo 44.1 kHz"]
    assert prediction["genre"] == GENRES[expected.argmax()]
    assert np.abs(np.array(prediction["probabilities"]) - expected).max() <= PARITY
