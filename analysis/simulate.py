"""A synthetic study in the runs-table layout, with planted effects and the planted truth.

The study's space (the 12 RL hyperparameters, curriculum children conditional on `curriculum=True`) is sampled
by random search across three SFT branch points (strata). Each run's expected final success is additive:

    p(config, s) = base_s + sum_H beta_{s,H}[config_H]        (children contribute 0 when inactive)

with stratum-dependent effects shaped after the study's findings (curriculum and error logs help only from
scratch, the trust region hurts from scratch and helps strong SFT, std normalisation matters for weak SFT,
...), null hyperparameters (the curriculum children, zero-advantage filtering), and per-run noise: the run's
success probability is p + N(0, run_sd), and the reported `metrics.heldout_goal_success` is a binomial
success rate over `num_eval_episodes` held-out episodes, so metrics are discrete and tie often. A share of
runs fails (status FAILED, no metrics) or finishes without the metric (NaN). Curves rise from the branch
point's starting success to the run's final success against cumulative FLOPs.

Truth: for every (stratum, hyperparameter, value), the TRUE marginal mean of the metric, i.e. E[p] with H set
to the value and every other hyperparameter drawn as the random search draws it, computed from the planted
model by enumeration (not from the sampled runs); the effect class (strong / moderate / null) and the best
value. Clipping of p to [0, 1] is the only departure from additivity; the planted ranges keep p within
[0.05, 0.95] before noise, so it is negligible.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["SPACE", "STRATA", "planted_effects", "planted_metric", "simulate_study", "write_study"]

SPACE: dict[str, list[str]] = {
    "temperature": ["0.1", "0.25", "0.5", "0.75", "1.0"],
    "curriculum": ["True", "False"],
    "curriculum_target_return": ["0.25", "0.5", "0.75"],
    "curriculum_temperature": ["0.1", "0.3"],
    "gamma": ["0.5", "0.8", "0.9", "0.95", "0.98", "1.0"],
    "grouped_advantage": ["True", "False"],
    "zero_adv_filter": ["True", "False"],
    "std_normalize": ["True", "False"],
    "batch_size": ["64", "256", "512", "1024"],
    "learning_rate": ["5e-07", "1e-06", "5e-06"],
    "error_log": ["True", "False"],
    "importance_ratio": ["True", "False"],
}
CONDITIONAL = {
    "curriculum_target_return": ("curriculum", "True"),
    "curriculum_temperature": ("curriculum", "True"),
}
STRATA = {"0": 0.30, "2.5e+18": 0.45, "7.6e+18": 0.55}
"""Branch point (SFT FLOPs, as logged) -> base success of the stratum."""
_AMPLITUDE = {"strong": 0.08, "moderate": 0.045, "null": 0.0}

# (class, best value) per stratum, after the study's findings; "null" rows have no best value.
_PLAN: dict[str, list[tuple[str, str | None]]] = {
    "temperature": [("strong", "0.25")] * 3,
    "curriculum": [("moderate", "True"), ("moderate", "False"), ("moderate", "False")],
    "curriculum_target_return": [("null", None)] * 3,
    "curriculum_temperature": [("null", None)] * 3,
    "gamma": [("strong", "0.9"), ("moderate", "0.9"), ("moderate", "0.9")],
    "grouped_advantage": [("moderate", "True")] * 3,
    "zero_adv_filter": [("null", None)] * 3,
    "std_normalize": [("strong", "True"), ("moderate", "True"), ("null", None)],
    "batch_size": [("moderate", "512")] * 3,
    "learning_rate": [("strong", "1e-06")] * 3,
    "error_log": [("moderate", "True"), ("null", None), ("null", None)],
    "importance_ratio": [("moderate", "False"), ("null", None), ("moderate", "True")],
}


def planted_effects() -> dict[str, dict[str, dict[str, float]]]:
    """stratum -> hparam -> value -> beta (the additive contribution to expected success)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for s_idx, stratum in enumerate(STRATA):
        out[stratum] = {}
        for h, values in SPACE.items():
            cls, best = _PLAN[h][s_idx]
            amp = _AMPLITUDE[cls]
            if best is None:
                out[stratum][h] = {v: 0.0 for v in values}
                continue
            b, k = values.index(best), len(values)
            # best value +amp, the others fall off with their distance from it (ordered values)
            raw = {v: (1.0 if i == b else -abs(i - b) / max(k - 1, 1) - 0.25) for i, v in enumerate(values)}
            mean = np.mean(list(raw.values()))
            out[stratum][h] = {v: amp * (r - mean) for v, r in raw.items()}
    return out


