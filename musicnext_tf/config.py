"""Typed experiment configuration: dataclasses, pipeline TOML files and command-line overrides.

A run is described by one `ExperimentConfig` (data -> audio -> features -> model -> train). Presets
live as TOML files in `pipelines/` (installed as `musicnext_tf.pipelines`); the CLI resolves a preset,
applies overrides and writes the resolved config into the run folder, so that every number a run
produced can be traced back to the exact settings.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message says where and how to fix it."""


@dataclass
class DataConfig:
    """Which dataset, where it lives on disk, and how it is split."""

    name: str = "demo"
    data_dir: str | None = None  # None: the `MUSICNEXT_DATA` environment variable, then the default
    cache_dir: str | None = None  # None: `MUSICNEXT_CACHE`, then ~/.cache/musicnext-tf
    test_fraction: float = 0.2
    validation_fraction: float = 0.0
    split_seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)  # dataset-specific (see each loader)


@dataclass
class AudioConfig:
    """Decoding, resampling and the clip rule that picks the excerpt of each recording."""

    sample_rate: int = 22050
    # "head": the first clip_seconds; "paper": the ISMIR2004 rule; "full": the whole recording,
    # every segment of it (segments_per_clip does not apply)
    clip_rule: str = "head"
    clip_seconds: float = 30.0
    min_seconds: float = 3.0  # shorter recordings are skipped (the "paper" rule needs clip_seconds)
    decoder: str = "soundfile"  # or "tfio" (tensorflow-io, the `tfio` extra)


@dataclass
class FeatureConfig:
    """Log-mel spectrogram and segmenting, as in `docs/paper_spec.md`."""

    n_fft: int = 2048
    hop_length: int = 256
    n_mels: int = 128
    fmin: float = 0.0
    fmax: float | None = None  # None: sample_rate / 2
    power: float = 2.0
    log_floor: float = 1e-10
    fft_dtype: str = "float32"  # as librosa's default STFT; "float64" lowers the round-off floor
    segment_frames: int = 256
    segments_per_clip: int = 10  # kept per clip by the "head" and "paper" rules (10 for 30 s)


# Each architecture's standard stacking ratio (blocks per stage) and stage widths, used when
# [model] depths or widths are not set: MusicNeXt and ConvNeXt-T share ConvNeXt-T's sizes; the
# ResNet-50 widths are its bottleneck widths (a stage outputs `expansion` times as many channels).
STANDARD_SIZES = {
    "musicnext": ([3, 3, 9, 3], [96, 192, 384, 768]),
    "convnext": ([3, 3, 9, 3], [96, 192, 384, 768]),
    "resnet": ([3, 4, 6, 3], [64, 128, 256, 512]),
}
ARCHITECTURES = tuple(STANDARD_SIZES)
# `[model] size`: smaller stacks of the same blocks for small datasets (a few hundred recordings or
# fewer), where the standard 28 M parameters overfit; explicit depths/widths take precedence.
MODEL_SIZES = {
    "standard": STANDARD_SIZES,
    "small": {
        "musicnext": ([2, 2, 6, 2], [48, 96, 192, 384]),
        "convnext": ([2, 2, 6, 2], [48, 96, 192, 384]),
        "resnet": ([2, 2, 2, 2], [32, 64, 128, 256]),
    },
    "tiny": {
        "musicnext": ([1, 1, 3, 1], [32, 64, 128, 256]),
        "convnext": ([1, 1, 3, 1], [32, 64, 128, 256]),
        "resnet": ([1, 1, 1, 1], [16, 32, 64, 128]),
    },
}
# The initial LayerScale value an architecture uses when [model] layer_scale is not set: ConvNeXt's
# blocks have one (0 turns it off), MusicNeXt's and ResNet's none.
STANDARD_LAYER_SCALE = {"convnext": 1e-6}


