"""GTZAN (Tzanetakis & Cook 2002): 10 genres x 100 clips of about 30 s.

Layout (the folder may be called `genres/`, `genres_original/` or, in the Kaggle copy,
`Data/genres_original/`; `--data-dir` may point at it or at a folder above it)::

    <genre>/<genre>.000NN.au        (or .wav; both are accepted, .wav first when both exist)

The label is the genre folder. Splits (`[data] options`, `split = ...`):
    "random" (default, the paper's): stratified by genre with `[data] test_fraction`,
        `validation_fraction` and `split_seed`, drawn over the 1000 clips GTZAN has, so a seed
        splits every copy alike and a missing clip is reported in its split.
    "filtered": the fault-filtered split of Kereliuk, Sturm and Larsen (2015), which keeps
        artists on one side and leaves out 70 replicas and mislabelled clips: 443 train,
        197 validation and 290 test clips, from the lists shipped in `datasets/data/`;
        `test_fraction` and `validation_fraction` do not apply.
The Kaggle copy's `jazz.00054.wav` does not decode; `prepare` skips and reports it.
"""

from __future__ import annotations

import os
import re
from importlib import resources
from pathlib import Path

from musicnext_tf.config import ExperimentConfig
from musicnext_tf.datasets.base import (
    DatasetError,
    DatasetIndex,
    Track,
    assign_splits,
    build_index,
    find_dataset_root,
    read_options,
    resolve_data_dir,
)

NAME = "gtzan"
GENRES = (
    "blues",
    "classical",
    "country",
    "disco",
    "hiphop",
    "jazz",
    "metal",
    "pop",
    "reggae",
    "rock",
)
CLIPS_PER_GENRE = 100
EXTENSIONS = (".wav", ".au")  # the preferred one first, when a copy holds both
OPTIONS = {"split": ("random", "filtered")}
FILTERED_LISTS = {
    "train": "gtzan_train_filtered.txt",
    "validation": "gtzan_valid_filtered.txt",
    "test": "gtzan_test_filtered.txt",
}
LAYOUT = (
    "genres/<genre>/<genre>.000NN.au or .wav for the 10 genres "
    f"({', '.join(GENRES)}); also genres_original/ or Data/genres_original/"
)
_CLIP_FILE = re.compile(r"[a-z]+\.\d{5}\.(au|wav)", re.IGNORECASE)


def load_index(config: ExperimentConfig) -> DatasetIndex:
    """Indexes the 1000 clips with the chosen split; missing clips become problems."""
    options = read_options(config, OPTIONS)
    root = find_dataset_root(
        resolve_data_dir(config.data.data_dir, NAME, LAYOUT), is_root, NAME, LAYOUT
    )
    absent = [genre for genre in GENRES if not (root / genre).is_dir()]
    if absent:
        raise DatasetError(
            f"{root} has no folder for the GTZAN genre(s) {absent}; expected {LAYOUT}"
        )
    files, ignored = clip_files(root)
    if options["split"] == "filtered":
        tracks = [_track(root, files, clip, split) for clip, split in filtered_split().items()]
        notes = [
            f"split 'filtered': {len(GENRES) * CLIPS_PER_GENRE - len(tracks)} clips are left out "
            "by the fault-filtered lists"
        ]
    else:
        clips = [f"{genre}/{genre}.{n:05d}" for genre in GENRES for n in range(CLIPS_PER_GENRE)]
        data = config.data
        tracks = assign_splits(
            [_track(root, files, clip, "train") for clip in clips],
            data.test_fraction,
            data.validation_fraction,
            data.split_seed,
        )
        notes = []
    if ignored:
        notes.append(f"{len(ignored)} file(s) that are not GTZAN clips were ignored: {ignored[:5]}")
    unusable = {
        t.track_id: ("missing", f"no {t.track_id}.au or .wav in {root}")
        for t in tracks
        if t.track_id not in files
    }
    return build_index(NAME, root, GENRES, tracks, config.audio.clip_rule, unusable, notes=notes)


def is_root(folder: Path) -> bool:
    """True for a folder holding at least one genre folder with GTZAN clips in it."""
    for genre in GENRES:
        try:
            if any(_CLIP_FILE.fullmatch(name) for name in os.listdir(folder / genre)):
                return True
        except OSError:
            continue
    return False


def clip_files(root: Path) -> tuple[dict[str, Path], list[str]]:
    """({clip id `genre/genre.000NN`: its file}, the other files in the genre folders)."""
    files, ignored = {}, []
    for genre in GENRES:
        for path in sorted((root / genre).iterdir(), key=lambda p: _preference(p.suffix)):
            if path.name.startswith(".") or not path.is_file():
                continue  # hidden files include macOS's `._blues.00000.wav` resource forks
            clip = f"{genre}/{path.stem}"
            if not (path.stem.startswith(f"{genre}.") and _CLIP_FILE.fullmatch(path.name)):
                ignored.append(f"{genre}/{path.name}")
            elif clip not in files:
                files[clip] = path
    return files, sorted(ignored)


def _preference(suffix: str) -> int:
    suffix = suffix.lower()
    return EXTENSIONS.index(suffix) if suffix in EXTENSIONS else len(EXTENSIONS)


def filtered_split() -> dict[str, str]:
    """{clip id: split} of the fault-filtered split (Kereliuk, Sturm and Larsen 2015)."""
    listed = {}
    folder = resources.files("musicnext_tf.datasets") / "data"
    for split, name in FILTERED_LISTS.items():
        for line in (folder / name).read_text(encoding="utf-8").split():
            listed[line.rsplit(".", 1)[0]] = split  # "blues/blues.00029.wav" -> its clip id
    return listed


def _track(root: Path, files: dict[str, Path], clip: str, split: str) -> Track:
    genre = clip.split("/", 1)[0]
    return Track(clip, files.get(clip, root / f"{clip}.wav"), genre, split)
