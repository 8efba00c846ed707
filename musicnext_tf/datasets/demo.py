"""The built-in synthetic `demo` dataset: generated once into the cache, then read as a folder.

It goes through the same loader, pipeline, model and loss as a real dataset, so a newcomer can train
end to end with no download. The audio comes from `musicnext_tf.demo_music`, imported only here, when
the set is indexed. Options (`[data] options` in the config): `clips_per_genre` (32),
`seconds` (30.0).
"""

from __future__ import annotations

from pathlib import Path

from musicnext_tf.config import ConfigError, ExperimentConfig, default_cache_dir
from musicnext_tf.datasets import folder
from musicnext_tf.datasets.base import DatasetIndex

DEFAULT_CLIPS_PER_GENRE = 32


def demo_root(config: ExperimentConfig) -> Path:
    """Where the demo audio lives: `data_dir` if given, else `<cache>/demo-audio`."""
    if config.data.data_dir:
        return Path(config.data.data_dir).expanduser()
    return Path(config.data.cache_dir or default_cache_dir()) / "demo-audio"


def load_index(config: ExperimentConfig, progress: bool = True) -> DatasetIndex:
    """Synthesises the demo audio if it is not there yet, then indexes it like any folder dataset."""
    options = dict(config.data.options)
    clips = int(options.pop("clips_per_genre", DEFAULT_CLIPS_PER_GENRE))
    seconds = float(options.pop("seconds", config.audio.clip_seconds))
    if options:
        raise ConfigError(
            f"unknown [data] options for the demo dataset: {sorted(options)}; valid options are "
            "['clips_per_genre', 'seconds']"
        )
    root = demo_root(config) / f"clips{clips}-{seconds:g}s-{config.audio.sample_rate}hz"
    # Imported here: listing or validating datasets (the command line does) must not load the
    # synthesiser.
    from musicnext_tf.demo_music import write_demo_dataset

    write_demo_dataset(
        root,
        clips_per_genre=clips,
        seconds=seconds,
        sample_rate=config.audio.sample_rate,
        progress=progress,
    )
    return folder.load_index(config, name="demo", root=root.resolve())
