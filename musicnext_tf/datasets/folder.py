"""Any folder-per-genre collection: ROOT/<genre>/**/<file>.<audio extension>.

Labels are the names of the first-level folders (sorted, so class ids are reproducible); the split is
stratified by genre with a fixed seed. There are no `[data] options`.
"""

from __future__ import annotations

from musicnext_tf.audio import AUDIO_EXTENSIONS, UNSUPPORTED_EXTENSIONS, unsupported_format
from musicnext_tf.config import ExperimentConfig
from musicnext_tf.datasets.base import (
    DatasetError,
    DatasetIndex,
    Problem,
    Track,
    assign_splits,
    build_index,
    describe_folder,
    read_options,
    resolve_data_dir,
)

LAYOUT = (
    f"ROOT/<genre>/<file>{'|'.join(AUDIO_EXTENSIONS)} (one folder per genre, subfolders allowed)"
)


def load_index(config: ExperimentConfig, name: str = "folder", root=None) -> DatasetIndex:
    """Indexes ROOT/<genre>/... audio files; hidden files and folders, and files that are not
    audio, are ignored; audio in formats we cannot decode (.m4a, .wma...) become problems."""
    if root is None:
        read_options(config, {})
        root = resolve_data_dir(config.data.data_dir, name, LAYOUT)
    genre_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    tracks, problems = [], []
    for genre_dir in genre_dirs:
        for path in sorted(genre_dir.rglob("*")):
            hidden = any(part.startswith(".") for part in path.relative_to(root).parts)
            if not path.is_file() or hidden:
                continue
            track_id = path.relative_to(root).as_posix()
            if path.suffix.lower() in AUDIO_EXTENSIONS:
                tracks.append(Track(track_id, path, genre_dir.name))
            elif path.suffix.lower() in UNSUPPORTED_EXTENSIONS:
                detail = unsupported_format(path)
                problems.append(Problem(track_id, str(path), "unsupported_format", detail))
    genres = tuple(sorted({t.label for t in tracks}))
    if len(genres) < 2:
        unsupported = (
            f" ({len(problems)} file(s) in formats we cannot decode, e.g. "
            f"{problems[0].track_id}: {problems[0].detail})"
            if problems
            else ""
        )
        raise DatasetError(
            f"{root}: found audio for {len(genres)} genre folder(s) {list(genres)} in "
            f"{describe_folder(root)}{unsupported}; a folder dataset needs at least 2. Expected "
            f"layout: {LAYOUT}"
        )
    data = config.data
    tracks = assign_splits(tracks, data.test_fraction, data.validation_fraction, data.split_seed)
    return build_index(name, root, genres, tracks, config.audio.clip_rule, problems=problems)
