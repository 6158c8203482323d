"""rliable-style aggregates: known values, seeded bootstrap."""

from __future__ import annotations

import subprocess
import sys
import tracemalloc

import numpy as np
import pandas as pd
import pytest

from analysis.aggregate import (
    REST,
    STATISTICS,
    aggregates,
    iqm,
    probability_of_improvement,
    stratified_bootstrap_ci,
)


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


def _scores(seed: int = 0, groups: int = 3, tasks: int = 4, runs: int = 6) -> dict:
    rng = np.random.default_rng(seed)
    return {
        f"g{g}": {f"t{t}": rng.integers(0, 8, runs + t % 2) / 8.0 for t in range(tasks)}
        for g in range(groups)
    }


def test_aggregates_estimates_are_rliables_definitions():
    data = _scores()
    result = aggregates(data, reps=10, rng=np.random.default_rng(0), taus=np.array([0.25, 0.5]), gamma=0.75)
    table = result.table.set_index(["group", "statistic"])
    for g, per_task in data.items():
        every = np.concatenate(list(per_task.values()))
        means = [a.mean() for a in per_task.values()]
        assert table.loc[(g, "iqm"), "estimate"] == pytest.approx(iqm(every))
        assert table.loc[(g, "mean"), "estimate"] == pytest.approx(np.mean(means))
        assert table.loc[(g, "median"), "estimate"] == pytest.approx(np.median(means))
        assert table.loc[(g, "optimality_gap"), "estimate"] == pytest.approx(
            0.75 - np.minimum(every, 0.75).mean()
        )
        prof = result.profiles[result.profiles.group == g].fraction.to_numpy()
        assert prof == pytest.approx([(every > 0.25).mean(), (every > 0.5).mean()])
    poi = result.poi.set_index(["group_x", "group_y"])
    assert list(poi.index) == [("g0", "g1"), ("g0", "g2"), ("g1", "g2")]
    x, y = data["g0"], data["g2"]
    assert poi.loc[("g0", "g2"), "poi"] == pytest.approx(
        probability_of_improvement(list(x.values()), list(y.values()))
    )
    assert list(result.table.columns[:5]) == ["group", "statistic", "estimate", "lo", "hi"]
    assert list(result.poi.columns[:5]) == ["group_x", "group_y", "poi", "lo", "hi"]


def test_aggregates_intervals_match_the_plain_bootstrap_loop():
    data = _scores(1, groups=2)
    reps = 4000
    fast = aggregates(data, reps=reps, rng=np.random.default_rng(2))
    table = fast.table.set_index(["group", "statistic"])
    a, b = list(data["g0"].values()), list(data["g1"].values())
    checks = {
        ("g0", "iqm"): ([a], lambda s: iqm(np.concatenate(s))),
        ("g0", "median"): ([a], lambda s: float(np.median([v.mean() for v in s]))),
        ("g1", "mean"): ([b], lambda s: float(np.mean([v.mean() for v in s]))),
    }
    for key, (groups, stat) in checks.items():
        _, lo, hi = stratified_bootstrap_ci(groups, stat, reps=reps, rng=np.random.default_rng(3))
        assert table.loc[key, "lo"] == pytest.approx(lo, abs=0.02) and table.loc[key, "hi"] == pytest.approx(
            hi, abs=0.02
        )
    _, lo, hi = stratified_bootstrap_ci(
        [a, b], probability_of_improvement, reps=reps, rng=np.random.default_rng(3)
    )
    assert fast.poi.lo[0] == pytest.approx(lo, abs=0.03) and fast.poi.hi[0] == pytest.approx(hi, abs=0.03)


def test_aggregates_are_seeded_and_memory_does_not_grow_with_reps():
    data = _scores(2, groups=2, tasks=2, runs=2000)
    np.random.seed(0)
    one = aggregates(data, reps=300, rng=np.random.default_rng(5), max_elements=1 << 14)
    np.random.seed(1)
    two = aggregates(data, reps=300, rng=np.random.default_rng(5), max_elements=1 << 14)
    assert one == two
    peaks = []
    for reps in (200, 3200):
        tracemalloc.start()
        aggregates(data, reps=reps, rng=np.random.default_rng(0), max_elements=1 << 16)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    # unchunked, 3,200 replicates x 8,000 runs of float32 counts alone would be 100 MB; only the (reps, 4) draws grow
    assert peaks[1] < peaks[0] + 3 * 2**20 and peaks[1] < 8 * 2**20


