"""The benchmark suite's machinery on a tiny model and tiny clips: structure, not timing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import TINY_OVERRIDES

from benchmarks import prepare as prepare_benchmark
from benchmarks.compute import build_workbench, forward_flops, gemm_shapes
from benchmarks.prepare_child import completion_rates
from benchmarks.results import Figure, table, write_json
from benchmarks.run import FAMILIES, Settings, main, run_families
from musicnext_tf.config import resolve

REPOSITORY = Path(__file__).resolve().parents[1]
TINY = Settings(
    batch_size=4,
    repeats=1,
    train_steps=1,
    mel_clips=1,
    prepare_clips=2,
    song_seconds=70.0,
    pipeline_clips=6,
    fit_steps=1,
    fit_rounds=1,
    serving_batch=2,
    startup_runs=3,
)


@pytest.fixture(scope="module")
def tiny_config():
    overrides = {name: dict(values) for name, values in TINY_OVERRIDES.items()}
    overrides["features"]["segments_per_clip"] = 2
    return resolve("gtzan", overrides=overrides)


@pytest.mark.slow  # runs four benchmark families (~20 s)
def test_suite_writes_every_figure_with_target_and_status(tiny_config, tmp_path):
    figures = run_families(TINY, ("compute", "features", "pipeline", "serving"), tiny_config)
    path = tmp_path / "results.json"
    write_json(path, figures, {"mode": "test"})
    document = json.loads(path.read_text())

    assert document["context"] == {"mode": "test"}
    names = [figure["name"] for figure in document["figures"]]
    assert len(names) == len(set(names))
    assert {figure["family"] for figure in document["figures"]} == {
        "compute",
        "features",
        "pipeline",
        "serving",
    }
    for figure in document["figures"]:
        assert np.isfinite(figure["value"]) and figure["value"] > 0, figure
        if figure["target"] is None:
            assert figure["status"] == "info"
        else:
            assert figure["status"] in ("PASS", "MISS")
            assert figure["comparison"] in (">=", "<=")
    error = next(f for f in document["figures"] if f["name"].startswith("log-mel max relative"))
    assert error["value"] <= 1e-4
    assert error["status"] == "PASS"
    training = document["figures"][0]
    assert training["name"] == "training FLOP/s / GEMM ceiling"
    assert training["details"]["batch_size"] == TINY.batch_size
    rendered = table(figures)
    assert rendered.count("\n|") == len(figures) + 1  # separator line and one row per figure


def test_flop_count_of_the_default_model_is_analytic():
    """ConvNeXt-T's shapes on a 256 x 128 segment: the pointwise GEMMs cost 16 * H * W * C^2
    per block, the same in every stage (4x fewer positions, 2x the channels)."""
    bench = build_workbench(2)
    per_block = 16 * (64 * 32) * 96**2
    pointwise = 18 * per_block  # 3 + 3 + 9 + 3 blocks
    depthwise = 2 * 49 * (64 * 32 * 96) * (3 + 3 / 2 + 9 / 4 + 3 / 8)
    stem = 2 * (64 * 32) * 96 * 16
    downsampling = sum(
        2 * (64 * 32 // 4**stage) * (96 * 2**stage) * 4 * (96 * 2 ** (stage - 1))
        for stage in (1, 2, 3)
    )
    head = 2 * 768 * 10
    expected = pointwise + depthwise + stem + downsampling + head
    assert forward_flops(bench.classifier) == pytest.approx(expected, rel=1e-9)
    shapes = gemm_shapes(bench.classifier, 2)
    assert shapes[(2 * 64 * 32, 96, 384)] == 3
    assert shapes[(2 * 8 * 4, 3072, 768)] == 3


def test_peak_tree_rss_counts_the_children(tmp_path):
    """A child that allocates 200 MB in a grandchild shows at least that much."""
    script = (
        "import subprocess, sys; subprocess.run([sys.executable, '-c', "
        "\"b = bytearray(200 * 2**20); import time; time.sleep(0.5)\"], check=True); print('ok')"
    )
    peak, output = prepare_benchmark.peak_tree_rss([sys.executable, "-c", script])
    assert output.strip() == "ok"
    assert peak >= 200 * 2**20
    assert prepare_benchmark.tree_rss_bytes(os.getpid()) > 0


def test_completion_rates_per_folder_after_the_warmup(tmp_path):
    """Entries finished at known times: each folder's rate is its entries over the time since
    the previous folder's last entry; the warm-up folder is not counted."""
    times = {"0-warmup": [10.0, 11.0], "mp3": [11.5, 12.0, 13.0], "wav": [13.5, 14.0]}
    for folder, finished in times.items():
        for index, when in enumerate(finished):
            path = tmp_path / f"{folder}-{index}.json"
            path.write_text(json.dumps({"track_id": f"{folder}/{index}.x"}))
            os.utime(path, (when, when))
    rates = completion_rates(tmp_path, started=4.0, workers=2)
    assert rates["first_entry_seconds"] == pytest.approx(6.0)
    assert set(rates["formats"]) == {"mp3", "wav"}
    assert rates["formats"]["mp3"]["clips_per_s"] == pytest.approx(3 / 2.0)
    assert rates["formats"]["wav"]["clips_per_s"] == pytest.approx(2 / 1.0)


