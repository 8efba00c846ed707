"""ISMIR2004 genre (MTG, Magnatune tracks): full-length songs, 6 classes, fixed sets.

Layout of the download (`ismir04_genre/`)::

    metadata/{training,development,evaluation}/tracklist.csv
    audio/training/<orig_genre>/<artist>/<album>/<trackno>-<title>.mp3
    audio/development/artist_<A>_album_<B>_track_<C>.mp3
    audio/evaluation/<orig_genre>/<artist>/<album>/<trackno>-<title>.mp3

`tracklist.csv` has no header; its columns are class, artist, album, title, track number, the
file's path relative to `audio/<set>/` (and the Magnatune id in the evaluation set). Labels come
from the tracklist, never from the audio folders (whose 8 original genres differ from the 6
classes). The training set is the train split; the evaluation set (or, with `[data] options`
`test_split = "development"`, the development set) is the test split; `[data]
validation_fraction` moves that fraction of the training set, whole albums at a time, to a
validation split. Known faults of the metadata (`d'intavolatura` listed for a `d_intavolatura`
folder, a broken byte (U+FFFD) in `5-kruhov?_objazd.mp3` for `05-kruhovy_objazd.mp3`) are resolved by
the loose matching of `base.FileLocator`.
"""

from __future__ import annotations

import csv
from pathlib import Path

from musicnext_tf.config import ExperimentConfig
from musicnext_tf.datasets.base import (
    DatasetError,
    DatasetIndex,
    FileLocator,
    Problem,
    Track,
    UnresolvedPath,
    build_index,
    carve_validation,
    find_dataset_root,
    read_options,
    resolve_data_dir,
)

NAME = "ismir2004"
GENRES = ("classical", "electronic", "jazz_blues", "metal_punk", "rock_pop", "world")
OPTIONS = {"test_split": ("evaluation", "development")}
TRAINING_SET = "training"
LAYOUT = (
    "ismir04_genre/ with metadata/{training,development,evaluation}/tracklist.csv and "
    "audio/{training,development,evaluation}/..."
)
# columns of tracklist.csv
_CLASS, _ARTIST, _ALBUM, _PATH = 0, 1, 2, 5


def load_index(config: ExperimentConfig) -> DatasetIndex:
    """Indexes the training set as train and the chosen test set as test."""
    options = read_options(config, OPTIONS)
    root = find_dataset_root(
        resolve_data_dir(config.data.data_dir, NAME, LAYOUT), is_root, NAME, LAYOUT
    )
    tracks, unusable, problems = [], {}, []
    for set_name, split in ((TRAINING_SET, "train"), (options["test_split"], "test")):
        rows = read_tracklist(tracklist_path(root, set_name))
        audio = root / "audio" / set_name
        if not audio.is_dir():
            raise DatasetError(f"{root}: no audio/{set_name}/ folder; expected {LAYOUT}")
        locator = FileLocator(audio)
        for line, row in rows:
            track_id = f"{set_name}/{row[_PATH]}" if len(row) > _PATH else f"{set_name}:{line}"
            problem = _row_problem(row, line, track_id, audio, split)
            if problem:
                problems.append(problem)
                continue
            try:
                path = locator.locate(row[_PATH])
            except UnresolvedPath as error:
                path = audio / row[_PATH]
                unusable[track_id] = (error.reason, error.detail)
            group = f"{row[_ARTIST]}/{row[_ALBUM]}"  # an album stays in one split
            tracks.append(Track(track_id, path, row[_CLASS], split, group))
    tracks = carve_validation(tracks, config.data.validation_fraction, config.data.split_seed)
    return build_index(NAME, root, GENRES, tracks, config.audio.clip_rule, unusable, problems)


def is_root(folder: Path) -> bool:
    return tracklist_path(folder, TRAINING_SET).is_file()


def tracklist_path(root: Path, set_name: str) -> Path:
    return root / "metadata" / set_name / "tracklist.csv"


def read_tracklist(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, fields) of every non-empty row; undecodable bytes become U+FFFD."""
    if not path.is_file():
        raise DatasetError(f"{path} not found; expected {LAYOUT}")
    with path.open(encoding="utf-8", errors="replace", newline="") as file:
        return [(line, row) for line, row in enumerate(csv.reader(file), 1) if any(row)]


def _row_problem(row: list[str], line: int, track_id: str, audio: Path, split: str):
    """The problem of a row that cannot become a track, or None."""
    if len(row) <= _PATH or not row[_PATH].strip():
        detail = f"line {line} has {len(row)} fields, expected at least {_PATH + 1}"
        return Problem(track_id, str(audio), "bad_metadata", detail, split)
    if row[_CLASS] not in GENRES:
        detail = f"class {row[_CLASS]!r} (line {line}) is not one of {list(GENRES)}"
        return Problem(track_id, str(audio / row[_PATH]), "unknown_label", detail, split)
    return None
