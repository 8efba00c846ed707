"""SavedModel export for TensorFlow Serving: the signatures' contract checked from outside our
package (a fresh Python process that cannot import musicnext_tf, and `saved_model_cli`), versions
that only go up, an export killed half-way, and the export at the end of `fit`."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import soundfile
import tensorflow as tf
from helpers import timbre_clip, tiny_config, write_timbre_dataset

from musicnext_tf import cli
from musicnext_tf.config import resolve
from musicnext_tf.export import STAGING_PREFIX, ExportError, export_run, versions
from musicnext_tf.files import write_json
from musicnext_tf.inference import load_trained_model
from musicnext_tf.model import build_model
from musicnext_tf.predict import predict_files

SUBPROCESS_SECONDS = 180  # bound on every subprocess; each takes 5-10 s here
GENRES = ["clicks", "drone", "sweeps"]


def python_environment() -> dict[str, str]:
    return dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2")


def run_python(arguments: list[str]) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, *arguments],
        env=python_environment(),
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_SECONDS,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def softmax(logits) -> np.ndarray:
    logits = np.asarray(logits, np.float64)
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory) -> Path:
    return export_run(tiny_run, base=tmp_path_factory.mktemp("exports") / "saved_models")


@pytest.fixture(scope="module")
def segments(tiny_run) -> np.ndarray:
    """Seven real log-mel segments [7, 64, 32, 1] from the run's feature cache (several clips)."""
    entries = sorted((tiny_run.parent / "cache").glob("features/*/entries/*.npy"))
    stacked = np.concatenate([np.load(path)[:2] for path in entries[:4]])[:7]
    assert stacked.shape == (7, 64, 32)
    return stacked[..., None].astype(np.float32)


@pytest.fixture(scope="module")
def keras_probabilities(tiny_run, segments) -> np.ndarray:
    classifier = keras.saving.load_model(tiny_run / "model_last.keras")
    return softmax(classifier(segments, training=False))


# Runs with our package made unimportable: the SavedModel must need TensorFlow alone.
FRESH_PROCESS = """
import json, sys
sys.modules["musicnext_tf"] = None  # `import musicnext_tf` now raises ImportError
import numpy as np, soundfile, tensorflow as tf

saved_model, segments_file, audio_file = sys.argv[1:]
loaded = tf.saved_model.load(saved_model)
segments = np.load(segments_file)

def plain(outputs):
    return {
        name: [v.decode() if isinstance(v, bytes) else v for v in value.numpy().tolist()]
        for name, value in outputs.items()
    }

result = {"signatures": sorted(loaded.signatures)}
for batch in (1, 7):
    serve = loaded.signatures["serving_default"]
    result[f"batch_{batch}"] = plain(serve(segments=tf.constant(segments[:batch])))
result["embedding"] = plain(loaded.signatures["embedding"](segments=tf.constant(segments)))
audio, rate = soundfile.read(audio_file, dtype="float32", always_2d=True)
served = loaded.signatures["waveform"](audio=tf.constant(audio[None]), sample_rate=rate)
result["waveform"] = plain(served)
try:
    loaded.signatures["waveform"](audio=tf.zeros([2, 16127, 1]), sample_rate=22050)
except tf.errors.InvalidArgumentError as error:
    result["too_short"] = error.message
result["musicnext_tf_imported"] = sys.modules.get("musicnext_tf") is not None
print(json.dumps(result))
"""


def test_saved_model_in_a_fresh_process_agrees_with_keras_and_predict(
    tiny_run, exported, segments, keras_probabilities, tmp_path
):
    audio = tmp_path / "sweeps.wav"  # 20 s: 26 segments, two steps of the waveform graph
    soundfile.write(str(audio), timbre_clip("sweeps", 20.0, 22050, np.random.default_rng(5)), 22050)
    (prediction,) = predict_files(load_trained_model(tiny_run), [audio], progress=False)
    np.save(tmp_path / "segments.npy", segments)
    script = tmp_path / "fresh.py"
    script.write_text(FRESH_PROCESS)
    result = run_python([str(script), str(exported), str(tmp_path / "segments.npy"), str(audio)])
    served = json.loads(result.stdout.strip().splitlines()[-1])

    assert served["signatures"] == ["embedding", "serving_default", "wav", "waveform"]
    assert served["musicnext_tf_imported"] is False
    for batch in (1, 7):
        outputs = served[f"batch_{batch}"]
        probabilities = np.array(outputs["probabilities"])
        assert probabilities.shape == (batch, 3)
        assert np.abs(probabilities - keras_probabilities[:batch]).max() <= 1e-5
        expected_ids = keras_probabilities[:batch].argmax(axis=1)
        assert outputs["class_id"] == expected_ids.tolist()
        assert outputs["genre"] == [GENRES[i] for i in expected_ids]
    assert np.array(served["embedding"]["embedding"]).shape == (7, 16)

    clip = served["waveform"]
    assert clip["genre"] == [prediction.genre] == ["sweeps"]
    expected = [prediction.probabilities[genre] for genre in GENRES]
    assert np.abs(np.array(clip["probabilities"][0]) - expected).max() <= 1e-4
    assert clip["class_id"] == [GENRES.index(prediction.genre)]
    assert np.array(clip["embedding"]).shape == (1, 16)
    assert "one segment needs at least 16128 samples (0.73 s at 22050 Hz)" in served["too_short"]


