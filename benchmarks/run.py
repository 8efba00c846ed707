"""The benchmark suite's entry point: `python -m benchmarks [--quick] [--json PATH]`.

Runs every figure family (or those named by --only), prints one table with each figure's target
and PASS/MISS, and writes the figures with their raw timings and the machine's description as JSON.
`--quick` shrinks batch sizes, clip counts and repeats so the whole suite runs in under two
minutes (for CI); its figures are noisier and its memory figure compares smaller datasets.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, replace

FAMILIES = ("compute", "features", "prepare", "pipeline", "serving", "startup")
# families that measure no model: the default model's workbench is not built for them alone
WITHOUT_WORKBENCH = ("prepare", "startup")
# families run only when named with --only: they need data of the user's (--data-dir)
ON_REQUEST = ("real-music",)


@dataclass(frozen=True)
class Settings:
    """Sizes of one benchmark run."""

    batch_size: int  # training and inference batch of the default model (the paper's is 50)
    repeats: int  # timed repeats per figure (the best is kept)
    train_steps: int  # timed training steps of the compute figure
    mel_clips: int  # 30 s clips for the log-mel comparison
    prepare_clips: int  # files per format for the cold prepare comparison (x10 for memory)
    song_seconds: float  # length of the full-length songs (ISMIR2004-like)
    pipeline_clips: int  # prepared clips the pipeline reads
    fit_steps: int  # timed training steps per round in the real-vs-synthetic comparison
    fit_rounds: int  # alternating rounds of real and synthetic input
    serving_batch: int  # 30 s clips per request in the serving throughput figure
    startup_runs: int  # timed starts of each command in the start-up figures (the median is kept)


FULL = Settings(
    batch_size=50,
    repeats=3,
    train_steps=5,
    mel_clips=10,
    prepare_clips=34,
    song_seconds=240.0,
    pipeline_clips=60,
    fit_steps=2,
    fit_rounds=2,
    serving_batch=32,
    startup_runs=7,
)
QUICK = Settings(
    batch_size=8,
    repeats=2,
    train_steps=2,
    mel_clips=2,
    prepare_clips=8,
    song_seconds=90.0,
    pipeline_clips=16,
    fit_steps=2,
    fit_rounds=1,
    serving_batch=4,
    startup_runs=7,
)


def run_families(settings: Settings, families=FAMILIES, config=None) -> list:
    """Runs the chosen families with SETTINGS on the model and features of CONFIG (default: the
    GTZAN preset's); returns their figures in order."""
    from benchmarks import compute

    figures = []
    needs_bench = any(family not in WITHOUT_WORKBENCH for family in families)
    bench = compute.build_workbench(settings.batch_size, config) if needs_bench else None
    for family in families:
        started = time.perf_counter()
        results = _run_family(family, settings, bench)
        seconds, load = time.perf_counter() - started, os.getloadavg()[0]
        for figure in results:
            figure.details["run"] = {"family_seconds": round(seconds, 1), "load_average": load}
        figures += results
        print(f"  {family}: {seconds:.0f} s, load average {load:.2f}", file=sys.stderr, flush=True)
    return figures


def _run_family(family: str, settings: Settings, bench) -> list:
    from benchmarks import compute, features, pipeline, prepare, serving, startup

    if family == "compute":
        return compute.run(bench, settings.repeats, settings.train_steps)
    if family == "features":
        return features.run(bench.config, settings.mel_clips, 3 * settings.repeats)  # cheap
    if family == "prepare":
        return prepare.run(settings.prepare_clips, settings.song_seconds)
    if family == "pipeline":
        return pipeline.run(bench, settings.pipeline_clips, settings.fit_steps, settings.fit_rounds)
    if family == "serving":
        return serving.run(bench, settings.repeats, settings.serving_batch)
    if family == "startup":
        return startup.run(settings.startup_runs)
    raise ValueError(f"unknown benchmark family {family!r}; choose from {list(FAMILIES)}")


def machine() -> dict:
    """What the figures were measured on."""
    import librosa
    import numpy
    import tensorflow as tf

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            cpu = next(
                line.split(":", 1)[1].strip() for line in info if line.startswith("model name")
            )
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "numpy": numpy.__version__,
        "librosa": librosa.__version__,
        "gpus": len(tf.config.list_physical_devices("GPU")),
    }


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, under 2 minutes (CI)")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON to PATH")
    parser.add_argument(
        "--batch-size", type=int, help="batch of the model figures (default: 50; --quick: 8)"
    )
    parser.add_argument(
        "--precision",
        choices=["float32", "mixed_bfloat16", "mixed_float16"],
        default="float32",
        help="the model's [train] precision, as `fit --precision` (accelerators; the GEMM "
        "ceiling stays float32, so read the segments/s figures)",
    )
    parser.add_argument(
        "--jit-compile",
        action=argparse.BooleanOptionalAction,
        help="compile the training step with XLA, as `fit --jit-compile` (default: Keras' rule, "
        "on with a GPU)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=FAMILIES + ON_REQUEST,
        default=list(FAMILIES),
        help="run only these families (real-music runs only when named here)",
    )
    parser.add_argument(
        "--data-dir",
        help="real-music: a folder of real recordings, one sub-folder per genre",
    )
    parser.add_argument(
        "--folds",
        type=int,
        default=None,
        help="real-music: number of track-level splits (seeds 0..N-1; default 5)",
    )
    parser.add_argument(
        "--work-dir",
        default="runs/real-music",
        help="real-music: where the folds' run folders go (reused and resumed on a rerun)",
    )
    parser.add_argument(
        "--config", help="real-music: a TOML file overriding the folder preset's settings"
    )
    args = parser.parse_args(argv)
    if "real-music" in args.only and not args.data_dir:
        parser.error("--only real-music needs --data-dir DIR (one sub-folder per genre)")
    if args.folds is not None and args.folds < 1:
        parser.error(f"--folds must be at least 1, got {args.folds}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    settings = QUICK if args.quick else FULL
    if args.batch_size:
        settings = replace(settings, batch_size=args.batch_size)
    from musicnext_tf.startup import import_tensorflow

    import_tensorflow()  # without its start-up chatter
    from benchmarks import estimate
    from benchmarks.results import table, write_json

    started = time.time()
    load_before = os.getloadavg()
    from musicnext_tf.config import resolve

    train = {"precision": args.precision, "jit_compile": args.jit_compile}
    config = resolve("gtzan", None, {"train": train})
    families = [family for family in args.only if family in FAMILIES]
    figures = run_families(settings, families, config) if families else []
    if "real-music" in args.only:
        from benchmarks import real_music

        folds = args.folds or real_music.DEFAULT_FOLDS
        figures += real_music.run(args.data_dir, folds, args.work_dir, args.config)
    context = {
        "command": " ".join(
            ["python -m benchmarks", *(argv if argv is not None else sys.argv[1:])]
        ),
        "mode": "quick" if args.quick else "full",
        "settings": asdict(settings),
        "train": {"precision": config.train.precision, "jit_compile": config.train.jit_compile},
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
        "seconds": round(time.time() - started, 1),
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "machine": machine(),
        "paper_run_estimate": estimate.paper_run(figures),
    }
    print(table(figures))
    print(
        f"\n{context['mode']} run, {context['seconds']:.0f} s, {context['date']}, "
        f"{context['machine']['cpu']} ({context['machine']['cores']} cores), load average "
        f"{load_before[0]:.2f} before, {context['load_average']['after'][0]:.2f} after"
    )
    if context["paper_run_estimate"]:
        print(estimate.describe(context["paper_run_estimate"]))
    if args.json:
        write_json(args.json, figures, context)
        print(f"results: {args.json}")
    return 0
