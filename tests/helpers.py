"""Small shared test helpers: tiny learnable audio datasets and tiny configs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile

from musicnext_tf.config import ExperimentConfig, resolve

TIMBRES = ("drone", "clicks", "sweeps")


def timbre_clip(kind: str, seconds: float, rate: int, rng: np.random.Generator) -> np.ndarray:
    """A few seconds of audio whose class shows in its spectrum and rhythm, with random level."""
    t = np.arange(int(seconds * rate)) / rate
    if kind == "drone":
        pitch = rng.uniform(100, 300)
        audio = sum(np.sin(2 * np.pi * pitch * h * t) / h for h in range(1, 5))
    elif kind == "clicks":
        period = rng.uniform(0.2, 0.4)
        audio = np.exp(-((t % period) / 0.01)) * rng.standard_normal(t.size)
    else:
        period = rng.uniform(0.5, 1.0)
        phase = (t % period) / period
        start = rng.uniform(2000, 3000)
        audio = np.sin(2 * np.pi * np.cumsum(start * (1 + 2 * phase)) / rate)  # rising sweeps
    audio = audio + 0.05 * rng.standard_normal(t.size)
    return (rng.uniform(0.2, 0.9) * audio / np.max(np.abs(audio))).astype(np.float32)


def write_timbre_dataset(
    root: Path, clips_per_class: int = 6, seconds: float = 3.0, rate: int = 22050, seed: int = 0
) -> Path:
    """ROOT/<class>/<class>.<n>.wav for three easily learnable classes."""
    rng = np.random.default_rng(seed)
    for kind in TIMBRES:
        (root / kind).mkdir(parents=True, exist_ok=True)
        for n in range(clips_per_class):
            soundfile.write(
                str(root / kind / f"{kind}.{n:05d}.wav"),
                timbre_clip(kind, seconds, rate, rng),
                rate,
            )
    return root


# The paper's training regime (fixed segment grid, constant rate, time flip only, no validation
# split, the best validation epoch reported) on a tiny network, in place of the folder preset's
# small-data defaults; tests of those defaults set them explicitly.
TINY_OVERRIDES = {
    "audio": {"clip_seconds": 3.0, "min_seconds": 1.0, "clip_rule": "head"},
    "features": {"n_fft": 512, "n_mels": 32, "segment_frames": 64, "segments_per_clip": 4},
    "model": {"depths": [1, 1], "widths": [8, 16], "margin": 2, "drop_path": 0.0},
    "train": {
        "epochs": 6,
        "batch_size": 8,
        "learning_rate": 3e-3,
        "schedule": "constant",
        "warmup_epochs": 0.0,
        "weight_decay": 0.0,
        "crops_per_recording": 0,
        "gain_db": 0.0,
        "time_masks": 0,
        "freq_masks": 0,
        "balance_genres": False,
        "report_model": "best",
    },
    "data": {"test_fraction": 0.34, "validation_fraction": 0.0},
}


def tiny_config(data_dir: Path, **sections) -> ExperimentConfig:
    """A folder-dataset config small enough to train in seconds; `sections` override it."""
    overrides = {name: dict(values) for name, values in TINY_OVERRIDES.items()}
    for name, values in sections.items():
        overrides.setdefault(name, {}).update(values)
    overrides["data"]["data_dir"] = str(data_dir)
    return resolve("folder", None, overrides)


def train_tiny_run(root: Path, **sections) -> Path:
    """Trains `tiny_config` on a fresh timbre dataset (9 clips per class) with its feature cache in
    `root`; returns the run folder `root/run`. About 10 s on 2 cores."""
    from musicnext_tf.train import fit

    data = write_timbre_dataset(root / "data", clips_per_class=9)
    sections["data"] = {"cache_dir": str(root / "cache"), **sections.get("data", {})}
    fit(tiny_config(data, **sections), root / "run", progress=False)
    return root / "run"


def assert_keras_round_trip(model, inputs: np.ndarray, path: Path):
    """Saves `model` as a `.keras` file, loads it back (no custom_objects) and checks that it
    computes the same outputs; returns the loaded model."""
    import keras

    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(
        np.asarray(loaded(inputs, training=False)),
        np.asarray(model(inputs, training=False)),
        rtol=1e-5,
        atol=1e-6,
    )
    return loaded