def signature_defs(show_all: str) -> dict[str, dict[str, dict[str, tuple[str, str]]]]:
    """`saved_model_cli show --all` as {signature: {"inputs"|"outputs": {name: (dtype, shape)}}}."""
    parts = re.split(r"signature_def\['([^']+)'\]:", show_all)
    found = {}
    for name, body in zip(parts[1::2], parts[2::2]):
        tensors = re.findall(
            r"(inputs|outputs)\['([^']+)'\] tensor_info:\s+dtype: (\w+)\s+shape: (\S[^\n]*)", body
        )
        found[name] = {"inputs": {}, "outputs": {}}
        for kind, tensor, dtype, shape in tensors:
            found[name][kind][tensor] = (dtype, shape.strip())
    return found


def test_saved_model_cli_shows_the_signatures_and_runs(
    exported, segments, keras_probabilities, tmp_path
):
    cli_module = ["-m", "tensorflow.python.tools.saved_model_cli"]  # the `saved_model_cli` script
    shown = run_python([*cli_module, "show", "--all", "--dir", str(exported)]).stdout
    segment_input = {"segments": ("DT_FLOAT", "(-1, 64, 32, 1)")}
    decision = {
        "probabilities": ("DT_FLOAT", "(-1, 3)"),
        "class_id": ("DT_INT64", "(-1)"),
        "genre": ("DT_STRING", "(-1)"),
    }
    embedding = {"embedding": ("DT_FLOAT", "(-1, 16)")}
    clip = {
        **decision,
        **embedding,
        "best_genre": ("DT_STRING", "(-1)"),
        "score": ("DT_FLOAT", "(-1)"),
        "is_known": ("DT_BOOL", "(-1)"),
        "segment_count": ("DT_INT32", "(-1)"),
        "segment_probabilities": ("DT_FLOAT", "(-1, -1, 3)"),
        "segment_start_s": ("DT_FLOAT", "(-1, -1)"),
        "segment_end_s": ("DT_FLOAT", "(-1, -1)"),
    }
    signatures = signature_defs(shown)
    signatures.pop("__saved_model_init_op", None)
    assert signatures == {
        "serving_default": {"inputs": segment_input, "outputs": decision},
        "waveform": {
            "inputs": {
                "audio": ("DT_FLOAT", "(-1, -1, -1)"),
                "sample_rate": ("DT_INT32", "unknown_rank"),
            },
            "outputs": clip,
        },
        "wav": {"inputs": {"wav": ("DT_STRING", "(-1)")}, "outputs": clip},
        "embedding": {"inputs": segment_input, "outputs": embedding},
    }

    np.save(tmp_path / "segments.npy", segments)
    run_python(
        [
            *cli_module,
            "run",
            "--dir",
            str(exported),
            "--tag_set",
            "serve",
            "--signature_def",
            "serving_default",
            "--inputs",
            f"segments={tmp_path / 'segments.npy'}",
            "--outdir",
            str(tmp_path / "outputs"),
        ]
    )
    probabilities = np.load(tmp_path / "outputs" / "probabilities.npy")
    assert np.abs(probabilities - keras_probabilities).max() <= 1e-5
    genres = np.load(tmp_path / "outputs" / "genre.npy", allow_pickle=True)
    assert [g.decode() for g in genres] == [GENRES[i] for i in keras_probabilities.argmax(axis=1)]


