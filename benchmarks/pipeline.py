"""The warm tf.data training pipeline against the model's appetite for segments.

A folder of GTZAN-like 30 s WAV clips is prepared into a feature cache; the benchmark then reads
it through `pipeline.training_dataset` (shuffle, random time flip, batching) after one untimed
pass, so files are in the page cache as in the second epoch of a run. Two figures:

- the pipeline's segments/s alone over the segments/s a training step consumes;
- the time of a training step of `fit` fed by this pipeline over one fed by an in-memory batch
  (`compute.synthetic_dataset`), timed alternately.
"""

from __future__ import annotations

import copy
import tempfile
import time
from pathlib import Path

import tensorflow as tf

from benchmarks.compute import Workbench, fit_step_seconds, synthetic_dataset
from benchmarks.corpus import FORMATS, write_corpus
from benchmarks.prepare_child import folder_config
from benchmarks.results import Figure
from musicnext_tf import datasets
from musicnext_tf.config import ExperimentConfig
from musicnext_tf.model import needs_labels
from musicnext_tf.pipeline import training_dataset
from musicnext_tf.prepare import SplitFeatures, prepare

FAMILY = "pipeline"


def cached_split(work: Path, clips: int, config: ExperimentConfig) -> SplitFeatures:
    """The training split of CLIPS prepared WAV clips of CONFIG's clip length (prepared in this
    process, with CONFIG's features)."""
    seconds = config.audio.clip_seconds
    for label in ("a", "b"):  # a folder dataset needs two genres
        write_corpus(work / "audio", FORMATS["wav"], clips // 2, seconds=seconds, label=label)
    config = copy.deepcopy(config)
    config.data = folder_config(work / "audio", work / "cache").data
    config.audio.clip_rule = "head"
    return prepare(datasets.load_index(config), config, progress=False, workers=1).split("train")


def segments_per_second(dataset: tf.data.Dataset, batches: int, batch_size: int) -> float:
    """Rate at which iterating `dataset` yields segments, over BATCHES batches."""
    iterator = iter(dataset)
    next(iterator)  # starts the pipeline's threads
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - start)


def run(bench: Workbench, clips: int, steps: int, rounds: int) -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="musicnext-bench-") as work:
        config = bench.config
        split = cached_split(Path(work), clips, config)
        dataset = training_dataset(
            split, config.features, config.train, needs_labels(bench.trainer)
        )
        epoch_batches = -(-config.features.segments_per_clip * len(split) // bench.batch_size)
        for _ in dataset.take(epoch_batches):  # warms the page cache
            pass
        supply = segments_per_second(dataset, 3 * epoch_batches, bench.batch_size)
        real, synthetic = [], []
        for _ in range(rounds):
            synthetic += fit_step_seconds(bench, synthetic_dataset(bench), steps)
            real += fit_step_seconds(bench, dataset, steps)
    consumption = bench.batch_size / min(synthetic)
    details = {
        "clips": len(split),
        "batch_size": bench.batch_size,
        "pipeline_segments_per_s": supply,
        "training_segments_per_s": consumption,
        "step_seconds": {"real": real, "synthetic": synthetic},
    }
    return [
        Figure(
            FAMILY,
            "warm pipeline segments/s / training consumption",
            supply / consumption,
            target=20.0,
            details=details,
        ),
        Figure(
            FAMILY,
            "training step: real pipeline / in-memory input",
            min(real) / min(synthetic),
            target=1.05,
            comparison="<=",
            details=details,
        ),
    ]
