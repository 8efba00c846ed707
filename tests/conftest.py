"""Shared fixtures: quiet TensorFlow, seeded randomness and a private cache folder per test."""

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


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