def test_versions_only_go_up_and_describe_the_model(tiny_run, tmp_path):
    base = tmp_path / "saved_models"
    first = export_run(tiny_run, base=base)
    assert first == base / "folder" / "1"  # the run's dataset names the model
    for name in ("saved_model.pb", "fingerprint.pb", "variables/variables.index", "assets"):
        assert (first / name).exists(), name
    assert (first / "assets.extra" / "genres.txt").read_text() == "clicks\ndrone\nsweeps\n"
    facts = json.loads((first / "assets.extra" / "musicnext.json").read_text())
    assert facts["genres"] == GENRES and facts["sample_rate"] == 22050
    assert (facts["segment_frames"], facts["n_mels"], facts["min_waveform_samples"]) == (
        64,
        32,
        63 * 256,
    )
    assert facts["model"] == "last" and facts["model_file"].endswith("model_last.keras")

    # a version someone left (or TF Serving serves) is never touched; numbers go on from the top
    (base / "folder" / "7").mkdir()
    (base / "folder" / "7" / "keep.txt").write_text("mine")
    (base / "folder" / f"{STAGING_PREFIX}killed").mkdir()  # what a killed export leaves
    assert export_run(tiny_run, base=base, name="timbres") == base / "timbres" / "1"
    assert export_run(tiny_run, base=base) == base / "folder" / "8"
    assert (base / "folder" / "7" / "keep.txt").read_text() == "mine"
    assert versions(base / "folder") == [1, 7, 8]
    assert not list((base / "folder").glob(f"{STAGING_PREFIX}*"))

    with pytest.raises(ExportError, match="'12' is not a usable model name"):
        export_run(tiny_run, base=base, name="12")
    with pytest.raises(ExportError, match="'../up' is not a usable model name"):
        export_run(tiny_run, base=base, name="../up")
    (tmp_path / "file").write_text("")
    with pytest.raises(ExportError, match="a file is in the way"):
        export_run(tiny_run, base=tmp_path / "file")


def modes_below(folder: Path) -> dict[str, int]:
    """{relative path: permission bits} of `folder` and everything below it."""
    return {
        str(path.relative_to(folder)): path.stat().st_mode & 0o777
        for path in [folder, *folder.rglob("*")]
    }


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_exports_get_the_modes_of_a_normal_write(tiny_run, tmp_path, umask):
    """A model server running as another user must read the model: folders 0755 and files 0644
    under umask 022 (what `mkdir` and `open` give), and the umask is respected."""
    previous = os.umask(umask)
    try:
        version = export_run(tiny_run, base=tmp_path / "saved_models")
    finally:
        os.umask(previous)
    modes = modes_below(tmp_path / "saved_models")
    assert {"folder/1/assets.extra/genres.txt", "folder/1/variables/variables.index"} <= set(modes)
    for name, mode in modes.items():
        expected = 0o777 if (tmp_path / "saved_models" / name).is_dir() else 0o666
        assert mode == expected & ~umask, (name, oct(mode))
    assert version.stat().st_mode & 0o777 == 0o777 & ~umask


def test_run_folders_are_readable_by_other_users(tiny_run):
    """Everything `fit` wrote (configs, metrics, checkpoints, evaluation, feature cache) has the
    mode of a normal write under the session's umask (022: readable by all)."""
    mask = os.umask(0)
    os.umask(mask)
    for folder in (tiny_run, tiny_run.parent / "cache"):
        modes = modes_below(folder)
        assert "config.json" in modes or "features" in modes
        for name, mode in modes.items():
            if (folder / name).name == ".lock":
                continue
            expected = 0o777 if (folder / name).is_dir() else 0o666
            assert mode == expected & ~mask, (folder / name, oct(mode))


# Stops the export after the SavedModel is completely written into its temporary folder, just
# before it would be renamed to its version number, and waits there to be killed.
KILLED_EXPORT = """
import sys, time
from musicnext_tf import export

def wait_to_be_killed(folder, recursive=True):
    print("staged", folder, flush=True)
    time.sleep(600)

export.sync_tree = wait_to_be_killed
export.export_run(sys.argv[1], base=sys.argv[2])
"""


def test_export_killed_half_way_leaves_no_version(tiny_run, tmp_path):
    script = tmp_path / "killed.py"
    script.write_text(KILLED_EXPORT)
    base = tmp_path / "saved_models"
    process = subprocess.Popen(
        [sys.executable, str(script), str(tiny_run), str(base)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=python_environment(),
    )
    try:
        line = process.stdout.readline()  # blocks until the export is staged (or the child died)
        assert line.startswith("staged "), line
        staged = Path(line.split(" ", 1)[1].strip())
        assert (staged / "saved_model.pb").is_file()
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=SUBPROCESS_SECONDS) == -signal.SIGKILL
    finally:
        process.kill()
        process.stdout.close()
    model_dir = base / "folder"
    assert versions(model_dir) == []
    assert [path.name for path in model_dir.iterdir() if path.is_dir()] == [staged.name]

    version = export_run(tiny_run, base=base)  # the lock died with the process
    assert version == model_dir / "1" and versions(model_dir) == [1]
    assert not staged.exists()
    assert sorted(tf.saved_model.load(str(version)).signatures) == [
        "embedding",
        "serving_default",
        "wav",
        "waveform",
    ]


