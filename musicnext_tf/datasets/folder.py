"""Any folder-per-genre collection: ROOT/<genre>/**/<file>.<audio extension>.

Labels are the names of the first-level folders (sorted, so class ids are reproducible); the split is
stratified by genre with a fixed seed. There are no `[data] options`.
"""

from __future__ import annotations

from musicnext_tf.audio import AUDIO_EXTENSIONS
from musicnext_tf.config import ExperimentConfig
from musicnext_tf.datasets.base import (
    DatasetError,
    DatasetIndex,
    Track,
    assign_splits,
    describe_folder,
    read_options,
    resolve_data_dir,
)

LAYOUT = "ROOT/<genre>/<file>.wav|.mp3|.flac|.ogg|.au (one folder per genre, subfolders allowed)"


def load_index(config: ExperimentConfig, name: str = "folder", root=None) -> DatasetIndex:
    """Indexes ROOT/<genre>/... audio files; hidden files and folders are ignored."""
    if root is None:
        read_options(config, {})
        root = resolve_data_dir(config.data.data_dir, name, LAYOUT)
    genre_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    tracks = []
    for genre_dir in genre_dirs:
        for path in sorted(genre_dir.rglob("*")):
            hidden = any(part.startswith(".") for part in path.relative_to(root).parts)
            if path.is_file() and not hidden and path.suffix.lower() in AUDIO_EXTENSIONS:
                track_id = path.relative_to(root).as_posix()
                tracks.append(Track(track_id, path, genre_dir.name))
    genres = tuple(sorted({t.label for t in tracks}))
    if len(genres) < 2:
        raise DatasetError(
            f"{root}: found audio for {len(genres)} genre folder(s) {list(genres)} in "
            f"{describe_folder(root)}; a folder dataset needs at least 2. Expected layout: {LAYOUT}"
        )
    data = config.data
    tracks = assign_splits(tracks, data.test_fraction, data.validation_fraction, data.split_seed)
    return DatasetIndex(name, root, genres, tracks, clip_rule=config.audio.clip_rule)
