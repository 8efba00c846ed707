"""The fit options are declared once (`cli.FIT_SETTINGS`): the parser, the config overrides and
`--resume`'s conflict check all come from that table. No TensorFlow needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from musicnext_tf import cli
from musicnext_tf.config import resolve


def parse(*arguments: str):
    return cli.build_parser().parse_args(["fit", "--data", "demo", *arguments])


def test_every_fit_setting_names_a_config_value_and_a_parsed_option():
    config = resolve("demo")
    defaults = vars(parse())
    for option in cli.FIT_SETTINGS:
        section, key = option.setting.split(".")
        assert hasattr(getattr(config, section), key), option.setting
        assert option.dest in defaults and defaults[option.dest] is None, option.flag
    flags = [option.flag for option in cli.FIT_SETTINGS]
    assert len(set(flags)) == len(flags)


def test_the_overrides_are_the_given_options_under_their_settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = parse("--epochs", "7", "--model", "resnet", "--depths", "1:1:2:1", "--data-dir", "music")
    overrides = cli._fit_overrides(args)
    assert overrides["train"]["epochs"] == 7
    assert overrides["model"]["architecture"] == "resnet"
    assert overrides["model"]["depths"] == [1, 1, 2, 1]
    assert overrides["data"]["data_dir"] == str(tmp_path / "music")  # made absolute
    assert overrides["train"]["learning_rate"] is None  # not given
    assert resolve("demo", None, overrides).train.epochs == 7


@pytest.mark.parametrize(
    "arguments, split_seed", [(("--seed", "5"), 5), (("--seed", "5", "--split-seed", "2"), 2)]
)
def test_the_split_seed_falls_back_to_the_seed(arguments, split_seed):
    assert cli._fit_overrides(parse(*arguments))["data"]["split_seed"] == split_seed


def test_a_resume_may_move_the_run_but_not_change_its_settings():
    config = resolve("demo")
    run = str(Path("runs/x").absolute())
    args = parse("--resume", run, "--strategy", "mirrored", "--epochs", str(config.train.epochs))
    assert cli._resume_conflicts(args, config) == []
    assert cli._fit_overrides(args)["train"]["strategy"] is None
    args = parse("--resume", run, "--epochs", "99", "--split-seed", "12345")
    assert cli._resume_conflicts(args, config) == [
        f"--epochs 99 (the run has {config.train.epochs})",
        f"--split-seed 12345 (the run has {config.data.split_seed})",
    ]
