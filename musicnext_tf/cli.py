"""The `musicnext-tf` command line: resolves configs and calls the library; holds no model logic."""

from __future__ import annotations

import argparse
import logging
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from musicnext_tf.config import (
    ARCHITECTURES,
    CLIP_RULES,
    LITERT_BASE,
    MODEL_SIZES,
    PRECISIONS,
    QUANTIZATIONS,
    SAVEDMODEL_BASE,
    STRATEGIES,
    parse_stacking_ratio,
)

EPILOG = """\
examples:
  musicnext-tf fit --data demo                       train on the built-in synthetic demo set
  musicnext-tf fit --data gtzan --data-dir ~/data/gtzan/genres --epochs 50
  musicnext-tf fit --data folder --data-dir ~/music/by-genre --head softmax
  musicnext-tf fit --resume runs/gtzan-20250101-120000   continue an interrupted run
  musicnext-tf fit --data gtzan --strategy mirrored      train on every GPU of this host
  musicnext-tf evaluate runs/gtzan-20250101-120000       test report of the best model
  musicnext-tf baseline runs/gtzan-20250101-120000       the classical floor on the same split
  musicnext-tf predict runs/gtzan-20250101-120000 ~/music/new --output genres.csv
  musicnext-tf export runs/gtzan-20250101-120000         saved_models/gtzan/<next version>/
  musicnext-tf export runs/gtzan-20250101-120000 --format litert --quantize float16
"""


def _describe(parser: argparse.ArgumentParser, **settings) -> None:
    """Sets a subcommand parser's description, epilog or formatter, which argparse otherwise
    takes when the parser is created (here: only when its command is the one being run)."""
    for name, value in settings.items():
        setattr(parser, name, value)


