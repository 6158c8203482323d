"""Distribution-free tuning-curve bands: ours (analysis.bands / analysis.curves) beside opda 0.8's, same runs.

    /work/wt/venv-run python benchmarks/bench_bands.py --opda-python /work/scratch/opda/bin/python

opda runs in a scratch venv (`python3 -m venv /work/scratch/opda && /work/scratch/opda/bin/pip install
opda==0.8.*`); it is not a dependency. For each sample (a continuous one, n = 50; one hyperparameter value's
runs of the simulated 1,370-run study, success rates with ties), both sides compute from the same scores:
- the tuning curve (ours: the unbiased U-statistic `expected_max_curve`; opda: `u_tuning_curve` and the plug-in
  `average_tuning_curve` of the empirical CDF);
- the CDF band at each order statistic and the tuning-curve band for k = 1..n, for DKW (both closed form,
  expected identical) and Learned-Miller-DeStefano equal-tailed (ours: the exact pointwise level; opda: the
  level simulated with 100,000 samples, so it differs from ours by its Monte Carlo error), and the same with
  each order statistic's highest-density interval (opda's default; ours at its exact level too).
It prints the largest differences and a few endpoints, and the time of each side.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np

from analysis.bands import cdf_band, ld_pointwise_level
from analysis.curves import expected_max_curve, tuning_curve_band
from analysis.runs import prepare_runs
from analysis.simulate import simulate_study

_OPDA = """
import json, sys, time, warnings
import numpy as np
from opda.nonparametric import EmpiricalDistribution as ED
samples = json.loads(sys.stdin.read())
out = {}
for name, (ys, a, b) in samples.items():
    ys = np.asarray(ys); n = len(ys); ns = np.arange(1, n + 1)
    point = ED(ys, a=a, b=b)
    res = {"u_curve": point.u_tuning_curve(ns).tolist(), "plugin_curve": point.average_tuning_curve(ns).tolist()}
    for method in ("dkw", "ld_equal_tailed", "ld_highest_density"):
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ties: opda warns that exact coverage needs a continuous F
            lo, _, hi = ED.confidence_bands(ys, 0.95, a=a, b=b, method=method,
                                            generator=np.random.default_rng(0), n_jobs=1)
        res[method] = {
            "curve_lo": hi.average_tuning_curve(ns).tolist(),
            "curve_hi": lo.average_tuning_curve(ns).tolist(),
            "cdf_lo": lo.cdf(np.sort(ys)).tolist(),
            "cdf_hi": hi.cdf(np.sort(ys)).tolist(),
            "seconds": time.perf_counter() - t,
        }
    out[name] = res