_EFFECTS = planted_effects()


def planted_metric(
    params: Mapping[str, object],
    *,
    rng: np.random.Generator,
    num_eval_episodes: int = 60,
    run_sd: float = 0.05,
) -> float:
    """One run's held-out success under the planted model: the surrogate trainable for sweep benchmarks.

    Args:
        params: hyperparameter values (strings or numbers, as in the space); `sft_checkpoint` picks the
            stratum (nearest planted branch point); inactive conditionals may be missing or empty.
        rng: randomness of this run.
        num_eval_episodes: held-out episodes behind the success rate.
        run_sd: run-to-run noise of the success probability.
    """
    stratum = _nearest_stratum(params.get("sft_checkpoint", "0"))
    p = STRATA[stratum] + sum(
        _EFFECTS[stratum][h].get(_canon(h, params.get(h, "")), 0.0) for h in SPACE if params.get(h, "") != ""
    )
    p = float(np.clip(p + rng.normal(0.0, run_sd), 0.0, 1.0))
    return rng.binomial(num_eval_episodes, p) / num_eval_episodes


def _canon(h: str, value: object) -> str:
    text = str(value)
    if text in SPACE[h]:
        return text
    try:
        number = float(text)
    except ValueError:
        return text
    for v in SPACE[h]:
        try:
            if np.isclose(float(v), number):
                return v
        except ValueError:
            continue
    return text


def _nearest_stratum(value: object) -> str:
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return next(iter(STRATA))
    return min(STRATA, key=lambda s: abs(float(s) - x))


def _sample_configs(num_runs: int, rng: np.random.Generator) -> pd.DataFrame:
    cols = {h: rng.choice(values, num_runs) for h, values in SPACE.items()}
    frame = pd.DataFrame(cols)
    for child, (parent, on) in CONDITIONAL.items():
        frame.loc[frame[parent] != on, child] = ""
    frame.insert(0, "sft_checkpoint", rng.choice(list(STRATA), num_runs))
    return frame


