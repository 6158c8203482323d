"""rliable vs `agentsweep aggregate`; the report vs the plain Algorithm 1 loop; tuning-curve band coverage.

    /work/wt/venv-run python benchmarks/bench_aggregates.py --rliable-python /tmp/an-venv/bin/python

rliable 1.2.0 runs in a scratch venv (`pip install rliable==1.2.0 'arch<8' 'pandas<3'`); it is not a dependency.
1. 4 configs x 10 tasks x 10 runs, --reps replicates (50,000): rliable's `get_interval_estimates` with
   `aggregate_iqm` (its computation alone, timed inside its process) against the whole `agentsweep aggregate`
   command (a fresh process: imports, CSV, IQM/mean/median/optimality gap, PoI for every pair, profiles and PNG).
   Wall and CPU seconds, and the largest difference between the two IQM intervals' endpoints.
2. A simulated 1,370-run study with curves: `build_report` with and without PNGs against the plain loop
   (`algorithm1_table(method="loop")`) at --loop-resamples, extrapolated to B = 10,000, CPU seconds.
3. --studies planted studies of --runs runs (a discrete beta-binomial success-rate distribution and a
   continuous Beta(2, 5) one): the share whose whole expected-best-of-k curve (k = 1..n) lies inside the 95%
   bootstrap band (percentile, 200 replicates, as `tuning_curves`) and inside the distribution-free bands
   (`tuning_curve_band`, Learned-Miller-DeStefano and DKW), with their mean widths; and how often the CDF
   bands themselves hold the continuous F everywhere (20 x --studies samples).
--parts picks the parts (rliable,report,bands).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.bands import cdf_band
from analysis.bootstrap import algorithm1_table
from analysis.curves import expected_max_weights, tuning_curve_band
from analysis.runs import prepare_runs
from analysis.simulate import simulate_study, write_study

_RLIABLE = """
import json, sys, time
import numpy as np, pandas as pd
from rliable import library as rly, metrics as m
t = pd.read_csv(sys.argv[1])
mats = {g: np.stack([p[p.task == k].score.to_numpy() for k in sorted(p.task.unique())], axis=1)
        for g, p in t.groupby("config")}
np.random.seed(0)
w, c = time.perf_counter(), time.process_time()
est, ci = rly.get_interval_estimates(mats, lambda x: np.array([m.aggregate_iqm(x)]), reps=int(sys.argv[2]))
print(json.dumps({"wall": time.perf_counter() - w, "cpu": time.process_time() - c,
                  "ci": {g: [float(ci[g][0][0]), float(ci[g][1][0])] for g in ci}}))