@dataclass
class ModelConfig:
    """Network architecture and classification head.

    `depths`, `widths` and `layer_scale` left unset (None) take the architecture's standard
    values (`STANDARD_SIZES`, `STANDARD_LAYER_SCALE`); `stem_kernel` and `kernel_size` apply to
    MusicNeXt and ConvNeXt, `layer_scale` too, `elu_position` to MusicNeXt only, `expansion` and
    `drop_path` to all three.
    """

    architecture: str = "musicnext"  # "musicnext", "convnext" (ConvNeXt-T) or "resnet" (ResNet-50)
    size: str = "standard"  # "standard" (the paper's), "small" or "tiny": see MODEL_SIZES
    depths: list[int] | None = None  # blocks per stage, the stacking ratio
    widths: list[int] | None = None  # channels per stage
    stem_kernel: int = 4
    kernel_size: int = 7
    expansion: int = 4
    elu_position: str = "after_depthwise"  # or "after_expand" (ConvNeXt's place)
    layer_scale: float | None = None  # initial scale; 0: off; unset: ConvNeXt 1e-6, else off
    drop_path: float = 0.0
    head: str = "lsoftmax"  # or "softmax"
    margin: int = 4
    lambda_base: float = 1000.0
    lambda_power: float = 35.0
    lambda_min: float = 0.0
    anneal_epochs: float | None = (
        None  # epochs over which lambda decays to ~1.7; None: the whole run
    )

    def __post_init__(self):
        if self.architecture not in STANDARD_SIZES:
            raise ConfigError(
                f"[model] architecture {self.architecture!r} is unknown; "
                f"choose one of {list(ARCHITECTURES)}"
            )
        if self.size not in MODEL_SIZES:
            raise ConfigError(
                f"[model] size {self.size!r} is unknown; choose one of {list(MODEL_SIZES)}"
            )
        depths, widths = MODEL_SIZES[self.size][self.architecture]
        self.depths = list(depths if self.depths is None else self.depths)
        self.widths = list(widths if self.widths is None else self.widths)
        if self.layer_scale is None:
            self.layer_scale = STANDARD_LAYER_SCALE.get(self.architecture)
        if len(self.depths) != len(self.widths) or not self.depths:
            raise ConfigError(
                f"[model] depths {self.depths} and widths {self.widths} must have the same, "
                "non-zero length (one entry per stage)"
            )


# `[audio] clip_rule`: which part of each recording is used (see `audio.clip_window`)
CLIP_RULES = ("head", "paper", "full")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
# `[train] schedule`: "constant" (the paper's Adam at a fixed rate), or a linear warm-up over
# `warmup_epochs` followed by a cosine decay to 0 at the last epoch
SCHEDULES = ("constant", "cosine")
# `[train] strategy`: how training is spread over devices and hosts (see `musicnext_tf.distributed`)
STRATEGIES = ("default", "mirrored", "multi-worker")
# where `export` writes: BASE/NAME/VERSION/ for TF Serving, BASE/NAME/NAME.tflite for LiteRT
SAVEDMODEL_BASE = "saved_models"
LITERT_BASE = "litert_models"
# LiteRT weight formats (`export --format litert --quantize`); the log-mel front end stays float32
QUANTIZATIONS = ("none", "float16", "dynamic-int8")


@dataclass
class TrainConfig:
    """Optimisation, input-pipeline and distribution settings."""

    epochs: int = 50
    batch_size: int = 50
    learning_rate: float = 1e-3
    seed: int = 0
    schedule: str = "constant"
    warmup_epochs: float = 0.0
    # decoupled weight decay (AdamW, Loshchilov & Hutter 2019); 0: plain Adam as in the paper
    weight_decay: float = 0.0
    # 0: each epoch trains on every clip's fixed grid of segments (the paper). N > 0: each epoch
    # draws N fresh 256-frame crops at random positions of every training recording (seeded by
    # seed and epoch), so whole songs are used and each epoch sees other excerpts
    crops_per_recording: int = 0
    # with crops: share each epoch's crops equally among the genres instead of the recordings
    balance_genres: bool = False
    # augmentation of training segments, each seeded by (seed, epoch, position):
    flip_probability: float = 0.5  # the paper's time flip
    gain_db: float = 0.0  # a random level change in [-gain_db, gain_db] dB per segment
    time_masks: int = 0  # SpecAugment: masked bands of up to time_mask_frames frames
    time_mask_frames: int = 32
    freq_masks: int = 0  # SpecAugment: masked bands of up to freq_mask_bins mel bins
    freq_mask_bins: int = 16
    shuffle_buffer: int = 2000  # segments shuffled together (about 260 MB at 256 x 128)
    # the validation metric that picks the best epoch: "val_clip_accuracy" (accuracy ties go to the
    # lower validation loss), "val_segment_accuracy" or "val_loss"
    best_metric: str = "val_clip_accuracy"
    # the model a run reports, exports and predicts with by default: "best" (the best validation
    # epoch, when there is a validation split) or "last" (the last epoch; the best one is still
    # kept as model_best.keras). With a handful of validation recordings the best epoch is noise.
    report_model: str = "best"
    # "float32", or a Keras mixed policy: "mixed_bfloat16" (TPUs, recent GPUs and CPUs) or
    # "mixed_float16" (GPUs; with dynamic loss scaling). The L-softmax head, the pooled features
    # and the loss stay float32; the variables are float32 in every policy.
    precision: str = "float32"
    # XLA-compile the training step: true, false, or "auto" (Keras' rule: on when a GPU is visible)
    jit_compile: bool | str = "auto"
    # "default" (one device), "mirrored" (all local GPUs) or "multi-worker" (hosts in TF_CONFIG);
    # batch_size is the global batch, cut into one part per replica
    strategy: str = "default"
    # "grpc://HOST:PORT": a tf.data service dispatcher that produces the training batches
    # (see `distributed.from_data_service`); None: this process does
    data_service: str | None = None

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"[train] precision = {self.precision!r} is not one of {list(PRECISIONS)}"
            )
        if self.jit_compile not in (True, False, "auto"):
            raise ConfigError(
                f'[train] jit_compile = {self.jit_compile!r}: use true, false or "auto"'
            )
        if self.report_model not in ("best", "last"):
            raise ConfigError(f'[train] report_model = {self.report_model!r}: use "best" or "last"')
        if self.schedule not in SCHEDULES:
            raise ConfigError(
                f"[train] schedule = {self.schedule!r} is not one of {list(SCHEDULES)}"
            )
        negative = [
            name
            for name in ("warmup_epochs", "weight_decay", "crops_per_recording", "gain_db")
            + ("time_masks", "time_mask_frames", "freq_masks", "freq_mask_bins")
            if getattr(self, name) < 0
        ]
        if negative:
            raise ConfigError(f"[train] {', '.join(negative)} must not be negative")
        if self.strategy not in STRATEGIES:
            raise ConfigError(
                f"[train] strategy = {self.strategy!r} is not one of {list(STRATEGIES)}"
            )


