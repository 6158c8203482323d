"""rliable-style aggregates: known values, seeded bootstrap."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.aggregate import iqm, probability_of_improvement, stratified_bootstrap_ci


def test_iqm_known_value():
    scores = np.array([[1.0, 0.0], [2.0, 1.0], [3.0, 2.0], [0.0, 3.0]])  # rliable's 4x2 example
    assert iqm(scores) == pytest.approx(1.5)
    assert iqm([0, 1, 2, 3, 100]) == pytest.approx(2.0)  # the outlier is trimmed


def test_probability_of_improvement_counts_ties_half():
    assert probability_of_improvement([np.array([1.0, 2.0])], [np.array([1.0, 0.0])]) == pytest.approx(0.875)
    assert probability_of_improvement([np.array([1.0])], [np.array([1.0])]) == pytest.approx(0.5)


def test_stratified_bootstrap_is_seeded_and_brackets_the_estimate():
    data = [[np.random.default_rng(s).random(30) for s in range(3)]]

    def stat(a):
        return iqm(np.concatenate(a))

    np.random.seed(0)
    a = stratified_bootstrap_ci(data, stat, reps=300, rng=np.random.default_rng(1))
    np.random.seed(99)
    b = stratified_bootstrap_ci(data, stat, reps=300, rng=np.random.default_rng(1))
    assert a == b
    assert a[1] <= a[0] <= a[2]
