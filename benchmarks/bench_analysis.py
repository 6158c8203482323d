"""Algorithm 1 at the study's scale: closed form, vectorised Monte Carlo, the plain loop and rliable, side by side.

    MPLBACKEND=Agg .venv/bin/python benchmarks/bench_analysis.py [--runs 1370] [--loop-resamples 200]
        [--scale-runs 100000] [--rliable-reps 2000]

rliable is optional (`pip install rliable`; it needs arch>=8 with pandas 3); it is not a dependency.

1. Study scale: a simulated study (1,370 runs, 3 SFT strata, the 12 RL hyperparameters of paper.yaml plus the
   stratum = all 13): `algorithm1_table(method="exact")`, `method="mc"` with B = 10,000, and the plain
   loop-over-resamples reference (`method="loop"`) at `--loop-resamples`, extrapolated per resample to
   B = 10,000. Wall and CPU seconds (the box is shared: CPU seconds are the fairer figure).
2. rliable: the same per-value interval, "95% bootstrap interval of value h's best run", by rliable's
   `get_interval_estimates` (arch's stratified bootstrap, `--rliable-reps` replicates, func = max) for every
   (stratum, hparam, value), against our closed form for all of them; and rliable's IQM interval against
   `value_aggregates` (the same stratified bootstrap of the IQM) at the same number of replicates.
   Note that the max intervals are not numerically identical: Algorithm 1 draws n runs from all values by
   weight, so value h's count is random, while rliable resamples exactly n_h runs of value h.
3. Scale: `--scale-runs` runs (the simulated table resampled with jittered metrics so almost every metric is
   a distinct level), exact and mc(B = 10,000); and the Monte Carlo's peak traced memory at B = 1,000 vs
   B = 100,000 (it keeps only level histograms, so it must not grow with B).
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc

import numpy as np
import pandas as pd

from analysis.aggregate import value_aggregates
from analysis.bootstrap import algorithm1_mc, algorithm1_table
from analysis.runs import prepare_runs
from analysis.simulate import simulate_study

METRIC = "metrics.heldout_goal_success"
STRATUM = "params.sft_checkpoint"


def _timed(fn, repeat: int = 1):
    best_wall, best_cpu, out = float("inf"), float("inf"), None
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        best_wall = min(best_wall, time.perf_counter() - w0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return out, best_wall, best_cpu


def study_scale(prepared, loop_resamples: int) -> None:
    n_cells = sum(1 for _ in prepared.strata()) * len(prepared.hparams)
    print(f"## study scale: {len(prepared.frame)} runs, {n_cells} (stratum, hparam) cells")
    exact, w_exact, c_exact = _timed(lambda: algorithm1_table(prepared, method="exact"), repeat=5)
    _, w_mc, c_mc = _timed(
        lambda: algorithm1_table(prepared, method="mc", resamples=10_000, seed=0), repeat=3
    )
    loop, w_loop, c_loop = _timed(
        lambda: algorithm1_table(prepared, method="loop", resamples=loop_resamples, seed=0)
    )
    per = 10_000 / loop_resamples
    print(f"exact          wall {w_exact:8.3f} s  cpu {c_exact:8.3f} s   (target < 0.2 s)")
    print(f"mc  B=10,000   wall {w_mc:8.3f} s  cpu {c_mc:8.3f} s   (target < 2 s)")
    print(
        f"loop B={loop_resamples:<6d}  wall {w_loop:8.3f} s  cpu {c_loop:8.3f} s"
        f"  -> B=10,000 extrapolated cpu {c_loop * per:8.1f} s"
    )
    print(f"speed-up mc vs loop at B=10,000 (cpu): {c_loop * per / c_mc:8.1f}x   (target >= 50x)")
    print(f"speed-up exact vs loop at B=10,000 (cpu): {c_loop * per / c_exact:8.1f}x")
    gap = np.abs(exact.win_rate.to_numpy() - loop.win_rate.to_numpy()).max()
    print(f"max |win_rate exact - loop(B={loop_resamples})| = {gap:.3f}")


def _arch8_compat() -> None:
    """rliable 1.2 passes `random_state=` to arch's bootstrap, which arch 8 renamed `seed=`; translate it.

    (arch 7 does not import under pandas 3.) Only the keyword changes: rliable's own resampling code runs.
    """
    import arch.bootstrap as arch_bs

    original = arch_bs.IIDBootstrap.__init__
    if getattr(original, "_agentsweep_compat", False):
        return

    def init(self, *args, random_state=None, seed=None, **kwargs):
        original(self, *args, seed=seed if seed is not None else random_state, **kwargs)

    init._agentsweep_compat = True
    arch_bs.IIDBootstrap.__init__ = init


def versus_rliable(prepared, reps: int) -> None:
    try:
        from rliable import library as rly
        from rliable import metrics as rly_metrics
    except Exception as exc:  # noqa: BLE001 - any import failure just skips the comparison
        print(f"## rliable: skipped ({type(exc).__name__}: {exc})")
        return
    _arch8_compat()
    print(f"## rliable {reps} replicates vs ours")
    cells = []
    for _, frame in prepared.strata():
        for h in prepared.hparams:
            active = frame[frame[h] != ""]
            cells.append(
                {v: g[prepared.metric].to_numpy(float)[:, None] for v, g in active.groupby(h, sort=True)}
            )
    rs = None  # arch >= 8 no longer takes a RandomState; rliable then uses the global one
    np.random.seed(0)

    def run_rliable():
        for scores in cells:
            rly.get_interval_estimates(scores, lambda x: np.array([x.max()]), reps=reps, random_state=rs)

    _, w_rl, c_rl = _timed(run_rliable)
    _, w_ex, c_ex = _timed(lambda: algorithm1_table(prepared, method="exact"), repeat=3)
    n_int = sum(len(c) for c in cells)
    print(
        f"best-run interval, {n_int} intervals: rliable cpu {c_rl:8.2f} s (wall {w_rl:.2f}), "
        f"ours exact cpu {c_ex:.3f} s -> {c_rl / c_ex:8.0f}x"
    )
    # IQM interval per value, pooled over strata with a stratified bootstrap: the same statistic both ways.
    h = "params.temperature"
    score_dict = {}
    for v in sorted(prepared.frame[h].unique()):
        per_stratum = [f.loc[f[h] == v, prepared.metric].to_numpy(float) for _, f in prepared.strata()]
        m = min(len(a) for a in per_stratum)
        score_dict[v] = np.stack([a[:m] for a in per_stratum], axis=1)  # (runs, strata) as rliable wants
    _, w_rl, c_rl = _timed(
        lambda: rly.get_interval_estimates(
            score_dict, lambda x: np.array([rly_metrics.aggregate_iqm(x)]), reps=reps, random_state=rs
        )
    )
    one = prepare_runs(prepared.frame, metric=prepared.metric, stratum=prepared.stratum, hparams=[h])
    _, w_us, c_us = _timed(lambda: value_aggregates(one, reps=reps, seed=0))
    print(
        f"IQM interval ({len(score_dict)} values of {h}, with POI too on our side): rliable cpu {c_rl:.2f} s, "
        f"ours cpu {c_us:.3f} s -> {c_rl / c_us:6.1f}x"
    )


def scale(runs: pd.DataFrame, num: int) -> None:
    rng = np.random.default_rng(1)
    big = runs.sample(num, replace=True, random_state=1).reset_index(drop=True)
    big[METRIC] = pd.to_numeric(big[METRIC]) + rng.normal(0, 1e-3, num)
    big["run_id"] = [f"big{i}" for i in range(num)]
    prepared, w_prep, _ = _timed(lambda: prepare_runs(big, metric=METRIC, stratum=STRATUM))
    print(f"## scale: {len(prepared.frame)} runs (prepare {w_prep:.2f} s)")
    _, w_ex, c_ex = _timed(lambda: algorithm1_table(prepared, method="exact"))
    _, w_mc, c_mc = _timed(lambda: algorithm1_table(prepared, method="mc", resamples=10_000, seed=0))
    print(f"exact        wall {w_ex:7.2f} s  cpu {c_ex:7.2f} s")
    print(f"mc B=10,000  wall {w_mc:7.2f} s  cpu {c_mc:7.2f} s")
    frame = prepared.frame[prepared.frame[STRATUM] == prepared.frame[STRATUM].iloc[0]]
    y = frame[METRIC].to_numpy(float)
    labels = frame["params.learning_rate"].to_numpy(object)
    for b in (1_000, 100_000):
        tracemalloc.start()
        algorithm1_mc(y, labels, resamples=b, rng=np.random.default_rng(0))
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(f"mc peak traced memory, one cell of {len(y)} runs, B={b:>7,d}: {peak / 2**20:7.1f} MiB")
    print(f"process max RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1370)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--loop-resamples", type=int, default=200)
    parser.add_argument("--rliable-reps", type=int, default=2000)
    parser.add_argument("--scale-runs", type=int, default=100_000)
    args = parser.parse_args()
    runs, _, _ = simulate_study(args.runs, seed=args.seed)
    prepared = prepare_runs(runs, metric=METRIC, stratum=STRATUM)
    print(
        f"{len(runs)} simulated runs, {len(prepared.frame)} used, excluded {prepared.excluded}, "
        f"{len(prepared.hparams)} hparams + stratum"
    )
    study_scale(prepared, args.loop_resamples)
    versus_rliable(prepared, args.rliable_reps)
    if args.scale_runs:
        scale(runs, args.scale_runs)


if __name__ == "__main__":
    main()
