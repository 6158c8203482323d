"""analysis.effects: known answers, calibration (coverage, false flags, picking the best) on planted studies."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from analysis.effects import EFFECTS_COLUMNS, IMPORTANCE_COLUMNS, compute_effects

PLANTED = {
    "params.strong": {"a": 0.0, "b": 0.15, "c": -0.15},
    "params.moderate": {"0.1": 0.0, "0.5": 0.05, "1.0": -0.05},
    "params.null": {"x": 0.0, "y": 0.0, "z": 0.0, "w": 0.0},
}


def _study(n: int, rng: np.random.Generator, noise_sd: float = 0.15) -> pd.DataFrame:
    """Random search over three factors (+ a conditional pair); y = 0.5 + planted effects + noise."""
    frame = pd.DataFrame({h: rng.choice(list(v), n) for h, v in PLANTED.items()})
    frame["params.curriculum"] = rng.choice(["True", "False"], n)
    on = frame["params.curriculum"] == "True"
    frame["params.target"] = np.where(on, rng.choice(["0.25", "0.75"], n), "")
    y = 0.5 + sum(frame[h].map(v).to_numpy() for h, v in PLANTED.items())
    y = y + np.where(
        frame["params.target"] == "0.25", 0.04, np.where(frame["params.target"] == "0.75", -0.04, 0)
    )
    frame["metrics.success"] = y + rng.normal(0.0, noise_sd, n) * np.where(on, 1.5, 1.0)  # heteroskedastic
    return frame


HPARAMS = [*PLANTED, "params.curriculum", "params.target"]


def test_noiseless_full_factorial_recovers_planted_effects_exactly():
    rows = list(itertools.product(*[list(v) for v in PLANTED.values()]))
    frame = pd.DataFrame(rows * 3, columns=list(PLANTED))
    frame["metrics.success"] = 0.5 + sum(frame[h].map(v) for h, v in PLANTED.items())
    effects, importance = compute_effects(
        frame, metric="metrics.success", stratum=None, hparams=list(PLANTED)
    )
    assert list(effects.columns) == EFFECTS_COLUMNS and list(importance.columns) == IMPORTANCE_COLUMNS
    for h, planted in PLANTED.items():
        part = effects[effects.hparam == h.removeprefix("params.")].set_index("value")
        avg = np.mean(list(planted.values()))
        for value, beta in planted.items():
            assert part.loc[value, "effect"] == pytest.approx(beta - avg, abs=1e-9)
            assert part.loc[value, "mean"] == pytest.approx(0.5 + beta, abs=1e-9)
    strong = effects[effects.hparam == "strong"].set_index("value")
    assert strong.loc["b", "p_best"] == pytest.approx(1.0)
    # the null factor's four values have the same mean in every draw: they share p_best, not the first one 1
    null = effects[effects.hparam == "null"].set_index("value")
    assert null.p_best.to_numpy() == pytest.approx([0.25] * 4)
    imp = importance.set_index("hparam")["importance"]
    assert imp["strong"] == pytest.approx(np.std([0.0, 0.15, -0.15]), abs=1e-6)
    assert imp["null"] == pytest.approx(0.0, abs=1e-9)
    assert effects.stratum.unique().tolist() == ["all"]


def test_saturated_fit_gives_no_intervals_and_nothing_significant(caplog):
    # 4 runs and at least as many coefficients: the runs are fit exactly, so there is no error estimate at all
    frame = _study(4, np.random.default_rng(1))
    with caplog.at_level("WARNING", logger="analysis.effects"):
        effects, importance = compute_effects(
            frame, metric="metrics.success", stratum=None, hparams=list(PLANTED)
        )
    assert "no residual degrees of freedom" in caplog.text
    assert effects["effect"].notna().all() and effects["effect_lo"].isna().all()
    assert not effects["significant"].any() and effects["p_best"].isna().all()
    assert importance["importance"].isna().all()
    # enough runs: intervals again
    big = _study(40, np.random.default_rng(1))
    effects, _ = compute_effects(big, metric="metrics.success", stratum=None, hparams=list(PLANTED))
    assert effects["effect_lo"].notna().all() and (effects["effect_hi"] > effects["effect_lo"]).all()


def test_conditional_hparam_uses_only_active_runs_and_strata_are_separate():
    rng = np.random.default_rng(3)
    frame = _study(900, rng)
    frame["params.sft_checkpoint"] = rng.choice(["0", "2.5e18"], len(frame))
    effects, importance = compute_effects(
        frame, metric="metrics.success", stratum="params.sft_checkpoint", hparams=HPARAMS, seed=1
    )
    assert set(effects.stratum) == {"0", "2.5e18"}
    assert "sft_checkpoint" not in set(effects.hparam)
    target = effects[effects.hparam == "target"]
    assert set(target.value) == {"0.25", "0.75"}  # the inactive "" is never a value
    for s, part in target.groupby("stratum"):
        active = frame[(frame["params.sft_checkpoint"] == s) & (frame["params.target"] != "")]
        assert part.n_runs.sum() == len(active)
    assert np.allclose(effects.groupby(["stratum", "hparam"]).p_best.sum(), 1.0)
    assert len(importance) == 2 * len(HPARAMS)


def test_same_seed_same_numbers_and_mode_min_flips_p_best():
    frame = _study(400, np.random.default_rng(0))
    a, _ = compute_effects(frame, metric="metrics.success", stratum=None, hparams=HPARAMS, seed=7)
    np.random.seed(123)  # global state must not matter
    b, _ = compute_effects(frame, metric="metrics.success", stratum=None, hparams=HPARAMS, seed=7)
    pd.testing.assert_frame_equal(a, b)
    low, _ = compute_effects(frame, metric="metrics.success", stratum=None, hparams=HPARAMS, mode="min")
    strong = low[low.hparam == "strong"].set_index("value")
    assert strong.p_best.idxmax() == "c"


def test_bad_input_names_the_column():
    frame = _study(50, np.random.default_rng(0))
    with pytest.raises(ValueError, match="params.nope"):
        compute_effects(frame, metric="metrics.success", stratum=None, hparams=["params.nope"])
    with pytest.raises(ValueError, match="mode"):
        compute_effects(frame, metric="metrics.success", stratum=None, hparams=HPARAMS, mode="best")


def _calibration(num_studies: int, n: int) -> dict[str, float]:
    covered = total = flagged_null = best_first = 0
    truth = {h.removeprefix("params."): v for h, v in PLANTED.items()}
    truth["target"] = {"0.25": 0.04, "0.75": -0.04}
    for study in range(num_studies):
        frame = _study(n, np.random.default_rng(1000 + study))
        effects, _ = compute_effects(
            frame, metric="metrics.success", stratum=None, hparams=HPARAMS, seed=study
        )
        for h, planted in truth.items():
            part = effects[effects.hparam == h].set_index("value")
            avg = np.mean(list(planted.values()))
            true_effect = pd.Series({v: b - avg for v, b in planted.items()})
            inside = (part.effect_lo <= true_effect[part.index]) & (true_effect[part.index] <= part.effect_hi)
            covered += int(inside.sum())
            total += len(part)
        flagged_null += bool(effects[effects.hparam == "null"].significant.any())
        best_first += effects[effects.hparam == "moderate"].set_index("value").p_best.idxmax() == "0.5"
    return {
        "coverage": covered / total,
        "null_flag_rate": flagged_null / num_studies,
        "moderate_best_first": best_first / num_studies,
    }


def test_calibration_on_planted_studies():
    """Small-CI version of the benchmark: 60 studies of 600 runs (the full one is benchmarks/bench_effects.py)."""
    rates = _calibration(num_studies=60, n=600)
    assert 0.90 <= rates["coverage"] <= 0.99, rates
    assert rates["null_flag_rate"] <= 0.12, rates  # 5% nominal; binomial slack for 60 studies
    assert rates["moderate_best_first"] >= 0.9, rates


def test_every_run_tied_gives_equal_p_best_in_both_modes():
    """A stratum where every run scored the same (the study's base student never succeeds): no value is best."""
    frame = _study(60, np.random.default_rng(3))
    frame["metrics.success"] = 0.0
    for mode in ("max", "min"):
        effects, importance = compute_effects(
            frame, metric="metrics.success", stratum=None, hparams=HPARAMS, mode=mode
        )
        for _, part in effects.groupby("hparam"):
            assert part.p_best.to_numpy() == pytest.approx([1.0 / len(part)] * len(part))
        assert (importance.importance == 0).all()