print(json.dumps(out))
"""


def _samples() -> dict[str, tuple[list[float], float, float]]:
    rng = np.random.default_rng(0)
    runs, _, _ = simulate_study(1370, seed=0)
    prepared = prepare_runs(runs, metric="metrics.heldout_goal_success", stratum="params.sft_checkpoint")
    frame = next(f for label, f in prepared.strata())
    study = frame.loc[frame["params.learning_rate"] == "1e-06", prepared.metric].to_numpy(float)
    return {
        "continuous beta(2,5), n=50": (rng.beta(2, 5, 50).tolist(), 0.0, 1.0),
        f"study stratum 0, learning_rate=1e-06, n={len(study)}": (study.tolist(), 0.0, 1.0),
    }


def _ours(ys: np.ndarray, a: float, b: float, method: str) -> dict[str, np.ndarray]:
    n = len(ys)
    lo, hi = tuning_curve_band(ys, bounds=(a, b), method=method)
    low_cdf, high_cdf = cdf_band(n, method=method)
    # the band's CDF at each sorted score, right-continuous as opda's `cdf` (ties: past every tied score)
    y = np.sort(ys)
    at = np.searchsorted(y, y, side="right")
    return {"curve_lo": lo, "curve_hi": hi, "cdf_lo": low_cdf[at], "cdf_hi": high_cdf[at]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--opda-python", required=True, help="python of a venv with opda==0.8.*")
    args = parser.parse_args()
    samples = _samples()
    t = time.perf_counter()
    proc = subprocess.run(
        [args.opda_python, "-c", _OPDA], input=json.dumps(samples), capture_output=True, text=True, check=True
    )
    opda_wall = time.perf_counter() - t
    theirs = json.loads(proc.stdout)
    version = subprocess.run(
        [args.opda_python, "-c", "import importlib.metadata as m; print(m.version('opda'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    print(f"# ours vs opda {version} (95% simultaneous bands; opda process {opda_wall:.1f} s wall in all)")
    for name, (ys, a, b) in samples.items():
        y = np.asarray(ys)
        n = len(y)
        o = theirs[name]
        ties = n - len(np.unique(y))
        print(f"\n## {name} ({ties} tied scores)")
        curve = expected_max_curve(y)
        print(
            f"tuning curve: max |ours U - opda u_tuning_curve| = {np.max(np.abs(curve - o['u_curve'])):.2e}; "
            f"max |ours U - opda plug-in average| = {np.max(np.abs(curve - o['plugin_curve'])):.4f}"
        )
        w0 = time.perf_counter()
        alpha = ld_pointwise_level(n, 0.95, table=False)
        exact_s = time.perf_counter() - w0
        print(
            f"LD pointwise miscoverage for n={n}: {alpha:.6f} (exact root, {exact_s:.2f} s without the table)"
        )
        header = f"{'method':20s} {'side':5s} {'max|curve diff|':>16s} {'max|CDF diff|':>14s}"
        print(header + "   k=1 lo/hi ours | opda        k=n lo/hi ours | opda      opda s  ours s")
        for method, ours_method in (("dkw", "dkw"), ("ld_equal_tailed", "ld_equal_tailed"),
                                    ("ld_highest_density", "ld_highest_density")):  # fmt: skip
            w0 = time.perf_counter()
            mine = _ours(y, a, b, ours_method)
            ours_s = time.perf_counter() - w0
            t = o[method]
            d_curve = max(
                np.max(np.abs(mine[f"curve_{s}"] - np.asarray(t[f"curve_{s}"]))) for s in ("lo", "hi")
            )
            d_cdf = max(np.max(np.abs(mine[f"cdf_{s}"] - np.asarray(t[f"cdf_{s}"]))) for s in ("lo", "hi"))
            label = method if method == ours_method else f"{method} (ours: ET)"
            print(
                f"{label:20s} {'':5s} {d_curve:16.4f} {d_cdf:14.4f}   "
                f"{mine['curve_lo'][0]:.3f}/{mine['curve_hi'][0]:.3f} | "
                f"{t['curve_lo'][0]:.3f}/{t['curve_hi'][0]:.3f}   "
                f"{mine['curve_lo'][-1]:.3f}/{mine['curve_hi'][-1]:.3f} | "
                f"{t['curve_lo'][-1]:.3f}/{t['curve_hi'][-1]:.3f}   {t['seconds']:.2f}  {ours_s:6.2f}"
            )
        mine = _ours(y, a, b, "ld_equal_tailed")
        idx = [0, n // 4, n // 2, 3 * n // 4, n - 1]
        print("CDF band at order statistics i =", [i + 1 for i in idx])
        print(
            "  ours LD-ET lo",
            np.round(mine["cdf_lo"][idx], 4).tolist(),
            "hi",
            np.round(mine["cdf_hi"][idx], 4).tolist(),
        )
        hd = _ours(y, a, b, "ld_highest_density")
        print("  ours LD-HD lo", np.round(hd["cdf_lo"][idx], 4).tolist(),
              "hi", np.round(hd["cdf_hi"][idx], 4).tolist())  # fmt: skip
        ohd = o["ld_highest_density"]
        print("  opda LD-HD lo", np.round(np.asarray(ohd["cdf_lo"])[idx], 4).tolist(),
              "hi", np.round(np.asarray(ohd["cdf_hi"])[idx], 4).tolist())  # fmt: skip
        et = o["ld_equal_tailed"]
        print("  opda LD-ET lo", np.round(np.asarray(et["cdf_lo"])[idx], 4).tolist(),
              "hi", np.round(np.asarray(et["cdf_hi"])[idx], 4).tolist())  # fmt: skip
        dk = o["dkw"]
        print("  opda DKW   lo", np.round(np.asarray(dk["cdf_lo"])[idx], 4).tolist(),
              "hi", np.round(np.asarray(dk["cdf_hi"])[idx], 4).tolist())  # fmt: skip
    sys.stdout.flush()


if __name__ == "__main__":
    main()
