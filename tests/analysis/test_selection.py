import numpy as np
import pytest

from analysis.selection import rolling_mean, select_checkpoint, select_checkpoints


def test_rolling_mean_by_hand():
    np.testing.assert_allclose(rolling_mean([0.1, 0.9, 0.2, 0.4]), [0.1, 0.5, 0.4, 0.5])
    np.testing.assert_allclose(rolling_mean([1.0, 2.0, 3.0], window=1), [1.0, 2.0, 3.0])


def test_rolling_mean_skips_missing_scores():
    out = rolling_mean([np.nan, 0.5, np.nan, np.nan, np.nan])
    assert np.isnan(out[0]) and np.isnan(out[4])
    np.testing.assert_allclose(out[1:4], [0.5, 0.5, 0.5])


def test_select_checkpoint_first_on_ties_and_last_without_scores():
    assert select_checkpoint([0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0]) == 5
    assert select_checkpoint([0.5, 0.5, 0.5]) == 0
    assert select_checkpoint([np.nan, np.nan]) == 1
    with pytest.raises(ValueError, match="no evaluations"):
        select_checkpoint([])
    with pytest.raises(ValueError, match="window"):
        rolling_mean([1.0], window=0)


def test_select_checkpoints_is_select_checkpoint_per_row():
    rng = np.random.default_rng(0)
    runs = [rng.choice([0.0, 0.25, 0.5, np.nan], size=n) for n in (1, 3, 5, 8, 8)]
    padded = np.full((len(runs), 8), np.nan)
    for i, r in enumerate(runs):
        padded[i, : len(r)] = r
        padded[i, len(r) :] = 9.0  # past the run's end: must never be chosen
    got = select_checkpoints(padded, np.array([len(r) for r in runs]))
    assert got.tolist() == [select_checkpoint(r) for r in runs]