def test_figure_status_follows_the_comparison():
    assert Figure("f", "a", 0.9, target=0.85).status == "PASS"
    assert Figure("f", "a", 0.8, target=0.85).status == "MISS"
    assert Figure("f", "a", 1.2, target=1.1, comparison="<=").status == "MISS"
    assert Figure("f", "a", 1.2).status == "info"


def test_real_music_intervals_are_student_t_over_folds():
    from benchmarks.real_music import mean_interval

    mean, half = mean_interval([0.5, 0.7, 0.6])
    assert mean == pytest.approx(0.6)
    assert half == pytest.approx(4.302653 * 0.1 / np.sqrt(3), rel=1e-5)  # t(0.975, 2 dof)
    assert mean_interval([0.4]) == (0.4, 0.0)


@pytest.mark.slow  # trains a model per fold (~20 s)
def test_real_music_trains_each_fold_reports_both_and_reuses_finished_folds(tmp_path, capsys):
    from helpers import write_timbre_dataset

    from benchmarks import real_music

    data = write_timbre_dataset(tmp_path / "data", clips_per_class=8)
    config = tmp_path / "tiny.toml"
    config.write_text(
        "[audio]\nmin_seconds = 1.0\n"
        "[features]\nn_fft = 512\nn_mels = 32\nsegment_frames = 64\n"
        "[model]\ndepths = [1, 1]\nwidths = [8, 16]\n"
        "[train]\nepochs = 2\nbatch_size = 8\n"
    )
    figures = real_music.run(str(data), 2, str(tmp_path / "work"), str(config))
    rows = figures[0].details["folds"]
    assert [row["fold"] for row in rows] == [0, 1]
    for row, fold in zip(rows, (0, 1)):
        metrics = json.loads((tmp_path / "work" / f"fold-{fold}" / "metrics.json").read_text())
        assert row["musicnext"] == metrics["test_clip_accuracy"]
        assert row["baseline"] == metrics["baseline_clip_accuracy"]
    splits = [(tmp_path / "work" / f"fold-{k}" / "split.csv").read_text() for k in (0, 1)]
    assert splits[0] != splits[1]  # each fold is another split
    difference = figures[2]
    assert difference.value == pytest.approx(
        np.mean([row["musicnext"] - row["baseline"] for row in rows])
    )
    assert difference.status in ("PASS", "MISS") and figures[3].unit == "min"
    capsys.readouterr()
    again = real_music.run(str(data), 2, str(tmp_path / "work"), str(config))
    assert again[0].details["folds"] == rows  # finished folds are reused, not retrained


def test_real_music_needs_a_data_folder(capsys):
    from benchmarks.run import parse_args

    with pytest.raises(SystemExit):
        parse_args(["--only", "real-music"])
    assert "--data-dir" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(["--only", "real-music", "--data-dir", ".", "--folds", "0"])
    assert "--folds" in capsys.readouterr().err


def test_startup_figures_are_ratios_to_a_bare_python_start(tiny_config):
    figures = run_families(TINY, ("startup",), tiny_config)  # builds no model: a few seconds
    help_ratio, version_ratio, help_time = figures
    assert help_ratio.name == "musicnext-tf --help / python -c pass"
    assert version_ratio.name == "musicnext-tf --version / python -c pass"
    details = help_ratio.details
    for option, figure in (("--help", help_ratio), ("--version", version_ratio)):
        assert len(details["seconds"][option]) == TINY.startup_runs
        median = details["median_seconds"]
        assert figure.value == pytest.approx(median[option] / median["python -c pass"])
        # the package and argparse cost more than a bare interpreter
        assert figure.value > 1.0 and (figure.target, figure.comparison) == (3.0, "<=")
    assert help_time.value == pytest.approx(1000.0 * details["median_seconds"]["--help"])
    assert help_time.unit == "ms" and help_time.status == "info"


def test_an_unknown_family_exits_with_the_choices_named():
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--only", "startup", "nosuch"],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert "argument --only: invalid choice: 'nosuch'" in result.stderr
    assert all(f"'{family}'" in result.stderr for family in (*FAMILIES, "real-music"))


def test_an_unknown_option_or_bad_value_exits_non_zero_naming_it(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["--quik"])
    assert exit.value.code == 2
    assert "unrecognized arguments: --quik" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit:
        main(["--precision", "float8"])
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert "argument --precision: invalid choice: 'float8'" in err
    assert "'float32', 'mixed_bfloat16', 'mixed_float16'" in err