"""


def _load() -> str:
    return Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"


def _child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def versus_rliable(python: str | None, reps: int, tmp: Path, repeats: int = 5) -> None:
    rng = np.random.default_rng(0)
    rows = [
        (f"cfg{g}", f"task{t}", r, round(float(np.clip(rng.normal(0.3 + 0.1 * g + 0.03 * t, 0.2), 0, 1)), 3))
        for g in range(4)
        for t in range(10)
        for r in range(10)
    ]
    pd.DataFrame(rows, columns=["config", "task", "run", "score"]).to_csv(tmp / "scores.csv", index=False)
    cmd = [
        sys.executable,
        "-m",
        "sweep.cli",
        "aggregate",
        str(tmp / "scores.csv"),
        "--group",
        "config",
        "--task",
        "task",
        "--metric",
        "score",
        "--reps",
        str(reps),
        "--out",
        str(tmp / "agg"),
    ]
    walls, cpus = [], []
    for _ in range(repeats):  # a 1-2 s command on a shared box: the median of several fresh processes
        cpu0, w0 = _child_cpu(), time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        walls.append(time.perf_counter() - w0)
        cpus.append(_child_cpu() - cpu0)
    ours_wall, ours_cpu = float(np.median(walls)), float(np.median(cpus))
    print(f"## aggregates, 4 configs x 10 tasks x 10 runs, {reps:,} replicates (load {_load()})")
    print(
        f"agentsweep aggregate (whole CLI, fresh process, median of {repeats}): wall {ours_wall:6.2f} s  "
        f"cpu {ours_cpu:6.2f} s  (each: {', '.join(f'{w:.2f}' for w in walls)} s)"
    )
    if python is None:
        print("rliable: skipped (no --rliable-python)")
        return
    (tmp / "rl.py").write_text(_RLIABLE)
    out = subprocess.run(
        [python, str(tmp / "rl.py"), str(tmp / "scores.csv"), str(reps)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rl = json.loads(out.strip().splitlines()[-1])
    ours = pd.read_csv(tmp / "agg" / "aggregates.csv").query("statistic == 'iqm'").set_index("group")
    diff = max(
        max(abs(ours.loc[g, "lo"] - lo), abs(ours.loc[g, "hi"] - hi)) for g, (lo, hi) in rl["ci"].items()
    )
    print(f"rliable 1.2.0 IQM only (computation alone):     wall {rl['wall']:6.2f} s  cpu {rl['cpu']:6.2f} s")
    print(
        f"speed-up: wall {rl['wall'] / ours_wall:5.1f}x  cpu {rl['cpu'] / ours_cpu:5.1f}x   (target >= 20x)"
    )
    print(f"max |IQM interval endpoint ours - rliable| = {diff:.4f} (load {_load()})")


def report_speed(loop_resamples: int, tmp: Path) -> None:
    runs, curves, truth = simulate_study(1370, seed=0)
    write_study(runs, curves, truth, tmp / "runs.csv", tmp / "curves.csv")
    prepared = prepare_runs(runs, metric="metrics.heldout_goal_success", stratum="params.sft_checkpoint")
    c0, w0 = time.process_time(), time.perf_counter()
    algorithm1_table(prepared, method="loop", resamples=loop_resamples, seed=0)
    loop = (time.process_time() - c0) * 10_000 / loop_resamples
    loop_wall = (time.perf_counter() - w0) * 10_000 / loop_resamples
    print(f"## report, 1,370 runs x 3 strata x 12 hparams with curves (load {_load()})")
    print(
        f"plain loop B={loop_resamples} -> B=10,000 extrapolated: wall {loop_wall:6.1f} s  cpu {loop:6.1f} s"
    )
    for plots in (False, True):
        cmd = [
            sys.executable,
            "-m",
            "sweep.cli",
            "report",
            str(tmp / "runs.csv"),
            "--curves",
            str(tmp / "curves.csv"),
            "--stratum",
            "auto",
            "--out",
            str(tmp / "rep"),
            *([] if plots else ["--no-plots"]),
        ]
        cpu0, w0 = _child_cpu(), time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        cpu, wall = _child_cpu() - cpu0, time.perf_counter() - w0
        target = 6 if plots else 12
        print(
            f"report {'with PNGs' if plots else '--no-plots'} (whole CLI): wall {wall:6.2f} s  cpu {cpu:6.2f} s"
            f"  = 1/{loop_wall / wall:4.1f} of the loop's wall, 1/{loop / cpu:4.1f} of its cpu"
            f"   (target <= 1/{target}) (load {_load()})"
        )


def band_coverage(studies: int, n: int, seed: int) -> None:
    """Share of planted studies whose whole true curve E[best of k], k = 1..n, lies inside each 95% band."""
    from scipy.stats import beta, betabinom

    rng = np.random.default_rng(seed)
    k = np.arange(1, n + 1)
    w = expected_max_weights(n, n)
    # discrete: success rates on 60 goals from a beta-binomial (ties, as real success rates)
    levels = np.arange(61) / 60.0
    pmf = betabinom(60, 3, 5).pmf(np.arange(61))
    cdf = np.cumsum(pmf)
    discrete_truth = (levels[:, None] * (cdf[:, None] ** k - np.r_[0.0, cdf[:-1]][:, None] ** k)).sum(axis=0)
    # continuous: Beta(2, 5) scores, E[max of k] = 1 - int_0^1 F(x)^k dx (midpoint rule, 200,000 cells)
    grid = (np.arange(200_000) + 0.5) / 200_000
    big_f = beta(2, 5).cdf(grid)
    continuous_truth = np.array([1.0 - np.mean(big_f**kk) for kk in k])
    cases = {
        "discrete": (discrete_truth, lambda: rng.choice(levels, size=n, p=pmf)),
        "continuous": (continuous_truth, lambda: rng.beta(2, 5, n)),
    }
    print(f"## tuning-curve bands: {studies} planted studies x {n} runs, whole curve k=1..{n} (nominal 95%)")
    for case, (truth, draw) in cases.items():
        inside = {"bootstrap (percentile, 200)": 0, "ld_equal_tailed": 0, "dkw": 0}
        width = {name: 0.0 for name in inside}
        for _ in range(studies):
            y = draw()
            boot = np.sort(y[rng.integers(0, n, (200, n))], axis=1) @ w
            bands = {"bootstrap (percentile, 200)": np.quantile(boot, [0.025, 0.975], axis=0)}
            for method in ("ld_equal_tailed", "dkw"):
                bands[method] = tuning_curve_band(y, n, bounds=(0.0, 1.0), method=method)
            for name, (lo, hi) in bands.items():
                inside[name] += bool(np.all((lo <= truth + 1e-12) & (truth <= hi + 1e-12)))
                width[name] += float(np.mean(hi - lo)) / studies
        for name, count in inside.items():
            print(
                f"{case:10s} {name:28s} simultaneous coverage {count / studies:6.1%}  mean width {width[name]:.3f}"
            )
    # the CDF bands themselves on continuous scores (where Learned-Miller-DeStefano's level is exact)
    dist = beta(2, 5)
    y = np.sort(rng.beta(2, 5, (20 * studies, n)), axis=1)
    left = np.hstack([np.zeros((len(y), 1)), dist.cdf(y)])  # F at the start of each step
    right = np.hstack([dist.cdf(y), np.ones((len(y), 1))])  # ... and at its end
    for method in ("ld_equal_tailed", "dkw"):
        lower, upper = cdf_band(n, method=method)
        held = ((lower <= left) & (right <= upper)).all(axis=1).mean()
        print(f"continuous CDF band {method:18s} holds F everywhere in {held:6.1%} of {len(y)} studies")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rliable-python", default=None)
    parser.add_argument("--reps", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=5, help="fresh runs of agentsweep aggregate (median)")
    parser.add_argument("--loop-resamples", type=int, default=200)
    parser.add_argument("--studies", type=int, default=200)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument(
        "--parts", default="rliable,report,bands", help="comma-separated: rliable, report, bands"
    )
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    with tempfile.TemporaryDirectory(prefix="bench-aggregates-") as tmp:
        if "rliable" in parts:
            versus_rliable(args.rliable_python, args.reps, Path(tmp), args.repeats)
        if "report" in parts:
            report_speed(args.loop_resamples, Path(tmp))
    if "bands" in parts:
        band_coverage(args.studies, args.runs, seed=0)


if __name__ == "__main__":
    main()
