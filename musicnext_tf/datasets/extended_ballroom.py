"""Extended Ballroom v1.1 (Marchand & Peeters 2016): 4180 excerpts of about 30 s, 13 dances.

Only the metadata (`extendedballroom_v1.1.xml`) and a download script are distributed; users
download the audio themselves, so copies are often incomplete: missing excerpts are reported
(reason "missing") and the rest is used. Layout::

    extendedballroom_v1.1.xml
    <Genre>/<id>.mp3         (or <Genre>/<Genre>.<id>.mp3, or either as .wav)

The XML's root `<ballroom>` holds one element per genre, each holding `<song id=... />`
elements; a song's `<exact>`, `<time>`, `<karaoke>` and `<version>` children name other songs
that duplicate it. `[data] options`:
    genres = "paper" (default: the paper's 9 large genres, `PAPER_GENRES`) | "all" (13);
    exact_duplicates = "keep" (default, as in the paper) | "drop" (one song of each group of
        exact duplicates).
There is no official split: it is stratified by genre with `[data] test_fraction`,
`validation_fraction` and `split_seed`, drawn over the songs of the XML (so a seed splits every
copy alike), and songs marked as duplicates of each other always land in the same split.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from pathlib import Path

from musicnext_tf.config import ExperimentConfig
from musicnext_tf.datasets.base import (
    DatasetError,
    DatasetIndex,
    Problem,
    Track,
    assign_splits,
    build_index,
    find_dataset_root,
    read_options,
    resolve_data_dir,
)

NAME = "extended_ballroom"
METADATA = "extendedballroom_v1.1.xml"
# The 13 genre elements, in the XML's order.
ALL_GENRES = (
    "Waltz",
    "Tango",
    "Viennesewaltz",
    "Foxtrot",
    "Quickstep",
    "Chacha",
    "Samba",
    "Rumba",
    "Pasodoble",
    "Jive",
    "Salsa",
    "Slowwaltz",
    "Wcswing",
)
# "The first 9 genres" of the paper: the 9 large classes (3992 songs); the other four have 23-65.
PAPER_GENRES = (
    "Waltz",
    "Tango",
    "Viennesewaltz",
    "Foxtrot",
    "Quickstep",
    "Chacha",
    "Samba",
    "Rumba",
    "Jive",
)
DUPLICATE_MARKS = ("exact", "time", "karaoke", "version")
OPTIONS = {"genres": ("paper", "all"), "exact_duplicates": ("keep", "drop")}
LAYOUT = f"{METADATA} beside one folder per genre (Chacha/100701.mp3, ...)"


def load_index(config: ExperimentConfig) -> DatasetIndex:
    """Indexes the songs of the chosen genres; missing audio becomes problems."""
    options = read_options(config, OPTIONS)
    root = find_dataset_root(
        resolve_data_dir(config.data.data_dir, NAME, LAYOUT), is_root, NAME, LAYOUT
    )
    songs = read_songs(root / METADATA)
    genres = PAPER_GENRES if options["genres"] == "paper" else ALL_GENRES
    group_of = duplicate_groups(songs, DUPLICATE_MARKS)
    exact_group_of = duplicate_groups(songs, ("exact",))
    finder = _AudioFinder(root)
    tracks, problems, unusable, seen_exact, dropped = [], [], {}, set(), 0
    for song_id, genre, _ in songs:
        track_id = f"{genre}/{song_id}"
        if genre not in ALL_GENRES:
            detail = f"genre element <{genre}> of {METADATA} is not one of {list(ALL_GENRES)}"
            problems.append(Problem(track_id, str(root / genre), "unknown_label", detail))
            continue
        if genre not in genres:
            continue
        if options["exact_duplicates"] == "drop":
            if exact_group_of[song_id] in seen_exact:
                dropped += 1
                continue
            seen_exact.add(exact_group_of[song_id])
        path = finder.find(genre, song_id)
        if path is None:
            path = root / genre / f"{song_id}.mp3"
            unusable[track_id] = (
                "missing",
                f"none of {finder.candidates(genre, song_id)} in {root}",
            )
        tracks.append(Track(track_id, path, genre, "train", group_of[song_id]))
    data = config.data
    tracks = assign_splits(tracks, data.test_fraction, data.validation_fraction, data.split_seed)
    notes = _notes(songs, genres, dropped)
    return build_index(
        NAME, root, sorted(genres), tracks, config.audio.clip_rule, unusable, problems, notes
    )


def is_root(folder: Path) -> bool:
    return (folder / METADATA).is_file()


def read_songs(path: Path) -> list[tuple[str, str, ElementTree.Element]]:
    """(song id, genre element name, the song element) of every song, in the XML's order."""
    try:
        ballroom = ElementTree.parse(path).getroot()
    except ElementTree.ParseError as error:
        raise DatasetError(f"{path} is not valid XML ({error}); download it again") from None
    songs = [
        (song.get("id", ""), genre.tag, song) for genre in ballroom for song in genre.iter("song")
    ]
    unnamed = sum(1 for song_id, _, _ in songs if not song_id)
    if unnamed:
        raise DatasetError(f"{path}: {unnamed} <song> element(s) have no id attribute")
    return songs


def duplicate_groups(songs, marks) -> dict[str, str]:
    """{song id: the smallest id of the songs linked to it by the `marks` children}."""
    parent = {song_id: song_id for song_id, _, _ in songs}

    def root_of(song_id: str) -> str:
        while parent[song_id] != song_id:
            parent[song_id] = parent[parent[song_id]]
            song_id = parent[song_id]
        return song_id

    for song_id, _, element in songs:
        for child in element:
            other = child.get("id")
            if child.tag in marks and other in parent:
                first, second = sorted((root_of(song_id), root_of(other)))
                parent[second] = first
    return {song_id: root_of(song_id) for song_id in parent}


class _AudioFinder:
    """Looks up a song's audio by id, as the download scripts and users name the files."""

    def __init__(self, root: Path):
        self.root = root
        self._folders = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
        self._listings: dict[Path, dict[str, str]] = {}

    def candidates(self, genre: str, song_id: str) -> list[str]:
        return [
            f"{genre}/{stem}{suffix}"
            for suffix in (".mp3", ".wav")
            for stem in (song_id, f"{genre}.{song_id}")
        ]

    def find(self, genre: str, song_id: str) -> Path | None:
        """The first candidate present (letter case aside), or None."""
        folder = self._folders.get(genre.lower(), self.root / genre)
        listing = self._listing(folder)
        for candidate in self.candidates(genre, song_id):
            name = listing.get(candidate.split("/", 1)[1].lower())
            if name:
                return folder / name
        return None

    def _listing(self, folder: Path) -> dict[str, str]:
        if folder not in self._listings:
            names = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
            self._listings[folder] = {name.lower(): name for name in names}
        return self._listings[folder]


def _notes(songs, genres, dropped: int) -> list[str]:
    left_out = sorted(
        {genre for _, genre, _ in songs if genre not in genres and genre in ALL_GENRES}
    )
    notes = []
    if left_out:
        count = sum(1 for _, genre, _ in songs if genre in left_out)
        notes.append(f"genres {left_out} ({count} songs) are not used (options: genres = 'all')")
    if dropped:
        notes.append(f"{dropped} exact duplicate(s) were dropped (options: exact_duplicates)")
    return notes
