"""Dataset loaders: each turns a data folder into a `DatasetIndex` of labelled, split recordings."""

from __future__ import annotations

from musicnext_tf.config import ExperimentConfig
from musicnext_tf.datasets import demo, extended_ballroom, folder, gtzan, ismir2004
from musicnext_tf.datasets.base import DatasetError, DatasetIndex, Problem, Track

LOADERS = {
    "demo": demo.load_index,
    "extended_ballroom": extended_ballroom.load_index,
    "folder": folder.load_index,
    "gtzan": gtzan.load_index,
    "ismir2004": ismir2004.load_index,
}


def load_index(config: ExperimentConfig, progress: bool = True) -> DatasetIndex:
    """Indexes the dataset named by `config.data.name` (`progress`: the demo set's synthesis bar)."""
    name = config.data.name
    if name not in LOADERS:
        raise DatasetError(f"unknown dataset {name!r}; available: {sorted(LOADERS)}")
    if name == "demo":
        return LOADERS[name](config, progress=progress)
    return LOADERS[name](config)


__all__ = ["DatasetError", "DatasetIndex", "Problem", "Track", "LOADERS", "load_index"]
