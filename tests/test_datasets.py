"""Dataset loaders on copies of the real layouts, built from the real metadata files."""

from __future__ import annotations

import collections
import shutil

import pytest
from dataset_fixtures import (
    extended_ballroom_copy,
    extended_ballroom_songs,
    gtzan_copy,
    ismir2004_copy,
)

from musicnext_tf import datasets
from musicnext_tf.config import ConfigError, resolve
from musicnext_tf.datasets import extended_ballroom, gtzan, ismir2004
from musicnext_tf.datasets.base import DatasetError, FileLocator, UnresolvedPath


def index_of(name, data_dir, **data):
    return datasets.load_index(resolve(name, None, {"data": {"data_dir": str(data_dir), **data}}))


def per_split_counts(index):
    return {split: dict(counts) for split, counts in index.counts().items()}


# -- ISMIR2004 -------------------------------------------------------------------------------------

ISMIR_TRAINING = {
    "classical": 320,
    "electronic": 115,
    "jazz_blues": 26,
    "metal_punk": 45,
    "rock_pop": 101,
    "world": 122,
}
ISMIR_EVALUATION = {**ISMIR_TRAINING, "classical": 319, "world": 123}
ISMIR_DEVELOPMENT = {**ISMIR_TRAINING, "electronic": 114, "rock_pop": 102}


@pytest.fixture(scope="module")
def ismir_root(tmp_path_factory):
    return ismir2004_copy(tmp_path_factory.mktemp("ismir"))


def test_ismir2004_real_tracklists_give_the_documented_counts(ismir_root):
    index = index_of("ismir2004", ismir_root)
    assert index.genres == ismir2004.GENRES
    assert index.clip_rule == "paper"
    assert index.problems == []
    assert per_split_counts(index) == {"train": ISMIR_TRAINING, "test": ISMIR_EVALUATION}
    assert all(track.path.is_file() for track in index.tracks)


def test_ismir2004_resolves_the_known_path_faults(ismir_root):
    paths = {track.track_id: track.path for track in index_of("ismir2004", ismir_root).tracks}
    intavolatura = [tid for tid in paths if "d'intavolatura" in tid]
    assert len(intavolatura) == 2
    for track_id in intavolatura:
        assert "d_intavolatura_di_liuto_(1620)" in paths[track_id].parent.name
    (broken,) = [tid for tid in paths if "\ufffd" in tid]
    assert paths[broken] == (
        ismir_root / "audio/evaluation/electronic/strojovna_07/dirnix/05-kruhovy_objazd.mp3"
    )
    # paths that really contain an apostrophe stay as they are
    assert any("'" in path.name for path in paths.values())


def test_ismir2004_development_set_and_validation_option(ismir_root):
    index = index_of("ismir2004", ismir_root, options={"test_split": "development"})
    assert per_split_counts(index)["test"] == ISMIR_DEVELOPMENT
    index = index_of("ismir2004", ismir_root, validation_fraction=0.1)
    counts = per_split_counts(index)
    assert sum(counts["train"].values()) + sum(counts["validation"].values()) == 729
    assert 50 <= sum(counts["validation"].values()) <= 95
    albums = collections.defaultdict(set)
    for track in index.tracks:
        if track.split != "test":
            albums[track.group].add(track.split)
    assert all(len(splits) == 1 for splits in albums.values())  # albums are not cut


def test_ismir2004_metadata_faults_become_reported_problems(tmp_path):
    root = ismir2004_copy(tmp_path)
    tracklist = root / "metadata/training/tracklist.csv"
    rows = tracklist.read_text(encoding="utf-8").splitlines()
    first = rows[0].split('","')[5].rstrip('"')
    (root / "audio/training" / first).unlink()
    rows += [
        '"polka","a","b","c","1","classical/x.mp3"',  # an unknown label
        '"world","a","b","c","1","../../../../etc/passwd"',  # outside the data folder
        '"world","a","b"',  # too few fields
    ]
    tracklist.write_text("\n".join(rows) + "\n", encoding="utf-8")
    index = index_of("ismir2004", root)
    reasons = collections.Counter(problem.reason for problem in index.problems)
    assert reasons == {"missing": 1, "unknown_label": 1, "outside_data_dir": 1, "bad_metadata": 1}
    assert sum(per_split_counts(index)["train"].values()) == 728


