"""The `musicnext-tf` command line: resolves configs and calls the library; holds no model logic."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from musicnext_tf.config import ARCHITECTURES

EPILOG = """\
examples:
  musicnext-tf fit --data demo                       train on the built-in synthetic demo set
  musicnext-tf fit --data gtzan --data-dir ~/data/gtzan/genres --epochs 50
  musicnext-tf fit --data folder --data-dir ~/music/by-genre --head softmax
"""


def _add_fit_parser(commands) -> None:
    fit = commands.add_parser(
        "fit",
        help="train and evaluate a model; writes a run folder",
        description=(
            "Train MusicNeXt on a dataset and evaluate it on the test split. Writes RUN_DIR/config.json "
            "(the resolved config), run.json, model.keras and metrics.json. Settings come from the "
            "dataset's preset (pipelines/NAME.toml), then --config, then the options below."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fit.add_argument(
        "--data", help="dataset: demo, folder or a preset name (see `musicnext-tf presets`)"
    )
    fit.add_argument(
        "--data-dir", help="the dataset's root folder (default: [data] data_dir or $MUSICNEXT_DATA)"
    )
    fit.add_argument("--config", help="a TOML file whose tables override the dataset's preset")
    fit.add_argument("--run-dir", help="output folder (default: runs/<data>-<date>-<time>)")
    fit.add_argument("--epochs", type=int, help="number of training epochs (paper: 50)")
    fit.add_argument("--batch-size", type=int, help="segments per batch (paper: 50)")
    fit.add_argument("--learning-rate", type=float, help="Adam learning rate")
    fit.add_argument("--margin", type=int, help="L-softmax angular margin m, an integer >= 1")
    fit.add_argument("--head", choices=["lsoftmax", "softmax"], help="classification head")
    fit.add_argument(
        "--model",
        choices=list(ARCHITECTURES),
        help="network: musicnext (default), convnext (ConvNeXt-T) or resnet (ResNet-50-style)",
    )
    fit.add_argument(
        "--depths",
        type=_stacking_ratio,
        metavar="N:N:...",
        help="blocks per stage, the stacking ratio (e.g. 3:3:9:3; one entry per stage width)",
    )
    fit.add_argument("--seed", type=int, help="seed of initialisation, data order and augmentation")
    fit.add_argument(
        "--strict", action="store_true", help="fail if any recording has to be skipped"
    )
    fit.add_argument("--quiet", action="store_true", help="no progress bars")


def _stacking_ratio(text: str) -> list[int]:
    """`3:3:9:3` -> [3, 3, 9, 3]; argparse reports a ValueError as an invalid value."""
    depths = [int(part) for part in text.split(":")]
    if any(depth < 1 for depth in depths):
        raise ValueError(text)
    return depths


def _add_presets_parser(commands) -> None:
    commands.add_parser("presets", help="list the dataset presets shipped with the package")


def _presets(args) -> int:
    from musicnext_tf.config import preset_names

    print("\n".join(preset_names()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="musicnext-tf",
        description="MusicNeXt music genre classification (Keras 3 / TensorFlow).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from musicnext_tf import __version__

    parser.add_argument("--version", action="version", version=f"musicnext-tf {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add_parser, _ in COMMANDS.values():
        add_parser(commands)
    return parser


def _fit(args) -> int:
    from musicnext_tf import config as config_module
    from musicnext_tf.train import fit

    config = config_module.resolve(
        args.data,
        args.config,
        {
            "data": {"data_dir": args.data_dir},
            "train": {
                "epochs": args.epochs,
                "batch_size": args.batch_size,
                "learning_rate": args.learning_rate,
                "seed": args.seed,
            },
            "model": {
                "margin": args.margin,
                "head": args.head,
                "architecture": args.model,
                "depths": args.depths,
            },
        },
    )
    run_dir = Path(
        args.run_dir or Path("runs") / f"{config.data.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    metrics = fit(config, run_dir, progress=not args.quiet, strict=args.strict)
    print(
        f"\n{config.data.name}: test clip accuracy {metrics['test_clip_accuracy']:.4f}, "
        f"segment accuracy {metrics['test_segment_accuracy']:.4f}, loss {metrics['test_loss']:.4f} "
        f"after {metrics['epochs_completed']} epochs\nrun folder: {run_dir}"
    )
    return 0


# name -> (function adding the subcommand's parser, function running it and returning an exit code)
COMMANDS = {
    "fit": (_add_fit_parser, _fit),
    "presets": (_add_presets_parser, _presets),
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    if args.command is None:
        parser.print_help()
        return 2
    from musicnext_tf.audio import AudioError
    from musicnext_tf.config import ConfigError
    from musicnext_tf.datasets import DatasetError
    from musicnext_tf.prepare import PrepareError

    try:
        return COMMANDS[args.command][1](args)
    except (ConfigError, DatasetError, PrepareError, AudioError) as error:
        print(f"musicnext-tf {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; finished cache entries and files are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
