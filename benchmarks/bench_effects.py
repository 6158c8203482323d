"""Statistical-truth benchmark: effects (main-effects model) beside Algorithm 1 on planted studies.

    .venv/bin/python benchmarks/bench_effects.py [--studies 100] [--runs 1370] [--seed 0]

Each study is `analysis.simulate.simulate_study(runs, seed=seed + i)` (3 strata, 12 hyperparameters, planted
strong / moderate / null effects, failed runs, discrete success rates). Printed side by side:
- best-first rate per strong/moderate (stratum, hparam): effects' highest `p_best` vs Algorithm 1's highest
  `win_rate` is the planted best value (target for effects: >= 95% for every one);
- null false-flag rate: share of studies in which some value of a null hyperparameter is `significant`
  (target <= 5%);
- coverage: share of (row, study) pairs whose 95% interval contains the true effect, i.e. the true marginal mean
  minus the average of the true marginal means of the hyperparameter's values (target 93-97%);
- time added per report by the effects (one 1,370-run study) beside Algorithm 1 (exact).
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import numpy as np

from analysis.bootstrap import algorithm1_table
from analysis.effects import compute_effects
from analysis.runs import prepare_runs
from analysis.simulate import simulate_study


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--studies", type=int, default=100)
    parser.add_argument("--runs", type=int, default=1370)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    first_eff, first_alg = defaultdict(list), defaultdict(list)
    null_flags, covered, rows = defaultdict(list), 0, 0
    t_eff = t_alg = 0.0
    wall0 = time.perf_counter()
    for i in range(args.studies):
        runs, _, truth = simulate_study(args.runs, seed=args.seed + i)
        prepared = prepare_runs(runs, metric="metrics.heldout_goal_success", stratum="params.sft_checkpoint")
        t0 = time.process_time()  # CPU seconds: the machine may be shared; wall time is printed too
        alg = algorithm1_table(prepared, method="exact")
        t1 = time.process_time()
        eff, _ = compute_effects(
            prepared.frame, metric=prepared.metric, stratum=prepared.stratum, hparams=prepared.hparams, seed=i
        )
        t2 = time.process_time()
        t_alg, t_eff = t_alg + (t1 - t0), t_eff + (t2 - t1)
        for stratum, plan in truth["strata"].items():
            for h, info in plan.items():
                e = eff[(eff.stratum == stratum) & (eff.hparam == h)].set_index("value")
                a = alg[(alg.stratum == stratum) & (alg.hparam == h)].set_index("value")
                means = info["marginal_mean"]
                true_effect = {v: m - np.mean(list(means.values())) for v, m in means.items()}
                inside = [(e.effect_lo[v] <= true_effect[v] <= e.effect_hi[v]) for v in e.index]
                covered, rows = covered + sum(inside), rows + len(inside)
                if info["class"] == "null":
                    null_flags[(stratum, h)].append(bool(e.significant.any()))
                else:
                    key = (info["class"], stratum, h)
                    first_eff[key].append(e.p_best.idxmax() == info["best"])
                    first_alg[key].append(a.win_rate.idxmax() == info["best"])
    print(f"## {args.studies} planted studies x {args.runs} runs (3 strata, 12 hyperparameters)")
    print(f"{'class':9s} {'stratum':8s} {'hparam':26s} {'effects p_best':>15s} {'Alg.1 win_rate':>15s}")
    for key in sorted(first_eff):
        cls, stratum, h = key
        print(
            f"{cls:9s} {stratum:8s} {h:26s} {np.mean(first_eff[key]):15.2%} {np.mean(first_alg[key]):15.2%}"
        )
    worst_eff = min(np.mean(v) for v in first_eff.values())
    worst_alg = min(np.mean(v) for v in first_alg.values())
    print(
        f"worst best-first rate over strong+moderate: effects {worst_eff:.2%}  Algorithm 1 {worst_alg:.2%}"
        "  (target >= 95%)"
    )
    fpr = {k: np.mean(v) for k, v in null_flags.items()}
    print(
        f"null false-flag rate: mean {np.mean(list(fpr.values())):.2%}, worst {max(fpr.values()):.2%} "
        f"over {len(fpr)} null (stratum, hparam)  (target <= 5%)"
    )
    print(
        f"coverage of 95% effect intervals: {covered / rows:.2%} of {rows} (row, study) pairs  (target 93-97%)"
    )
    print(
        f"CPU time per report: effects {t_eff / args.studies:.3f} s, Algorithm 1 exact "
        f"{t_alg / args.studies:.3f} s  (effects target <= 1 s); benchmark wall {time.perf_counter() - wall0:.0f} s"
    )


if __name__ == "__main__":
    main()
