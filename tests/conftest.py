"""Shared fixtures: quiet TensorFlow, seeded randomness, a private cache folder per test, a scratch
working directory and a tiny trained run."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own cache folder, so no test reads another's features or demo audio."""
    monkeypatch.setenv("MUSICNEXT_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("MUSICNEXT_DATA", raising=False)


@pytest.fixture(autouse=True, scope="session")
def _scratch_working_directory(tmp_path_factory):
    """Tests run in a scratch folder, so that commands writing to relative default paths
    (`runs/`, `saved_models/`), in this process or in subprocesses, never write into the source
    tree."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path_factory.mktemp("cwd"))
        yield


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A tiny run that has learnt three timbre classes (no validation split: `model_last.keras`),
    trained once per session; tests must not change it."""
    from helpers import train_tiny_run

    return train_tiny_run(tmp_path_factory.mktemp("tiny-run"))
