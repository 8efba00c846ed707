"""What every dataset loader returns: an index of labelled recordings with their splits.

Loaders only read folders and metadata; they never decode audio. Problems found at this level
(files listed but missing, unknown labels, paths outside the data folder) are collected in
`DatasetIndex.problems` so that `prepare` can report them with the decoding failures.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SPLITS = ("train", "validation", "test")


class DatasetError(ValueError):
    """The data folder does not hold the expected layout; the message says what was expected."""


@dataclass(frozen=True)
class Track:
    """One labelled recording.

    Attributes:
        track_id: stable identifier, unique within the dataset (a path relative to the root).
        path: absolute path of the audio file.
        label: genre name (one of the index's `genres`).
        split: "train", "validation" or "test".
        group: tracks sharing a group (duplicates) always land in the same split.
    """

    track_id: str
    path: Path
    label: str
    split: str = "train"
    group: str | None = None


@dataclass(frozen=True)
class Problem:
    """A recording that was skipped, and why (`reason` is a short code)."""

    track_id: str
    path: str
    reason: str
    detail: str = ""
    split: str = ""


@dataclass
class DatasetIndex:
    """All usable recordings of a dataset, their genres (the class order) and the split."""

    name: str
    root: Path
    genres: tuple[str, ...]
    tracks: list[Track]
    clip_rule: str = "head"
    problems: list[Problem] = field(default_factory=list)

    def split(self, name: str) -> list[Track]:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {SPLITS}")
        return [track for track in self.tracks if track.split == name]

    def label_id(self, label: str) -> int:
        return self.genres.index(label)

    def counts(self) -> dict[str, dict[str, int]]:
        """{split: {genre: number of tracks}} for the splits that are not empty."""
        counts: dict[str, dict[str, int]] = {}
        for track in self.tracks:
            per_genre = counts.setdefault(track.split, dict.fromkeys(self.genres, 0))
            per_genre[track.label] += 1
        return counts


def stratified_split(
    labels: Sequence[str],
    fraction: float,
    seed: int,
    groups: Sequence[str | None] | None = None,
) -> np.ndarray:
    """Chooses about `fraction` of the items of every label, reproducibly.

    Items that share a group are chosen or left together (so duplicates never straddle splits).
    Returns:
        bool array, True for the chosen items.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"split fraction must be in [0, 1), got {fraction}")
    labels = list(labels)
    groups = [g if g is not None else f"#{i}" for i, g in enumerate(groups or [None] * len(labels))]
    chosen = np.zeros(len(labels), dtype=bool)
    rng = np.random.default_rng(seed)
    for label in sorted(set(labels)):
        members = [i for i, item_label in enumerate(labels) if item_label == label]
        label_groups = sorted({groups[i] for i in members})
        order = rng.permutation(len(label_groups))
        target, taken = int(round(fraction * len(members))), 0
        picked = set()
        for position in order:
            if taken >= target:
                break
            group = label_groups[position]
            size = sum(1 for i in members if groups[i] == group)
            picked.add(group)
            taken += size
        chosen[[i for i in members if groups[i] in picked]] = True
    return chosen


def assign_splits(
    tracks: list[Track], test_fraction: float, validation_fraction: float, seed: int
) -> list[Track]:
    """Gives tracks without a fixed split a stratified train/validation/test assignment.

    The test split is drawn first, then the validation split from what remains, each stratified
    by genre and respecting groups.
    """
    labels = [t.label for t in tracks]
    groups = [t.group for t in tracks]
    is_test = stratified_split(labels, test_fraction, seed, groups)
    rest = [i for i in range(len(tracks)) if not is_test[i]]
    is_validation = np.zeros(len(tracks), dtype=bool)
    if validation_fraction > 0 and rest:
        # fraction of the remainder so that validation is `validation_fraction` of the whole
        share = min(0.99, validation_fraction / max(1e-9, 1.0 - test_fraction))
        picked = stratified_split(
            [labels[i] for i in rest], share, seed + 1, [groups[i] for i in rest]
        )
        is_validation[np.asarray(rest)[picked]] = True
    split_of = np.where(is_test, "test", np.where(is_validation, "validation", "train"))
    return [
        Track(t.track_id, t.path, t.label, str(split), t.group)
        for t, split in zip(tracks, split_of)
    ]


def resolve_data_dir(data_dir: str | os.PathLike | None, dataset: str, expected: str) -> Path:
    """The dataset's root folder from the config or `MUSICNEXT_DATA`, checked to exist.

    Args:
        expected: a one-line description of the layout, used in the error message.
    """
    chosen = data_dir or os.environ.get("MUSICNEXT_DATA")
    if not chosen:
        raise DatasetError(
            f"no data folder for {dataset!r}: pass --data-dir PATH, set [data] data_dir in the "
            f"config, or set MUSICNEXT_DATA. Expected layout: {expected}"
        )
    root = Path(chosen).expanduser()
    if not root.is_dir():
        raise DatasetError(
            f"data folder {root} does not exist (dataset {dataset!r}; expected {expected})"
        )
    return root.resolve()
