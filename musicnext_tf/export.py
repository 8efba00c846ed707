"""SavedModels for TensorFlow Serving: `BASE/NAME/VERSION/` with four documented signatures.

    serving_default  segments float32 [batch, segment_frames, n_mels, 1] (log-mel in dB, before
                     standardisation) -> probabilities float32 [batch, classes],
                     class_id int64 [batch], genre string [batch]; one row per segment
    waveform         audio float32 [batch, samples, channels] and sample_rate int32 (scalar or
                     [batch]; one of `graph_audio.SUPPORTED_RATES`) -> probabilities, class_id,
                     genre and embedding float32 [batch, features]: one row per clip, the mean
                     over its whole segments after mixing to mono and resampling in the graph
    wav              wav string [batch]: whole WAV files (PCM 8/16/24/32-bit or float, any
                     channel count, a supported rate) -> the outputs of `waveform`
    embedding        segments (as serving_default) -> embedding float32 [batch, features], the
                     pooled features the classification head reads

The graph needs nothing of this package at serving time: the log-mel, segmenting, standardisation
and genre names are in it. `assets.extra/genres.txt` and `assets.extra/musicnext.json` (sample
rate, sizes, source run) describe the model for people and tools; TF Serving ignores them.

Versions are integers that only go up. An export is written into a hidden folder beside the
versions and renamed to its number when complete, under a lock, so TF Serving (which watches
`BASE/NAME/`) never sees a half-written version and two exports never take the same number.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from pathlib import Path

import keras
import tensorflow as tf

from musicnext_tf.config import SAVEDMODEL_BASE
from musicnext_tf.errors import ExportError  # noqa: F401  (raised here; re-exported)
from musicnext_tf.files import (
    atomic_write,
    exclusive_lock,
    staging_directory,
    sync_tree,
    write_json,
)
from musicnext_tf.graph_audio import SUPPORTED_RATES
from musicnext_tf.inference import ClipClassifier, TrainedModel, load_trained_model, min_samples

DEFAULT_BASE = SAVEDMODEL_BASE
SIGNATURES = ("serving_default", "waveform", "wav", "embedding")
STAGING_PREFIX = ".tmp-export-"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*$")
log = logging.getLogger(__name__)


def versions(model_dir: str | os.PathLike) -> list[int]:
    """The published versions under `BASE/NAME/` (folders named by an integer), ascending."""
    folder = Path(model_dir)
    found = folder.iterdir() if folder.is_dir() else ()
    return sorted(int(path.name) for path in found if path.is_dir() and path.name.isdigit())


def export_run(
    model: str | os.PathLike,
    base: str | os.PathLike = DEFAULT_BASE,
    name: str | None = None,
    which: str | None = None,
) -> Path:
    """Exports a run's model (see `inference.load_trained_model` for MODEL and `which`) as the
    next version of `BASE/NAME` (NAME defaults to the run's dataset); returns the version folder."""
    trained = load_trained_model(model, which)
    return export_model(trained, Path(base) / check_name(name or trained.config.data.name))


def check_name(name: str) -> str:
    """A model name must be one plain folder name (TF Serving's `name` in models.config)."""
    if not _NAME.match(name) or name.isdigit():
        raise ExportError(
            f"--name {name!r} is not a usable model name: use letters, digits, '.', '_' and '-', "
            "starting with a letter or digit and not only digits (e.g. gtzan or musicnext-gtzan)"
        )
    return name


def export_model(trained: TrainedModel, model_dir: str | os.PathLike) -> Path:
    """Writes `trained` as the next version under `model_dir`; returns the version folder.

    Half-written exports that a killed process left behind are removed first.
    """
    model_dir = Path(model_dir)
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ExportError(
            f"cannot create the folder {model_dir}: a file is in the way; choose another --base "
            "or --name"
        ) from None
    with exclusive_lock(model_dir / ".export.lock"):  # a second export of the name waits
        for stale in model_dir.glob(f"{STAGING_PREFIX}*"):
            shutil.rmtree(stale, ignore_errors=True)
        staging = staging_directory(model_dir, STAGING_PREFIX)
        try:
            write_saved_model(trained, staging)
            sync_tree(staging)
            version = (versions(model_dir) or [0])[-1] + 1
            target = model_dir / str(version)
            os.rename(staging, target)  # the lock and the fresh number: `target` did not exist
            sync_tree(model_dir, recursive=False)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    log.info("exported %s as %s", trained.model_file, target)
    return target


def write_saved_model(trained: TrainedModel, folder: Path) -> None:
    """Writes the SavedModel with its three signatures and the descriptive `assets.extra/` files
    into `folder` (which may exist, empty)."""
    clips = ClipClassifier.from_trained(trained)
    archive = keras.export.ExportArchive()
    archive.track(trained.classifier)
    archive.add_endpoint("serving_default", clips.segments, [clips.segments_spec])
    archive.add_endpoint("waveform", clips.waveform, clips.waveform_specs)
    archive.add_endpoint("wav", clips.wav, [clips.wav_spec])
    archive.add_endpoint("embedding", clips.embedding, [clips.segments_spec])
    archive.write_out(str(folder), verbose=False)
    extra = folder / "assets.extra"
    extra.mkdir(exist_ok=True)
    atomic_write(extra / "genres.txt", "".join(f"{g}\n" for g in trained.genres).encode("utf-8"))
    write_json(extra / "musicnext.json", describe(trained))


def describe(trained: TrainedModel) -> dict:
    """What a client needs to know to call the model, and where it came from."""
    from musicnext_tf import __version__

    features, audio = trained.config.features, trained.config.audio
    return {
        "genres": list(trained.genres),
        "sample_rate": audio.sample_rate,
        "segment_frames": features.segment_frames,
        "n_mels": features.n_mels,
        "n_fft": features.n_fft,
        "hop_length": features.hop_length,
        "min_waveform_samples": min_samples(features),
        "supported_sample_rates": list(SUPPORTED_RATES),
        "fft_dtype": features.fft_dtype,
        "calibration": trained.calibration.record() if trained.calibration else None,
        "signatures": list(SIGNATURES),
        "architecture": trained.config.model.architecture,
        "head": trained.config.model.head,
        "dataset": trained.config.data.name,
        "run_dir": str(trained.run_dir.absolute()),
        "model_file": str(trained.model_file.absolute()),
        "model": trained.which,
        "exported": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "musicnext_tf_version": __version__,
        "tensorflow_version": tf.__version__,
    }
