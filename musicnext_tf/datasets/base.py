"""What every dataset loader returns: an index of labelled recordings with their splits.

Loaders only read folders and metadata; they never decode audio. Problems found at this level
(files listed but missing, unknown labels, paths outside the data folder) are collected in
`DatasetIndex.problems` so that `prepare` can report them with the decoding failures. The helpers
here are what loaders share: finding the dataset's root wherever the user pointed, checking
`[data] options`, locating listed files despite the small ways copies drift from their metadata,
and reproducible stratified splits that keep duplicates together.
"""

from __future__ import annotations

import dataclasses
import os
import posixpath
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from musicnext_tf.config import ConfigError, ExperimentConfig

SPLITS = ("train", "validation", "test")


class DatasetError(ValueError):
    """The data folder does not hold the expected layout; the message says what was expected."""


@dataclass(frozen=True)
class Track:
    """One labelled recording.

    Attributes:
        track_id: stable identifier, unique within the dataset (a path relative to the root, or
            the metadata's own name for the recording).
        path: absolute path of the audio file (where it was expected, for a missing file).
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
    """All usable recordings of a dataset, their genres (the class order) and the split.

    `notes` says what a loader left out on purpose (not problems), e.g. the genres a preset does
    not use; `prepare` copies them into its report.
    """

    name: str
    root: Path
    genres: tuple[str, ...]
    tracks: list[Track]
    clip_rule: str = "head"
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

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


def build_index(
    name: str,
    root: Path,
    genres: Sequence[str],
    tracks: Iterable[Track],
    clip_rule: str,
    unusable: Mapping[str, tuple[str, str]] | None = None,
    problems: Iterable[Problem] = (),
    notes: Iterable[str] = (),
) -> DatasetIndex:
    """The index of the usable tracks; the others become problems in their split.

    Args:
        unusable: {track_id: (reason, detail)} for tracks found unusable while indexing (a
            listed file that is missing, say). Loaders split all listed tracks first, so that a
            given seed splits every copy of a dataset alike, however complete.
        problems: problems of entries that never became tracks (an unknown label, say).
    A second track naming a file that an earlier track already uses is a "duplicate" problem.
    """
    unusable = unusable or {}
    usable, found = [], list(problems)
    owner_of: dict[Path, str] = {}
    for track in tracks:
        reason = unusable.get(track.track_id)
        if reason is None and track.path in owner_of:
            reason = ("duplicate", f"the same file as {owner_of[track.path]}")
        if reason is None:
            owner_of[track.path] = track.track_id
            usable.append(track)
        else:
            found.append(Problem(track.track_id, str(track.path), *reason, split=track.split))
    return DatasetIndex(name, root, tuple(genres), usable, clip_rule, found, list(notes))


def read_options(config: ExperimentConfig, choices: Mapping[str, Sequence]) -> dict:
    """The dataset's `[data] options`, checked; each option's first choice is its default.

    Raises:
        ConfigError naming an unknown option or value and the valid ones.
    """
    given, dataset = dict(config.data.options), config.data.name
    valid = "; ".join(
        f"{key} = {' | '.join(repr(value) for value in values)}" for key, values in choices.items()
    )
    unknown = sorted(set(given) - set(choices))
    if unknown:
        raise ConfigError(
            f"[data] options: unknown option(s) {unknown} for dataset {dataset!r}; "
            f"valid options: {valid or 'none'}"
        )
    values = {}
    for key, allowed in choices.items():
        values[key] = given.get(key, allowed[0])
        if values[key] not in allowed:
            raise ConfigError(
                f"[data] options: {key} = {values[key]!r} is not valid for dataset {dataset!r}; "
                f"choose one of {list(allowed)}"
            )
    return values


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


# Folders searched below the one given, per level, before giving up (a home folder can be big).
_MAX_FOLDERS_PER_LEVEL = 2000


def find_dataset_root(
    start: Path, is_root: Callable[[Path], bool], dataset: str, expected: str
) -> Path:
    """The dataset's root folder at or near `start`, where the user pointed `--data-dir`.

    Looks at `start`, then at the folders one and two levels below it (the parent of the download,
    a folder of datasets), then one and two levels above it (a folder inside the dataset, such
    as `audio/` or one genre's folder).

    Raises:
        DatasetError naming the expected layout and what `start` holds, or the candidates when
        more than one folder at the same depth looks like the dataset.
    """
    if is_root(start):
        return start
    level = [start]
    for _ in range(2):
        level = [child for folder in level for child in _subfolders(folder)]
        level = level[:_MAX_FOLDERS_PER_LEVEL]
        found = [folder for folder in level if is_root(folder)]
        if len(found) == 1:
            return found[0]
        if found:
            raise DatasetError(
                f"{start} holds several {dataset} copies: {', '.join(map(str, found))}; pass the "
                "one to use as --data-dir"
            )
    for parent in list(start.parents)[:2]:
        if is_root(parent):
            return parent
    raise DatasetError(
        f"{start} does not hold the {dataset} dataset (looked in it, two levels below and two "
        f"above). Expected {expected}; found {describe_folder(start)}. Point --data-dir (or "
        "[data] data_dir, or MUSICNEXT_DATA) at the dataset's folder"
    )


def _subfolders(folder: Path) -> list[Path]:
    try:
        return sorted(
            entry for entry in folder.iterdir() if not entry.name.startswith(".") and entry.is_dir()
        )
    except OSError:
        return []


def describe_folder(folder: Path, limit: int = 8) -> str:
    """What a folder holds, briefly, for error messages: `a/, b/, c.txt (and 5 more)`."""
    try:
        names = sorted(
            entry.name + ("/" if entry.is_dir() else "")
            for entry in folder.iterdir()
            if not entry.name.startswith(".")
        )
    except OSError as error:
        return f"an unreadable folder ({error.strerror})"
    if not names:
        return "an empty folder"
    more = f" (and {len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


class UnresolvedPath(LookupError):
    """A listed file that `FileLocator` could not find; `reason` is a Problem reason code."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class FileLocator:
    """Finds the files that metadata lists, relative to `base`, in a user's copy.

    Copies drift from their listings in small ways: a character replaced on disk (`d'x` ->
    `d_x`), a broken byte in the listing (U+FFFD), accents stripped or decomposed, a track
    number zero-padded (`5-` -> `05-`), letter case. When the exact path does not exist, each
    missing path component is matched loosely against its folder's entries, and accepted only
    when exactly one entry matches. Listed paths that leave `base` (absolute, or `..` above it)
    are refused: metadata must not make us read files elsewhere.
    """

    def __init__(self, base: Path):
        self.base = base
        self._listings: dict[Path, list[str]] = {}

    def locate(self, listed: str) -> Path:
        """The file that `listed` names.

        Raises:
            UnresolvedPath with reason "outside_data_dir" or "missing".
        """
        parts = self._relative_parts(listed)
        exact = self.base.joinpath(*parts)
        if exact.is_file():
            return exact
        folder = self.base
        for position, part in enumerate(parts):
            is_last = position == len(parts) - 1
            if (folder / part).is_file() if is_last else (folder / part).is_dir():
                folder = folder / part
                continue
            pattern = _loose_pattern(part)
            matches = [
                name
                for name in self._listing(folder)
                if pattern.fullmatch(_fold(name))
                and ((folder / name).is_file() if is_last else (folder / name).is_dir())
            ]
            if len(matches) != 1:
                ambiguity = f"; several entries match it: {sorted(matches)}" if matches else ""
                raise UnresolvedPath(
                    "missing",
                    f"{listed!r} is not in {self.base}: no {part!r} in {folder}{ambiguity}",
                )
            folder = folder / matches[0]
        return folder

    def _relative_parts(self, listed: str) -> list[str]:
        text = listed.replace("\\", "/")
        if text.startswith(("/", "~")) or re.match(r"^[A-Za-z]:", text):
            raise UnresolvedPath("outside_data_dir", f"{listed!r} is an absolute path")
        parts = [part for part in posixpath.normpath(text).split("/") if part not in ("", ".")]
        if not parts or parts[0] == "..":
            raise UnresolvedPath("outside_data_dir", f"{listed!r} leads out of {self.base}")
        return parts

    def _listing(self, folder: Path) -> list[str]:
        if folder not in self._listings:
            try:
                self._listings[folder] = sorted(os.listdir(folder))
            except OSError:
                self._listings[folder] = []
        return self._listings[folder]


def _fold(name: str) -> str:
    """Lower case without accents: `Kruhový` -> `kruhovy` (composed or decomposed alike)."""
    decomposed = unicodedata.normalize("NFKD", name)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


def _loose_pattern(listed: str) -> re.Pattern:
    """A regex of the names a copy may give the listed file or folder name (see FileLocator)."""
    pieces = []
    for token in re.findall(r"\d+|[a-z]+|\ufffd|[^a-z0-9\ufffd]+", _fold(listed)):
        if token.isdigit():
            pieces.append("0*" + (token.lstrip("0") or "0"))
        elif token == "\ufffd":
            pieces.append(".{0,2}")  # a broken byte stood for one character, or two
        elif token.isalpha() and token.isascii():
            pieces.append(re.escape(token))
        else:
            pieces.append("[^a-z0-9]*")  # separators and punctuation may change or vanish
    return re.compile("".join(pieces))


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
    """Gives tracks a stratified train/validation/test assignment.

    The test split is drawn first, then the validation split from what remains (so that it is
    `validation_fraction` of the whole), each stratified by genre and respecting groups.
    """
    labels = [t.label for t in tracks]
    is_test = stratified_split(labels, test_fraction, seed, [t.group for t in tracks])
    tracks = [
        dataclasses.replace(t, split="test" if test else "train")
        for t, test in zip(tracks, is_test)
    ]
    # fraction of the remainder so that validation is `validation_fraction` of the whole
    share = min(0.99, validation_fraction / max(1e-9, 1.0 - test_fraction))
    return carve_validation(tracks, share, seed + 1)


def carve_validation(tracks: list[Track], fraction: float, seed: int) -> list[Track]:
    """Moves `fraction` of the training tracks to the validation split, stratified by genre and
    keeping groups together; other splits are left as they are."""
    train = [i for i, t in enumerate(tracks) if t.split == "train"]
    if fraction <= 0 or not train:
        return list(tracks)
    picked = stratified_split(
        [tracks[i].label for i in train], fraction, seed, [tracks[i].group for i in train]
    )
    moved = {train[i] for i in np.flatnonzero(picked)}
    return [
        dataclasses.replace(t, split="validation") if i in moved else t
        for i, t in enumerate(tracks)
    ]
