"""Stochastic depth: the dropped share of rows against the binomial law, and exact rescaling."""

from __future__ import annotations

import numpy as np
import pytest

from musicnext_tf.layers import StochasticDepth

ROWS = 20_000


@pytest.mark.parametrize("rate", [0.1, 0.37])
def test_drops_whole_rows_at_the_rate_and_rescales_the_kept_ones_exactly(rate, rng):
    x = rng.uniform(0.5, 2.0, (ROWS, 2, 3)).astype(np.float32)  # no zero entry
    out = StochasticDepth(rate, seed=11)(x, training=True).numpy()
    dropped = np.all(out == 0.0, axis=(1, 2))
    kept = np.all(out == x / np.float32(1.0 - rate), axis=(1, 2))
    assert np.all(dropped ^ kept)  # every row wholly dropped or wholly kept and rescaled
    # the dropped count is Binomial(ROWS, rate): within 4 standard deviations
    assert abs(dropped.sum() - ROWS * rate) <= 4.0 * np.sqrt(ROWS * rate * (1.0 - rate))


def test_each_call_draws_new_rows_and_a_seed_repeats_them(rng):
    x = np.ones((ROWS, 1), np.float32)
    layer = StochasticDepth(0.5, seed=3)
    first, second = (layer(x, training=True).numpy() for _ in range(2))
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(StochasticDepth(0.5, seed=3)(x, training=True).numpy(), first)


@pytest.mark.parametrize("training", [False, None])
def test_outside_training_it_is_the_identity(training, rng):
    x = rng.standard_normal((ROWS, 4)).astype(np.float32)
    np.testing.assert_array_equal(StochasticDepth(0.5)(x, training=training).numpy(), x)
    np.testing.assert_array_equal(StochasticDepth(0.0)(x, training=True).numpy(), x)
