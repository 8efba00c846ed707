"""Config resolution: presets, user files, overrides and the errors a user sees."""

from __future__ import annotations

import json

import pytest

from musicnext_tf.config import (
    ConfigError,
    ExperimentConfig,
    load_run_config,
    preset_names,
    resolve,
)


def test_every_dataset_has_a_preset():
    assert {"demo", "gtzan", "ismir2004", "extended_ballroom"} <= set(preset_names())
    for name in preset_names():
        config = resolve(name)
        assert config.data.name == name
        assert config.features.n_mels == 128 and config.features.segment_frames == 256
    assert resolve("ismir2004").audio.clip_rule == "paper"
    paper = resolve("gtzan")
    assert (paper.train.epochs, paper.train.batch_size, paper.model.margin) == (50, 50, 4)
    assert paper.model.depths == [3, 3, 9, 3] and paper.model.widths == [96, 192, 384, 768]


def test_precedence_preset_then_file_then_overrides(tmp_path):
    user = tmp_path / "mine.toml"
    user.write_text('[train]\nepochs = 7\nlearning_rate = 0.01\n[model]\nhead = "softmax"\n')
    config = resolve("demo", user, {"train": {"epochs": 3, "batch_size": None}})
    assert config.train.epochs == 3  # override beats file
    assert config.train.learning_rate == 0.01  # file beats preset
    assert config.train.batch_size == 50  # None overrides are ignored
    assert config.model.head == "softmax"
    assert config.model.depths == [1, 1, 3, 1]  # from the demo preset


def test_dataset_can_come_from_the_config_file(tmp_path):
    user = tmp_path / "folder.toml"
    user.write_text('[data]\nname = "folder"\ndata_dir = "/somewhere"\n')
    config = resolve(None, user)
    assert config.data.name == "folder" and config.data.data_dir == "/somewhere"
    with pytest.raises(ConfigError, match="--data"):
        resolve(None, None)


def test_unknown_keys_and_bad_files_are_named(tmp_path):
    typo = tmp_path / "typo.toml"
    typo.write_text("[train]\nepoch = 3\n")
    with pytest.raises(ConfigError, match=r"typo\.toml \[train\].*'epoch'.*epochs"):
        resolve("demo", typo)
    section = tmp_path / "section.toml"
    section.write_text("[optimiser]\nlr = 1\n")
    with pytest.raises(ConfigError, match="unknown section"):
        resolve("demo", section)
    broken = tmp_path / "broken.toml"
    broken.write_text("[train\n")
    with pytest.raises(ConfigError, match="broken.toml: not valid TOML"):
        resolve("demo", broken)
    with pytest.raises(ConfigError, match="does not exist"):
        resolve("demo", tmp_path / "absent.toml")


def test_round_trip_through_the_run_folder(tmp_path):
    config = resolve("demo", None, {"model": {"margin": 2}})
    (tmp_path / "config.json").write_text(config.to_json())
    assert load_run_config(tmp_path) == config
    assert ExperimentConfig.from_dict(json.loads(config.to_json())) == config
    with pytest.raises(ConfigError, match="run folder"):
        load_run_config(tmp_path / "nothing")