def test_ismir2004_found_from_a_parent_or_inner_folder_and_the_environment(ismir_root, monkeypatch):
    assert index_of("ismir2004", ismir_root.parent).root == ismir_root
    assert index_of("ismir2004", ismir_root / "audio" / "training").root == ismir_root
    monkeypatch.setenv("MUSICNEXT_DATA", str(ismir_root))
    assert datasets.load_index(resolve("ismir2004")).root == ismir_root


def test_wrong_or_missing_folders_say_what_was_expected_and_found(tmp_path):
    (tmp_path / "songs").mkdir()
    (tmp_path / "songs" / "notes.txt").write_text("x")
    with pytest.raises(DatasetError, match=r"does not hold the ismir2004.*metadata/.*notes\.txt"):
        index_of("ismir2004", tmp_path / "songs")
    with pytest.raises(DatasetError, match=r"does not exist.*gtzan"):
        index_of("gtzan", tmp_path / "nowhere")
    with pytest.raises(DatasetError, match=r"--data-dir.*MUSICNEXT_DATA"):
        datasets.load_index(resolve("extended_ballroom"))
    with pytest.raises(ConfigError, match=r"unknown option.*valid options: test_split"):
        index_of("ismir2004", tmp_path, options={"split": "x"})
    with pytest.raises(ConfigError, match=r"'filtered' is not valid.*'evaluation'"):
        index_of("ismir2004", tmp_path, options={"test_split": "filtered"})


# -- GTZAN -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gtzan_root(tmp_path_factory):
    return gtzan_copy(tmp_path_factory.mktemp("gtzan") / "genres")


def test_gtzan_random_split_is_stratified_and_seeded(gtzan_root):
    index = index_of("gtzan", gtzan_root)
    assert index.genres == gtzan.GENRES and index.problems == []
    counts = per_split_counts(index)
    assert counts == {
        "train": dict.fromkeys(gtzan.GENRES, 70),
        "validation": dict.fromkeys(gtzan.GENRES, 10),
        "test": dict.fromkeys(gtzan.GENRES, 20),
    }
    again = {t.track_id: t.split for t in index_of("gtzan", gtzan_root).tracks}
    assert again == {t.track_id: t.split for t in index.tracks}
    other = {t.track_id: t.split for t in index_of("gtzan", gtzan_root, split_seed=1).tracks}
    assert other != again
    assert {t.label for t in index.tracks if t.track_id.startswith("hiphop/")} == {"hiphop"}


def test_gtzan_filtered_split_uses_the_shipped_lists(gtzan_root):
    index = index_of("gtzan", gtzan_root, options={"split": "filtered"})
    totals = {split: sum(c.values()) for split, c in per_split_counts(index).items()}
    assert totals == {"train": 443, "validation": 197, "test": 290}
    assert any("70 clips are left out" in note for note in index.notes)
    assert {t.track_id: t.split for t in index.tracks}["jazz/jazz.00054"] == "train"


def test_gtzan_kaggle_copy_with_wav_files_and_missing_clips(tmp_path):
    kaggle = tmp_path / "archive"
    genres = gtzan_copy(kaggle / "Data" / "genres_original", ".wav", skip=("rock/rock.00007",))
    (kaggle / "Data" / "features_30_sec.csv").write_text("filename,label\n")
    (kaggle / "Data" / "images_original" / "blues").mkdir(parents=True)
    (genres / "blues" / "blues.00000.au").touch()  # both copies: the .wav is preferred
    (genres / "blues" / "._blues.00001.wav").touch()  # a macOS resource fork, ignored
    (genres / "blues" / "notes.txt").touch()
    index = index_of("gtzan", kaggle)
    assert index.root == genres
    assert len(index.tracks) == 999
    (problem,) = index.problems
    assert (problem.track_id, problem.reason) == ("rock/rock.00007", "missing")
    # the missing clip keeps the split the seed gives it in a complete copy
    complete = {t.track_id: t.split for t in index_of("gtzan", gtzan_copy(tmp_path / "g")).tracks}
    assert problem.split == complete["rock/rock.00007"]
    assert all(complete[t.track_id] == t.split for t in index.tracks)
    paths = {t.track_id: t.path for t in index.tracks}
    assert paths["blues/blues.00000"].suffix == ".wav"
    assert any("notes.txt" in note for note in index.notes)


def test_gtzan_without_its_genre_folders_is_refused(tmp_path):
    gtzan_copy(tmp_path / "genres")
    shutil.rmtree(tmp_path / "genres" / "metal")
    with pytest.raises(DatasetError, match=r"no folder for the GTZAN genre\(s\) \['metal'\]"):
        index_of("gtzan", tmp_path / "genres")


