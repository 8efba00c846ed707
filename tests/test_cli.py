"""The command line's error contract: exit status 2, one line on stderr that names the path and
the fix, nothing on stdout and nothing written."""

from __future__ import annotations

import json

import pytest
from helpers import tiny_config

from musicnext_tf import cli


def export_fails(arguments, capsys, base) -> str:
    """Runs `musicnext-tf export ARGUMENTS --base BASE`, checks that it failed cleanly, returns
    the error line."""
    assert cli.main(["export", *arguments, "--base", str(base)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and not base.exists()
    assert err.startswith("musicnext-tf export: error: ") and err.count("\n") == 1, err
    return err


def test_export_of_a_missing_run_folder_names_it_and_what_to_give(tmp_path, capsys):
    missing = tmp_path / "runs" / "gtzan-nosuch"
    err = export_fails([str(missing)], capsys, tmp_path / "models")
    assert f"{missing}: no such run folder or .keras model file" in err
    assert "give a folder written by `musicnext-tf fit`" in err


def test_export_of_a_folder_that_is_no_run_says_what_a_run_holds(tmp_path, capsys):
    (tmp_path / "photos").mkdir()
    err = export_fails([str(tmp_path / "photos")], capsys, tmp_path / "models")
    assert f"{tmp_path / 'photos'} is not a run folder (it needs config.json and run.json)" in err


def test_export_of_a_run_without_a_finished_epoch_says_how_to_continue_it(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(tiny_config(tmp_path / "data").to_dict()))
    (run / "run.json").write_text(json.dumps({"genres": ["a", "b"]}))
    err = export_fails([str(run)], capsys, tmp_path / "models")
    assert f"{run / 'model_last.keras'} not found: no epoch of this run has completed" in err
    assert f"continue it with `musicnext-tf fit --resume {run}`" in err


def test_export_refuses_quantize_for_a_savedmodel_before_reading_the_run(tmp_path, capsys):
    err = export_fails([str(tmp_path / "nosuch"), "--quantize", "float16"], capsys, tmp_path / "m")
    assert "--quantize applies to --format litert only" in err  # an ExportError


def test_export_without_a_run_folder_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit:
        cli.main(["export"])
    assert exit.value.code == 2
    assert "the following arguments are required: RUN_DIR" in capsys.readouterr().err