@dataclass
class ExperimentConfig:
    """The full resolved configuration of one run."""

    data: DataConfig = field(default_factory=DataConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "<dict>") -> ExperimentConfig:
        """Builds a config from nested dicts; unknown sections or keys are errors naming `source`."""
        sections = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(sections))
        if unknown:
            raise ConfigError(
                f"{source}: unknown section(s) {unknown}; expected any of {sorted(sections)}"
            )
        built = {}
        for name, section_field in sections.items():
            section_cls = section_field.default_factory().__class__
            built[name] = _build_section(section_cls, values.get(name, {}), f"{source} [{name}]")
        return cls(**built)


def _build_section(section_cls: type, values: dict[str, Any], where: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a table of settings, got {values!r}")
    known = {f.name for f in dataclasses.fields(section_cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"{where}: unknown setting(s) {unknown}; valid settings are {sorted(known)}"
        )
    return section_cls(**values)


def parse_stacking_ratio(text: str) -> list[int]:
    """`3:3:9:3` -> [3, 3, 9, 3]: blocks per stage, each at least 1."""
    try:
        depths = [int(part) for part in text.split(":")]
    except ValueError:
        depths = []
    if not depths or min(depths) < 1:
        raise ConfigError(
            f"stacking ratio {text!r} is not a list of block counts >= 1 like 3:3:9:3"
        )
    return depths


def _presets_folder():
    """The package's `pipelines/` folder (an importlib.resources Traversable)."""
    from importlib import resources  # here: the command line must start fast

    return resources.files("musicnext_tf.pipelines")


def preset_names() -> list[str]:
    """Names of the pipeline presets shipped with the package (`pipelines/*.toml`)."""
    files = _presets_folder()
    return sorted(p.name[: -len(".toml")] for p in files.iterdir() if p.name.endswith(".toml"))


def load_toml(path: str | os.PathLike) -> dict[str, Any]:
    """Reads a TOML file, turning parse errors into a message that names the file."""
    import tomllib

    path = Path(path)
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML ({error})") from None


def load_preset(name: str) -> dict[str, Any]:
    """The raw settings of a shipped preset, by dataset name."""
    if name not in preset_names():
        raise ConfigError(f"no pipeline preset named {name!r}; available: {preset_names()}")
    from importlib import resources

    with resources.as_file(_presets_folder() / f"{name}.toml") as path:
        return load_toml(path)


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursively merges `update` into a copy of `base` (tables merge, values replace)."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def resolve(
    data: str | None = None,
    config_file: str | os.PathLike | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
) -> ExperimentConfig:
    """Resolves a run's config: dataset preset, then a user's TOML file, then explicit overrides.

    Args:
        data: dataset/preset name (`demo`, `gtzan`, ...); if None, the config file must name one.
        config_file: optional user TOML file; its tables override the preset.
        overrides: `{section: {key: value}}` from the command line; None values are ignored.
    """
    user = load_toml(config_file) if config_file else {}
    name = data or user.get("data", {}).get("name")
    if not name:
        raise ConfigError(
            "no dataset given: pass --data NAME or set [data] name in the config file"
        )
    values = load_preset(name) if name in preset_names() else {"data": {"name": name}}
    values = merge(values, user)
    values = merge(values, {"data": {"name": name}})
    for section, settings in (overrides or {}).items():
        values = merge(values, {section: {k: v for k, v in settings.items() if v is not None}})
    source = str(config_file) if config_file else f"preset {name!r}"
    return ExperimentConfig.from_dict(values, source=source)


def load_run_config(run_dir: str | os.PathLike) -> ExperimentConfig:
    """Reads `RUN_DIR/config.json` written by `fit`."""
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise ConfigError(
            f"{path} not found: is {run_dir} a run folder written by `musicnext-tf fit`?"
        )
    return ExperimentConfig.from_dict(json.loads(path.read_text()), source=str(path))


def default_cache_dir() -> Path:
    """Where datasets' features and the demo audio are cached."""
    return Path(os.environ.get("MUSICNEXT_CACHE") or Path.home() / ".cache" / "musicnext-tf")