def test_groups_with_other_tasks_compare_on_the_tasks_they_share():
    data = {"a": {"t1": np.array([1.0, 2.0]), "t2": np.array([5.0])}, "b": {"t1": np.array([0.0, 2.0])}}
    result = aggregates(data, reps=50, rng=np.random.default_rng(0))
    assert result.poi.n_tasks[0] == 1 and result.poi.poi[0] == pytest.approx(0.625)
    with pytest.raises(ValueError, match="pairs name groups"):
        aggregates(data, reps=5, rng=np.random.default_rng(0), pairs=[("a", "c")])


def test_cli_aggregate_writes_the_contract(tmp_path):
    rows = [
        (f"cfg{g}", f"task{t}", r, (g + t + r) % 7 / 7.0)
        for g in range(3)
        for t in range(4)
        for r in range(5)
    ]
    pd.DataFrame(rows, columns=["config", "task", "run", "score"]).to_csv(
        tmp_path / "scores.csv", index=False
    )
    args = [
        sys.executable,
        "-m",
        "analysis",
        "aggregate",
        str(tmp_path / "scores.csv"),
        "--group",
        "config",
        "--task",
        "task",
        "--metric",
        "score",
        "--reps",
        "500",
        "--out",
        str(tmp_path / "out"),
    ]
    res = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    agg = pd.read_csv(tmp_path / "out" / "aggregates.csv")
    assert list(agg.columns[:5]) == ["group", "statistic", "estimate", "lo", "hi"]
    assert set(agg.statistic) == set(STATISTICS) and len(agg) == 12
    assert (agg.lo <= agg.estimate + 1e-9).all() and (agg.estimate <= agg.hi + 1e-9).all()
    poi = pd.read_csv(tmp_path / "out" / "poi.csv")
    assert list(poi.columns[:5]) == ["group_x", "group_y", "poi", "lo", "hi"] and len(poi) == 3
    assert (tmp_path / "out" / "profiles.png").stat().st_size > 10_000
    bad = subprocess.run(
        [*args[:-6], "--metric", "nope", "--out", str(tmp_path / "o2")], capture_output=True, text=True
    )
    assert bad.returncode == 1 and "nope" in bad.stderr and "Traceback" not in bad.stderr


def test_poi_against_the_rest_pools_the_other_groups_per_task():
    data = _scores(3, groups=3, tasks=2)
    result = aggregates(data, reps=2000, rng=np.random.default_rng(0), pairs=[("g0", REST)])
    rest = [np.concatenate([data["g1"][t], data["g2"][t]]) for t in data["g0"]]
    assert result.poi.poi[0] == pytest.approx(probability_of_improvement(list(data["g0"].values()), rest))
    assert result.poi.lo[0] < result.poi.poi[0] < result.poi.hi[0]


@pytest.mark.parametrize(
    "sizes",
    [(3, 5, 2), (3, 5, 3), (4, 4, 4)],
    ids=["all sizes differ", "two tasks share a size", "one size (one draw)"],
)
def test_bootstrap_counts_resample_each_task_uniformly_within_itself(sizes):
    from analysis.aggregate import _draw_counts, _group

    g = _group({t: np.arange(float(m)) for t, m in zip("abc", sizes, strict=True)}, np.array([]), 1.0)
    counts = _draw_counts(g, 20_000, np.random.default_rng(0))  # (N, R)
    assert counts.shape == (sum(sizes), 20_000) and counts.dtype == np.float32
    for start, stop in zip(g.offsets[:-1], g.offsets[1:], strict=True):
        assert (counts[start:stop].sum(axis=0) == stop - start).all()  # as many draws as runs, per task
    np.testing.assert_allclose(counts.mean(axis=1), 1.0, atol=0.03)  # every run equally likely in its task
    # binomial(m, 1/m) variance per run: 1 - 1/m
    np.testing.assert_allclose(counts.var(axis=1), np.repeat([1 - 1 / m for m in sizes], sizes), atol=0.04)


@pytest.mark.parametrize("reps", [1, 2, 7, 5000])
@pytest.mark.parametrize("top", [1, 6, 100])
def test_count_interval_equals_numpy_quantile(reps, top):
    from analysis.aggregate import _count_interval

    draws = np.random.default_rng(reps + top).integers(0, top + 1, (reps, 5)).astype(np.float32)
    np.testing.assert_allclose(
        _count_interval(draws, top, 0.95),
        np.quantile(draws.astype(float), [0.025, 0.975], axis=0),
        atol=1e-12,
    )