def untrained_run(run_dir: Path, config, genres: list[str]) -> keras.Model:
    """A run folder holding `config`, the genres and an untrained classifier; returns it."""
    run_dir.mkdir()
    write_json(run_dir / "config.json", config.to_dict())
    write_json(run_dir / "run.json", {"genres": genres})
    classifier = build_model(config.model, config.features, len(genres), -30.0, 20.0)
    classifier.save(run_dir / "model_last.keras")
    return classifier


def test_signatures_follow_the_runs_features(tmp_path):
    untrained_run(tmp_path / "demo-run", resolve("demo"), ["a", "b", "c", "d", "e", "f"])
    version = export_run(tmp_path / "demo-run", base=tmp_path / "saved_models")
    assert version == tmp_path / "saved_models" / "demo" / "1"
    loaded = tf.saved_model.load(str(version))
    serve, waveform = loaded.signatures["serving_default"], loaded.signatures["waveform"]
    assert serve.structured_input_signature[1]["segments"].shape.as_list() == [None, 256, 128, 1]
    assert serve.structured_outputs["probabilities"].shape.as_list() == [None, 6]
    inputs = waveform.structured_input_signature[1]
    assert inputs["audio"].shape.as_list() == [None, None, None]
    assert inputs["sample_rate"].dtype == tf.int32 and inputs["sample_rate"].shape.rank is None
    # the shortest waveform that holds one 256-frame segment: 255 hops of 256 samples
    noise = np.random.default_rng(0).normal(0.0, 0.1, (2, 65280, 1)).astype(np.float32)
    outputs = waveform(audio=tf.constant(noise), sample_rate=tf.constant(22050))
    assert outputs["probabilities"].shape == (2, 6) and outputs["embedding"].shape == (2, 192)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"65280 samples \(2.96 s at 22050"):
        waveform(audio=tf.constant(noise[:, :-1]), sample_rate=tf.constant(22050))


@pytest.mark.parametrize("architecture", ["convnext", "resnet"])
def test_baseline_networks_export_in_inference_mode(architecture, tmp_path):
    """LayerNorm, BatchNorm (moving statistics) and layer scale serve as in Keras."""
    model = {"architecture": architecture, "head": "softmax", "depths": [1, 1]}
    config = tiny_config(tmp_path, model=model)
    classifier = untrained_run(tmp_path / "run", config, GENRES)
    version = export_run(tmp_path / "run", base=tmp_path / "saved_models")
    segments = np.random.default_rng(0).normal(-30.0, 20.0, (5, 64, 32, 1)).astype(np.float32)
    served = tf.saved_model.load(str(version)).signatures["serving_default"]
    probabilities = served(segments=tf.constant(segments))["probabilities"].numpy()
    expected = softmax(classifier(segments, training=False))
    assert np.abs(probabilities - expected).max() <= 1e-5


def test_fit_exports_at_the_end_unless_told_not_to(tmp_path, monkeypatch, capsys):
    data = write_timbre_dataset(tmp_path / "data", clips_per_class=3)
    user = tmp_path / "tiny.toml"
    user.write_text(
        f'[data]\ncache_dir = "{tmp_path / "cache"}"\n'
        "[audio]\nclip_seconds = 3.0\nmin_seconds = 1.0\n"
        "[features]\nn_fft = 512\nn_mels = 32\nsegment_frames = 64\nsegments_per_clip = 4\n"
        "[model]\ndepths = [1]\nwidths = [8]\n[train]\nepochs = 1\n"
    )
    monkeypatch.chdir(tmp_path)
    common = ["fit", "--data", "folder", "--data-dir", str(data), "--config", str(user), "--quiet"]

    assert cli.main([*common, "--run-dir", "exported"]) == 0
    metrics = json.loads((tmp_path / "exported" / "metrics.json").read_text())
    assert metrics["export"] == str(Path("saved_models") / "folder" / "1")
    assert versions(tmp_path / "saved_models" / "folder") == [1]
    assert "SavedModel: saved_models/folder/1" in capsys.readouterr().out

    assert cli.main([*common, "--run-dir", "not-exported", "--no-export"]) == 0
    assert "export" not in json.loads((tmp_path / "not-exported" / "metrics.json").read_text())
    assert versions(tmp_path / "saved_models" / "folder") == [1]