def _true_marginal_means() -> dict[str, dict[str, dict[str, float]]]:
    """E[p | H = h] per stratum with the others as sampled (independent uniform; children only when active)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for stratum, effects in _EFFECTS.items():
        avg = {h: float(np.mean(list(e.values()))) for h, e in effects.items()}
        p_on = {c: 1.0 / len(SPACE[parent]) for c, (parent, _) in CONDITIONAL.items()}  # P(child active)
        out[stratum] = {}
        for h, e in effects.items():
            out[stratum][h] = {}
            for v in SPACE[h]:
                total = STRATA[stratum] + e[v]
                for other in SPACE:
                    if other == h:
                        continue
                    if other in CONDITIONAL:
                        parent, on = CONDITIONAL[other]
                        if h == parent:
                            total += avg[other] if v == on else 0.0
                        elif h in CONDITIONAL:  # siblings: h active implies the parent is on
                            total += avg[other]
                        else:
                            total += p_on[other] * avg[other]
                    elif h in CONDITIONAL and other == CONDITIONAL[h][0]:
                        total += effects[other][CONDITIONAL[h][1]]  # h active: its parent has the 'on' value
                    else:
                        total += avg[other]
                out[stratum][h][v] = total
    return out


def simulate_study(
    num_runs: int = 1370,
    *,
    seed: int = 0,
    num_eval_episodes: int = 60,
    run_sd: float = 0.05,
    fail_rate: float = 0.03,
    nan_rate: float = 0.01,
    num_evals: int = 10,
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """A random-search study with planted effects.

    Returns:
        runs: (num_runs, ...) the runs table (`params.*` strings, `metrics.*` floats, status).
        curves: long table run_id, step, flops, rl_flops, heldout_goal_success (finished runs).
        truth: planted classes, best values and true marginal means per stratum (JSON-serialisable).
    """
    if num_runs < 2:
        raise ValueError(f"num_runs={num_runs}: simulate at least 2 runs")
    rng = np.random.default_rng(seed)
    configs = _sample_configs(num_runs, rng)
    runs, curve_rows = [], []
    for i, row in enumerate(configs.to_dict("records")):
        run_id = f"sim{seed}-{i:05d}"
        final = planted_metric(row, rng=rng, num_eval_episodes=num_eval_episodes, run_sd=run_sd)
        status = "FAILED" if rng.random() < fail_rate else "FINISHED"
        sft_flops = float(row["sft_checkpoint"])
        rl_per_step = 2.5e14 * float(row["batch_size"])
        start = STRATA[row["sft_checkpoint"]] - 0.1
        steps = np.arange(1, num_evals + 1)
        shape = 1.0 - np.exp(-steps / (num_evals / 3.0))
        mean_curve = np.clip(start + (final - start) * shape / shape[-1], 0.0, 1.0)
        curve = rng.binomial(num_eval_episodes, mean_curve) / num_eval_episodes
        curve[-1] = final
        rl_flops = rl_per_step * steps
        metrics = {
            "metrics.heldout_goal_success": final,
            "metrics.heldout_task_success": float(np.clip(final - 0.03 + rng.normal(0, 0.03), 0, 1)),
            "metrics.train_return": float(2 * final - 1 + rng.normal(0, 0.05)),
            "metrics.rl_flops": float(rl_flops[-1]),
            "metrics.flops": float(sft_flops + rl_flops[-1]),
        }
        if status == "FAILED":
            metrics = {k: np.nan for k in metrics}
        elif rng.random() < nan_rate:
            metrics["metrics.heldout_goal_success"] = np.nan
        runs.append(
            {"run_id": run_id, "status": status, **{f"params.{k}": v for k, v in row.items()}, **metrics}
        )
        if status == "FINISHED":
            for step, f, c in zip(steps, rl_flops, curve, strict=True):
                curve_rows.append((run_id, int(step), sft_flops + f, f, float(c)))
    curves = pd.DataFrame(curve_rows, columns=["run_id", "step", "flops", "rl_flops", "heldout_goal_success"])
    truth = {
        "seed": seed,
        "num_runs": num_runs,
        "metric": "metrics.heldout_goal_success",
        "stratum": "params.sft_checkpoint",
        "strata": {
            stratum: {
                h: {
                    "class": _PLAN[h][s_idx][0],
                    "best": _PLAN[h][s_idx][1],
                    "beta": _EFFECTS[stratum][h],
                    "marginal_mean": means,
                }
                for h, means in _true_marginal_means()[stratum].items()
            }
            for s_idx, stratum in enumerate(STRATA)
        },
    }
    return pd.DataFrame(runs), curves, truth


def write_study(
    runs: pd.DataFrame, curves: pd.DataFrame, truth: dict, out: Path, curves_out: Path | None = None
) -> Path:
    """Write runs (CSV or parquet by suffix), curves and `<out stem>.truth.json`; returns the truth path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    (runs.to_parquet if out.suffix == ".parquet" else lambda p: runs.to_csv(p, index=False))(out)
    if curves_out is not None:
        curves_out = Path(curves_out)
        (curves.to_parquet if curves_out.suffix == ".parquet" else lambda p: curves.to_csv(p, index=False))(
            curves_out
        )
    truth_path = out.with_name(out.stem + ".truth.json")
    truth_path.write_text(json.dumps(truth, indent=1))
    return truth_path