def _add_strict_and_quiet(parser) -> None:
    parser.add_argument(
        "--strict", action="store_true", help="fail if any recording has to be skipped"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_dataset_options(parser) -> None:
    """--data, --data-dir and --config: which dataset, where, and the user's settings file."""
    parser.add_argument(
        "--data",
        type=_dataset_name,
        help="dataset: demo, folder or a preset name (see `musicnext-tf presets`)",
    )
    DATA_DIR_OPTION.add_to(parser)
    parser.add_argument("--config", help="a TOML file whose tables override the dataset's preset")


def _dataset_name(name: str) -> str:
    """A dataset the package can load, checked while parsing (before TensorFlow is imported)."""
    from musicnext_tf.datasets import LOADERS

    if name not in LOADERS:
        raise argparse.ArgumentTypeError(
            f"unknown dataset {name!r}; choose one of {', '.join(sorted(LOADERS))}"
        )
    return name


@dataclass(frozen=True)
class SettingOption:
    """A command-line option that sets one config value (`section.key`), declared once: the
    parser, the config overrides and `--resume`'s conflict check are all derived from it."""

    flag: str
    setting: str  # "section.key" in `ExperimentConfig`
    arguments: dict = field(default_factory=dict)  # for `add_argument`
    convert: Callable | None = None  # applied to a given value before it overrides the config
    fallback: str | None = None  # the option whose value is used when this one is not given
    movable: bool = False  # where the run trains: a resume may change it (not a conflict)

    @property
    def dest(self) -> str:
        return _dest(self.flag)

    @property
    def section_and_key(self) -> tuple[str, str]:
        section, key = self.setting.split(".")
        return section, key

    def add_to(self, parser) -> None:
        parser.add_argument(self.flag, **self.arguments)

    def given(self, args):
        """(the value given on the command line or None, the flag that gave it)."""
        value = getattr(args, self.dest)
        if value is None and self.fallback:
            return getattr(args, _dest(self.fallback)), self.fallback
        if value is not None and self.convert:
            value = self.convert(value)
        return value, self.flag


def _dest(flag: str) -> str:
    """argparse's attribute name of a long option: `--split-seed` -> `split_seed`."""
    return flag[2:].replace("-", "_")


def _absolute(path: str | None) -> str | None:
    return str(Path(path).expanduser().absolute()) if path else None


def _stacking_ratio(text: str) -> list[int]:
    """`3:3:9:3` -> [3, 3, 9, 3]; argparse reports the ConfigError (a ValueError) as an invalid
    value."""
    return parse_stacking_ratio(text)


# every command reading a dataset takes it; `fit` also overrides the config with it
DATA_DIR_OPTION = SettingOption(
    "--data-dir",
    "data.data_dir",
    dict(help="the dataset's root folder (default: [data] data_dir or $MUSICNEXT_DATA)"),
    convert=_absolute,
)
FIT_SETTINGS = (
    DATA_DIR_OPTION,
    SettingOption(
        "--epochs", "train.epochs", dict(type=int, help="number of training epochs (paper: 50)")
    ),
    SettingOption(
        "--batch-size", "train.batch_size", dict(type=int, help="segments per batch (paper: 50)")
    ),
    SettingOption(
        "--learning-rate", "train.learning_rate", dict(type=float, help="Adam learning rate")
    ),
    SettingOption(
        "--margin",
        "model.margin",
        dict(type=int, help="L-softmax angular margin m, an integer >= 1"),
    ),
    SettingOption(
        "--head", "model.head", dict(choices=["lsoftmax", "softmax"], help="classification head")
    ),
    SettingOption(
        "--model",
        "model.architecture",
        dict(
            choices=list(ARCHITECTURES),
            help="network: musicnext (default), convnext (ConvNeXt-T) or resnet (ResNet-50-style)",
        ),
    ),
    SettingOption(
        "--depths",
        "model.depths",
        dict(
            type=_stacking_ratio,
            metavar="N:N:...",
            help="blocks per stage, the stacking ratio (e.g. 3:3:9:3; one entry per stage width)",
        ),
    ),
    SettingOption(
        "--size",
        "model.size",
        dict(
            choices=list(MODEL_SIZES),
            help="network size when --depths is not given: standard (the paper's), small or tiny "
            "(for a few hundred recordings or fewer)",
        ),
    ),
    SettingOption(
        "--clip-rule",
        "audio.clip_rule",
        dict(
            choices=list(CLIP_RULES),
            help="which part of each recording: head (the first 30 s), paper (the ISMIR2004 rule) "
            "or full (the whole recording)",
        ),
    ),
    SettingOption(
        "--crops-per-recording",
        "train.crops_per_recording",
        dict(
            type=int,
            metavar="N",
            help="draw N random 256-frame crops of every training recording each epoch (0: every "
            "segment of each clip, the paper's fixed grid)",
        ),
    ),
    SettingOption(
        "--test-fraction",
        "data.test_fraction",
        dict(type=float, help="share of the recordings in the test split"),
    ),
    SettingOption(
        "--validation-fraction",
        "data.validation_fraction",
        dict(
            type=float,
            help="share of the recordings in the validation split, which picks the best epoch "
            "(0: none, the last epoch's model is reported)",
        ),
    ),
    SettingOption(
        "--seed",
        "train.seed",
        dict(
            type=int,
            help="seed of initialisation, data order, augmentation and (unless --split-seed is "
            "given) the train/validation/test split",
        ),
    ),
    SettingOption(
        "--split-seed",
        "data.split_seed",
        dict(
            type=int,
            help="seed of the train/validation/test split alone (default: --seed, else [data] "
            "split_seed)",
        ),
        fallback="--seed",
    ),
    SettingOption(
        "--precision",
        "train.precision",
        dict(
            choices=list(PRECISIONS),
            help="float32 (default), or mixed precision for accelerators: mixed_bfloat16 (TPU, "
            "recent GPUs) or mixed_float16 (GPUs; with loss scaling); the head and loss stay "
            "float32",
        ),
    ),
    SettingOption(
        "--jit-compile",
        "train.jit_compile",
        dict(
            action=argparse.BooleanOptionalAction,
            help="compile the training step with XLA (default: on when a GPU is visible, else off)",
        ),
    ),
    SettingOption(
        "--strategy",
        "train.strategy",
        dict(
            choices=list(STRATEGIES),
            help="default: one device; mirrored: all local GPUs; multi-worker: the hosts listed "
            "in the TF_CONFIG environment variable, one process each (see README, Distributed "
            "training); --batch-size stays the global batch. With --resume it may differ from "
            "the run's",
        ),
        movable=True,
    ),
    SettingOption(
        "--data-service",
        "train.data_service",
        dict(
            metavar="grpc://HOST:PORT",
            help="a tf.data service dispatcher whose worker prepares the training batches instead "
            "of this process (see README, Distributed training). With --resume it may differ "
            "from the run's",
        ),
        movable=True,
    ),
)


def _fit_arguments(fit) -> None:
    _describe(
        fit,
        description=(
            "Train MusicNeXt on a dataset, keeping a checkpoint after every epoch, the best model "
            "(by validation clip accuracy) and the last one, and report the selected model on the "
            "test split. Writes RUN_DIR/config.json (the resolved config), run.json, history.csv, "
            "checkpoints/, model_best.keras, model_last.keras, evaluation/ and metrics.json. "
            "Settings come from the dataset's preset (pipelines/NAME.toml), then --config, then "
            "the options below. An interrupted run (Ctrl-C, kill, crash) continues with --resume."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_dataset_options(fit)
    fit.add_argument("--run-dir", help="output folder (default: runs/<data>-<date>-<time>)")
    fit.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue an interrupted run from its last complete epoch, with the settings in "
        "RUN_DIR/config.json; a finished run is left as it is",
    )
    for option in FIT_SETTINGS:
        if option is not DATA_DIR_OPTION:  # added with the dataset options
            option.add_to(fit)
    fit.add_argument(
        "--export-base",
        default=SAVEDMODEL_BASE,
        metavar="DIR",
        help="at the end, export the selected model for TF Serving as DIR/<dataset>/<next "
        f"version>/ (default: {SAVEDMODEL_BASE}; see `musicnext-tf export`)",
    )
    fit.add_argument(
        "--no-export", action="store_true", help="do not export a SavedModel at the end"
    )
    _add_strict_and_quiet(fit)


def _evaluate_arguments(evaluate) -> None:
    _describe(
        evaluate,
        description=(
            "Evaluate a run's best (default, when the run had a validation split) or last model: "
            "segment and clip accuracy, loss, the confusion matrix in percent of each true genre "
            "and per-genre precision, recall and F1; calibration (ECE, NLL, Brier score before "
            "and after the run's temperature) and open-set rejection (AUROC and false acceptance "
            "of generated noise, silence and speech, and of --unknown recordings). Writes "
            "RUN_DIR/evaluation/<model>-<data>-<split>.json, .md, -confusion.png and "
            "-reliability.png."
        ),
    )
    evaluate.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by `fit`")
    evaluate.add_argument(
        "--data",
        type=_dataset_name,
        help="evaluate on another dataset with the same genres (default: the run's dataset)",
    )
    evaluate.add_argument("--data-dir", help="the dataset's root folder (default: the run's)")
    evaluate.add_argument(
        "--model",
        choices=["best", "last"],
        help="which model (default: best if the run kept one, else last)",
    )
    evaluate.add_argument(
        "--split",
        choices=["test", "validation", "train", "all"],
        default="test",
        help="which split of the data (default: test)",
    )
    evaluate.add_argument("--batch-size", type=int, help="segments per batch (default: the run's)")
    evaluate.add_argument(
        "--unknown",
        nargs="+",
        default=[],
        metavar="FILE_OR_FOLDER",
        help="recordings of genres the model never learnt, for the open-set figures",
    )
    evaluate.add_argument(
        "--probes",
        type=int,
        default=10,
        metavar="N",
        help="generated clips per kind of non-music probe (white and pink noise, silence, "
        "speech) for the open-set figures (default: 10; 0: none)",
    )
    _add_strict_and_quiet(evaluate)


def _export_arguments(export) -> None:
    _describe(
        export,
        description=(
            "Export a run's model as BASE/NAME/VERSION/ (saved_model.pb, variables/, assets/) in "
            "TF Serving's layout, VERSION being one more than the highest there. Signatures: "
            "serving_default (log-mel segments -> probabilities, class_id, genre), waveform "
            "(audio [batch, samples, channels] at a sample_rate -> the same per clip, with the "
            "open-set score, is_known, the embedding and per-segment probabilities), wav (WAV file bytes -> as waveform) and embedding (segments -> pooled "
            "features); see saved_models/README.md. With --format litert: BASE/NAME/NAME.tflite "
            "(signatures mel and waveform, mono at the run's rate) and labels.txt."
        ),
    )
    _add_trained_model(export, "RUN_DIR")
    export.add_argument("--name", help="model name, the folder under BASE (default: the dataset)")
    export.add_argument(
        "--base",
        help=f"folder of the exported models (default: {SAVEDMODEL_BASE}, or "
        f"{LITERT_BASE} with --format litert)",
    )
    export.add_argument(
        "--format",
        choices=["savedmodel", "litert"],
        default="savedmodel",
        help="a SavedModel for TF Serving (default) or a .tflite file for LiteRT",
    )
    export.add_argument(
        "--quantize",
        choices=QUANTIZATIONS,
        help="LiteRT weights: none (default), float16 or dynamic-int8 (the log-mel front end "
        "stays float32); only with --format litert",
    )


def _add_trained_model(parser, metavar: str) -> None:
    """The MODEL argument of `export` and `predict`, and `--model` choosing within a run."""
    parser.add_argument(
        "model",
        metavar=metavar,
        help="a run folder written by `fit`, or a .keras model file inside one",
    )
    parser.add_argument(
        "--model",
        dest="which",
        choices=["best", "last"],
        help="which model of a run folder (default: best if the run kept one, else last)",
    )


def _predict_arguments(predict) -> None:
    _describe(
        predict,
        description=(
            "Classify audio files of any length: each file is decoded, mixed to mono, resampled "
            "to the model's sample rate and cut into whole segments, and the segments' genre "
            "probabilities are averaged (the SavedModel's waveform signature computes the same). "
            "Files that cannot be used are reported with a warning, listed with an error and "
            "skipped."
        ),
    )
    _add_trained_model(predict, "MODEL")
    predict.add_argument(
        "paths",
        nargs="+",
        metavar="FILE_OR_FOLDER",
        help="audio files, or folders searched recursively for audio files",
    )
    predict.add_argument(
        "--clip-rule",
        choices=["full", "head", "paper", "dataset"],
        default="full",
        help="which part of each file: full (default: every whole segment), head (the first "
        "[audio] clip_seconds), paper (the ISMIR2004 rule: seconds 30-60), dataset (the rule "
        "of the run's dataset)",
    )
    predict.add_argument(
        "--format",
        choices=["csv", "json"],
        help="output format (default: json for an --output ending in .json, else csv)",
    )
    predict.add_argument("--output", metavar="FILE", help="write to FILE instead of stdout")
    predict.add_argument(
        "--timeline",
        metavar="DIR",
        help="also write each file's genre over time to DIR/<file>.timeline.csv (or .json with "
        "--format json): every segment's start and end second and probabilities",
    )
    predict.add_argument(
        "--plot",
        action="store_true",
        help="with --timeline: also DIR/<file>.timeline.png, a heat strip of the genre "
        "probabilities over time",
    )
    _add_strict_and_quiet(predict)


def _prepare_arguments(prepare) -> None:
    _describe(
        prepare,
        description=(
            "Index a dataset, then decode, resample, apply the clip rule and compute the log-mel "
            "segments of every recording once, into the feature cache (~/.cache/musicnext-tf or "
            "$MUSICNEXT_CACHE), keyed by the dataset and the audio and feature settings. Uses "
            "every core; an interrupted run (Ctrl-C, kill -9) continues where it stopped. "
            "Recordings that cannot be used are skipped with a warning and listed with the "
            "reason in report.json in the cache folder."
        ),
    )
    _add_dataset_options(prepare)
    prepare.add_argument(
        "--workers",
        type=_positive_int,
        metavar="N",
        help="processes computing features (default: one per core for 48 or more recordings)",
    )
    _add_strict_and_quiet(prepare)


def _positive_int(text: str) -> int:
    """argparse reports the ValueError as an invalid value."""
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def _sweep_arguments(sweep) -> None:
    from musicnext_tf.sweep import EXPERIMENTS, experiments_help

    _describe(
        sweep,
        description=textwrap.fill(
            "Train every cell of an experiment's grid (each --values entry times each seed) as a "
            "run folder SWEEP_DIR/cells/<cell>/, then write SWEEP_DIR/EXPERIMENT.md (the paper's "
            "table or figure as a table, the paper's numbers beside ours where it gives them), "
            "EXPERIMENT.csv and EXPERIMENT.png. Finished cells are reused, also by the other experiments in "
            "the same SWEEP_DIR, and an interrupted sweep continues when run again. Compare the "
            "cells' hyperparameters and test metrics with `tensorboard --logdir SWEEP_DIR/cells`. "
            "See docs/reproducing.md.",
            width=100,
        ),
        epilog=experiments_help()
        + "\n\nexample:\n  musicnext-tf sweep heads --data gtzan --data-dir ~/data/gtzan/genres",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sweep.add_argument(
        "experiment", metavar="EXPERIMENT", choices=list(EXPERIMENTS), help="see the list below"
    )
    _add_dataset_options(sweep)
    sweep.add_argument(
        "--sweep-dir",
        metavar="DIR",
        help="folder of the cells and results (default: sweeps/<data>, shared by all experiments)",
    )
    sweep.add_argument("--epochs", type=int, help="training epochs of every cell (paper: 50)")
    seeds = sweep.add_mutually_exclusive_group()
    seeds.add_argument(
        "--seeds", type=_positive_int, metavar="N", help="run every grid point with seeds 0..N-1"
    )
    seeds.add_argument(
        "--seed", type=int, nargs="+", metavar="S", help="run every grid point with these seeds"
    )
    sweep.add_argument(
        "--values", nargs="+", metavar="V", help="the grid instead of the default (see below)"
    )
    _add_strict_and_quiet(sweep)


def _sweep(args) -> int:
    from musicnext_tf.sweep import CELLS, run_experiment, sweep_folder

    overrides = {"data": {"data_dir": _absolute(args.data_dir)}, "train": {"epochs": args.epochs}}
    sweep_dir = sweep_folder(args.data, args.config, overrides, args.sweep_dir)
    try:
        paths, counts = run_experiment(
            args.experiment,
            args.data,
            args.config,
            overrides,
            sweep_dir,
            args.values,
            args.seed or range(args.seeds or 1),
            progress=not args.quiet,
            strict=args.strict,
        )
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: finished cells are kept in {sweep_dir / CELLS}; run the same command "
            "again to continue",
            file=sys.stderr,
        )
        return 130
    print(
        f"\n{args.experiment}: {counts['started']} cell(s) trained, {counts['resumed']} "
        f"continued, {counts['reused']} reused\nresults: " + ", ".join(map(str, paths))
    )
    return 0


def _baseline_arguments(baseline) -> None:
    _describe(
        baseline,
        description=(
            "Train the classical baseline (mean and standard deviation of 20 MFCCs, their "
            "deltas, spectral contrast, centroid, flatness and energy of each recording, from the "
            "run's own log-mel features; standardised logistic regression) on the run's training "
            "split and score it on its test split. Writes RUN_DIR/evaluation/baseline-<data>-"
            "test.json and .md and prints it beside the run's test clip accuracy. `fit` and "
            "`evaluate` include the same figures in their reports."
        ),
    )
    baseline.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by `fit`")
    baseline.add_argument("--data-dir", help="the dataset's root folder (default: the run's)")
    _add_strict_and_quiet(baseline)


def _baseline(args) -> int:
    import json

    from musicnext_tf import datasets
    from musicnext_tf.classical import markdown_section
    from musicnext_tf.config import load_run_config
    from musicnext_tf.evaluate import EVALUATION_DIR, evaluation_config, run_baseline
    from musicnext_tf.files import atomic_write, write_json
    from musicnext_tf.prepare import prepare

    run_dir = Path(args.run_dir)
    config = evaluation_config(load_run_config(run_dir), None, _absolute(args.data_dir))
    progress = not args.quiet
    index = datasets.load_index(config, progress)
    result = run_baseline(prepare(index, config, progress=progress, strict=args.strict))
    if result is None:
        return 2
    stem = run_dir / EVALUATION_DIR / f"baseline-{config.data.name}-test"
    stem.parent.mkdir(parents=True, exist_ok=True)
    write_json(stem.with_suffix(".json"), result)
    atomic_write(stem.with_suffix(".md"), markdown_section(result).encode("utf-8"))
    print(
        f"classical baseline on {run_dir}'s test split: clip accuracy "
        f"{result['clip_accuracy']:.4f}, macro F1 {result['macro_f1']:.4f} "
        f"({result['test_clips']} clips, trained on {result['train_clips']})"
    )
    metrics = run_dir / "metrics.json"
    if metrics.exists():
        model = json.loads(metrics.read_text())
        print(f"the run's model: clip accuracy {model['test_clip_accuracy']:.4f}")
    print(f"report: {stem.with_suffix('.json')}, {stem.with_suffix('.md')}")
    return 0


def _presets_arguments(presets) -> None:
    """`presets` takes no arguments."""


def _presets(args) -> int:
    from musicnext_tf.config import preset_names

    print("\n".join(preset_names()))
    return 0


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser. Every subcommand is listed; the arguments of `command` alone
    are built when it is given (all of them when it is None), which keeps `--help`, `--version`
    and each command's start fast."""
    parser = argparse.ArgumentParser(
        prog="musicnext-tf",
        description="MusicNeXt music genre classification (Keras 3 / TensorFlow).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from musicnext_tf import __version__

    parser.add_argument("--version", action="version", version=f"musicnext-tf {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, details in COMMANDS.items():
        subparser = commands.add_parser(name, help=details.summary)
        if command in (None, name):
            details.add_arguments(subparser)
    return parser


def _chosen_command(argv: Sequence[str]) -> str:
    """The subcommand named on the command line ("" when there is none): the first argument that
    is not an option, as the top-level parser takes no option with a value."""
    return next((argument for argument in argv if not argument.startswith("-")), "")


def _fit_overrides(args) -> dict[str, dict]:
    """The settings given on the command line, as `{section: {key: value}}` (None: not given).
    Where the run trains (`movable` options) is not a setting of a resumed run."""
    overrides: dict[str, dict] = {}
    for option in FIT_SETTINGS:
        section, key = option.section_and_key
        value, _ = option.given(args)
        overrides.setdefault(section, {})[key] = None if option.movable and args.resume else value
    return overrides


def _resume_conflicts(args, config) -> list[str]:
    """The options that disagree with a run's saved config (values equal to it are fine)."""
    conflicts = []
    if args.config:
        conflicts.append(f"--config {args.config}")
    if args.data and args.data != config.data.name:
        conflicts.append(f"--data {args.data} (the run has {config.data.name})")
    if args.run_dir and Path(args.run_dir).absolute() != Path(args.resume).absolute():
        conflicts.append(f"--run-dir {args.run_dir}")
    for option in FIT_SETTINGS:
        if option.movable:
            continue
        section, key = option.section_and_key
        value, flag = option.given(args)
        saved = getattr(getattr(config, section), key)
        if value is not None and value != saved:
            conflicts.append(f"{flag} {value} (the run has {saved})")
    return conflicts


def _config_to_resume(args, run_dir: Path):
    """The saved config of the run to resume; options that disagree with it are an error."""
    from musicnext_tf.config import ConfigError, load_run_config

    config = load_run_config(run_dir)
    conflicts = _resume_conflicts(args, config)
    if conflicts:
        raise ConfigError(
            f"--resume continues {run_dir} with the settings in {run_dir / 'config.json'}, "
            f"and these options disagree with them: {'; '.join(conflicts)}. Drop them, or "
            "start a new run with another --run-dir"
        )
    return config


def _fit(args) -> int:
    from musicnext_tf import config as config_module
    from musicnext_tf import train

    if args.resume:
        run_dir = Path(args.resume)
        config = _config_to_resume(args, run_dir)
        if train.is_finished(run_dir):
            print(f"{run_dir}: the run has finished; nothing to resume (see metrics.json)")
            return 0
    else:
        config = config_module.resolve(args.data, args.config, _fit_overrides(args))
        run_dir = Path(
            args.run_dir or Path("runs") / f"{config.data.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        )
    progress, strict = not args.quiet, args.strict
    try:
        export_base = None if args.no_export else args.export_base
        if args.resume:
            metrics = train.resume(
                run_dir,
                progress,
                strict,
                export_base=export_base,
                strategy=args.strategy,
                data_service=args.data_service,
            )
        else:
            metrics = train.fit(config, run_dir, progress, strict, export_base=export_base)
    except KeyboardInterrupt:
        print(f"\n{train.interruption_message(run_dir)}", file=sys.stderr)
        return 130
    if "worker" in metrics:  # a multi-worker run's other workers: the chief reports
        print(
            f"worker {metrics['worker']} of {metrics['workers']}: trained to epoch "
            f"{metrics['epochs_completed']}; the chief writes {run_dir}"
        )
        return 0
    best = ""
    if metrics.get("best_epoch"):
        best = f" (best epoch {metrics['best_epoch']})"
        if metrics["model"] == "last":  # [train] report_model = "last"
            best = f" (reported by [train] report_model; the best validation epoch was {metrics['best_epoch']})"
    epochs = metrics["epochs_completed"]
    print(
        f"\n{config.data.name}: {metrics['model']} model{best}: test clip accuracy "
        f"{metrics['test_clip_accuracy']:.4f}, segment accuracy "
        f"{metrics['test_segment_accuracy']:.4f}, loss {metrics['test_loss']:.4f} after "
        f"{epochs} epoch{'s' if epochs != 1 else ''}"
        + _baseline_line(metrics)
        + f"\nrun folder: {run_dir}"
        + (f"\nSavedModel: {metrics['export']}" if metrics.get("export") else "")
    )
    return 0


def _baseline_line(metrics: dict) -> str:
    """The classical floor beside the model's figures, when the run could train it."""
    if metrics.get("baseline_clip_accuracy") is None:
        return ""
    return (
        "\nclassical baseline (MFCC statistics + logistic regression) on the same split: clip "
        f"accuracy {metrics['baseline_clip_accuracy']:.4f}"
    )


def _evaluate(args) -> int:
    from musicnext_tf.evaluate import evaluate_run, format_summary

    report, paths = evaluate_run(
        args.run_dir,
        model=args.model,
        data=args.data,
        data_dir=_absolute(args.data_dir),
        split=args.split,
        batch_size=args.batch_size,
        progress=not args.quiet,
        strict=args.strict,
        unknown=args.unknown,
        probes_per_kind=args.probes,
    )
    print(format_summary(report, paths))
    return 0


def _export(args) -> int:
    if args.format == "savedmodel":
        from musicnext_tf.export import ExportError, export_run

        if args.quantize is not None:
            raise ExportError("--quantize applies to --format litert only")

        base = args.base or SAVEDMODEL_BASE
        print(export_run(args.model, base=base, name=args.name, which=args.which))
        return 0
    from musicnext_tf.export import check_name
    from musicnext_tf.inference import load_trained_model
    from musicnext_tf.litert import export_litert

    trained = load_trained_model(args.model, args.which)
    name = check_name(args.name or trained.config.data.name)
    folder = Path(args.base or LITERT_BASE) / name
    print(export_litert(trained, folder, args.quantize or "none", name=name))
    return 0


def _predict(args) -> int:
    from musicnext_tf.files import atomic_write
    from musicnext_tf.inference import load_trained_model
    from musicnext_tf.predict import (
        audio_files,
        format_predictions,
        predict_files,
        write_timelines,
    )

    if args.plot and not args.timeline:
        print(
            "musicnext-tf predict: error: --plot draws the timeline: add --timeline DIR",
            file=sys.stderr,
        )
        return 2
    files = audio_files(args.paths)
    trained = load_trained_model(args.model, args.which)
    output_format = args.format or (
        "json" if args.output and args.output.lower().endswith(".json") else "csv"
    )
    predictions = predict_files(
        trained, files, args.clip_rule, progress=not args.quiet, timeline=bool(args.timeline)
    )
    if args.timeline:
        write_timelines(predictions, trained.genres, args.timeline, output_format, args.plot)
    text = format_predictions(predictions, trained, args.clip_rule, output_format)
    if args.output:
        atomic_write(args.output, text.encode("utf-8"))
    else:
        sys.stdout.write(text)
    skipped = sum(1 for prediction in predictions if prediction.error)
    if skipped and args.strict:
        print(
            f"musicnext-tf predict: error: {skipped} of {len(predictions)} file(s) could not be "
            "classified (see the warnings and the error column); rerun without --strict to "
            "accept that",
            file=sys.stderr,
        )
        return 2
    return 0


def _prepare(args) -> int:
    from musicnext_tf import config as config_module
    from musicnext_tf import datasets
    from musicnext_tf.prepare import prepare, summary

    config = config_module.resolve(
        args.data, args.config, {"data": {"data_dir": _absolute(args.data_dir)}}
    )
    index = datasets.load_index(config, progress=not args.quiet)
    prepared = prepare(
        index, config, progress=not args.quiet, strict=args.strict, workers=args.workers
    )
    print(summary(index, prepared))
    return 0


WITHOUT_TENSORFLOW = ("presets",)  # commands that never need TensorFlow


@dataclass(frozen=True)
class Command:
    """A subcommand: its line in `musicnext-tf --help`, the function adding its arguments to its
    parser, and the function running it (returns the exit code)."""

    summary: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS = {
    "fit": Command("train and evaluate a model; writes a run folder", _fit_arguments, _fit),
    "evaluate": Command(
        "report a trained run's model on a dataset split", _evaluate_arguments, _evaluate
    ),
    "predict": Command(
        "the genre of audio files, with a trained model", _predict_arguments, _predict
    ),
    "export": Command(
        "write a run's model as a SavedModel for TensorFlow Serving, or for LiteRT",
        _export_arguments,
        _export,
    ),
    "prepare": Command(
        "decode a dataset and cache its features (fit does it when needed)",
        _prepare_arguments,
        _prepare,
    ),
    "sweep": Command(
        "reproduce one of the paper's ablations: a grid of runs, a table, a CSV and plots",
        _sweep_arguments,
        _sweep,
    ),
    "baseline": Command(
        "score the classical baseline on a run's exact split", _baseline_arguments, _baseline
    ),
    "presets": Command(
        "list the dataset presets shipped with the package", _presets_arguments, _presets
    ),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(_chosen_command(argv))
    args = parser.parse_args(argv)
    # our INFO lines (what is prepared, resumed, exported); other libraries' INFO lines (absl's
    # "Sharding callback duration", TensorFlow's collective-ops set-up) are chatter, and
    # TensorFlow's logger would print them twice (its handler, then the root logger's)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    logging.getLogger("musicnext_tf").setLevel(logging.INFO)
    logging.getLogger("tensorflow").setLevel(logging.WARNING)
    if args.command is None:
        parser.print_help()
        return 2
    from musicnext_tf.audio import AudioError
    from musicnext_tf.config import ConfigError
    from musicnext_tf.datasets import DatasetError
    from musicnext_tf.errors import ExportError, PrepareError, RunError

    try:
        if args.command not in WITHOUT_TENSORFLOW:
            from musicnext_tf.startup import import_tensorflow

            import_tensorflow()  # first, so that its start-up chatter stays off the terminal
        return COMMANDS[args.command].run(args)
    except (ConfigError, DatasetError, PrepareError, AudioError, RunError, ExportError) as error:
        print(f"musicnext-tf {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; finished cache entries and files are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