# -- Extended Ballroom -----------------------------------------------------------------------------

XML_COUNTS = {
    "Waltz": 529,
    "Tango": 464,
    "Viennesewaltz": 252,
    "Foxtrot": 507,
    "Quickstep": 497,
    "Chacha": 455,
    "Samba": 468,
    "Rumba": 470,
    "Pasodoble": 53,
    "Jive": 350,
    "Salsa": 47,
    "Slowwaltz": 65,
    "Wcswing": 23,
}


@pytest.fixture(scope="module")
def ballroom_root(tmp_path_factory):
    return extended_ballroom_copy(tmp_path_factory.mktemp("ballroom") / "extended_ballroom")


def test_extended_ballroom_real_xml_counts_and_genre_choices(ballroom_root):
    assert collections.Counter(g for g, _ in extended_ballroom_songs()) == XML_COUNTS
    index = index_of("extended_ballroom", ballroom_root)
    assert set(index.genres) == set(extended_ballroom.PAPER_GENRES)
    assert len(index.tracks) == 3992 and index.problems == []
    every = index_of("extended_ballroom", ballroom_root, options={"genres": "all"})
    assert len(every.tracks) == 4180
    unique = index_of(
        "extended_ballroom",
        ballroom_root,
        options={"genres": "all", "exact_duplicates": "drop"},
    )
    assert len(unique.tracks) == 3944
    assert {t.path.suffix for t in index.tracks} == {".mp3", ".wav"}
    assert any(t.path.name.startswith(f"{t.label}.") for t in index.tracks)


def test_extended_ballroom_split_keeps_duplicate_groups_together(ballroom_root):
    index = index_of("extended_ballroom", ballroom_root, validation_fraction=0.0)
    splits_of_group = collections.defaultdict(set)
    for track in index.tracks:
        splits_of_group[track.group].add(track.split)
    assert all(len(splits) == 1 for splits in splits_of_group.values())
    grouped = collections.Counter(track.group for track in index.tracks)
    assert max(grouped.values()) >= 2  # the XML does mark duplicates
    for genre in index.genres:
        total = sum(1 for t in index.tracks if t.label == genre)
        test = sum(1 for t in index.tracks if t.label == genre and t.split == "test")
        assert abs(test - 0.2 * total) <= 4, genre


def test_extended_ballroom_incomplete_copy_is_used_and_counted(tmp_path):
    root = extended_ballroom_copy(tmp_path / "eb", missing_every=10)
    index = index_of("extended_ballroom", root)
    complete = index_of("extended_ballroom", extended_ballroom_copy(tmp_path / "full"))
    missing = [problem for problem in index.problems if problem.reason == "missing"]
    assert len(missing) + len(index.tracks) == 3992
    assert 380 <= len(missing) <= 420
    assert ".mp3" in missing[0].detail and ".wav" in missing[0].detail
    where = {t.track_id: t.split for t in complete.tracks}
    assert all(where[p.track_id] == p.split for p in missing)


def test_extended_ballroom_bad_xml_is_named(tmp_path):
    root = tmp_path / "eb"
    root.mkdir()
    (root / "extendedballroom_v1.1.xml").write_text("<ballroom><Waltz><song id='1'>")
    with pytest.raises(DatasetError, match=r"extendedballroom_v1\.1\.xml is not valid XML"):
        index_of("extended_ballroom", root)


# -- shared helpers --------------------------------------------------------------------------------


def test_file_locator_matches_drifted_names_only_when_unambiguous(tmp_path):
    base = tmp_path / "audio"
    (base / "Artist").mkdir(parents=True)
    for name in ("05-Kruhový_objazd.mp3", "7-a_b.mp3", "7-a-b.mp3"):
        (base / "Artist" / name).touch()
    locator = FileLocator(base)
    assert locator.locate("artist/5-kruhov\ufffd_objazd.mp3").name == "05-Kruhový_objazd.mp3"
    with pytest.raises(UnresolvedPath, match="several entries match"):
        locator.locate("Artist/7-a'b.mp3")
    with pytest.raises(UnresolvedPath) as outside:
        locator.locate("/etc/passwd")
    assert outside.value.reason == "outside_data_dir"


def test_unknown_dataset_is_named():
    config = resolve("folder", None, {"data": {"data_dir": "."}})
    config.data.name = "fma"
    with pytest.raises(DatasetError, match=r"unknown dataset 'fma'; available: \['demo'"):
        datasets.load_index(config)
