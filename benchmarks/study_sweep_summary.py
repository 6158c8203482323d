"""The study sweep's shipped tables in a few lines: runs per arm and branch point, each stratum's RL lift (last
evaluation minus step 0, per run, then the mean and t 95% interval over the stratum's runs; the held-out goals are
the same in every run), the lift by each knob's value in the SFT strata, and the per-trial wall split (train_rl's
own timers summed over a trial's evaluations).

    python benchmarks/study_sweep_summary.py benchmarks/study/sweep
"""

import sys

import numpy as np
import pandas as pd
from scipy import stats

d = sys.argv[1]
r = pd.read_parquet(f"{d}/runs.parquet")
c = pd.read_parquet(f"{d}/runs.curves.parquet")
r = r[r.status == "FINISHED"]
print("runs by arm/branch point:")
print(r.groupby(["params.arm", "params.sft_checkpoint"]).size())
rl = r[r["params.arm"] != "sft"]
c = c[c.run_id.isin(rl.run_id)].sort_values(["run_id", "step"])
first = c.groupby("run_id").first()
last = c.groupby("run_id").last()
lift = (last.heldout_goal_success - first.heldout_goal_success).rename("lift")
t = rl.set_index("run_id").join(lift)
t["step0"] = first.heldout_goal_success
t["last"] = last.heldout_goal_success
print("\nlast evaluation - step 0 per run (30 held-out goals), mean over runs, t 95% interval:")
for bp, g in t.groupby("params.sft_checkpoint"):
    x = g.lift.to_numpy()
    m = x.mean()
    se = x.std(ddof=1) / np.sqrt(len(x)) if len(x) > 1 else np.nan
    q = stats.t.ppf(0.975, len(x) - 1) if len(x) > 1 else np.nan
    print(
        f"  {bp}: n={len(x)} step0 {g.step0.mean():.3f} last {g['last'].mean():.3f} lift {m:+.3f} [{m - q * se:+.3f}, {m + q * se:+.3f}]  up {int((x > 0).sum())} down {int((x < 0).sum())} equal {int((x == 0).sum())}"
    )
sft = t[t["params.sft_checkpoint"].astype(str).map(lambda v: v not in ("0", "0.0", ""))]
for knob in [
    "learning_rate",
    "temperature",
    "batch_size",
    "gamma",
    "curriculum",
    "error_log",
    "grouped_advantage",
    "std_normalize",
    "zero_adv_filter",
]:
    col = f"params.{knob}"
    parts = [f"{v}: {g.lift.mean():+.3f} (n={len(g)})" for v, g in sft.groupby(col)]
    print(f"  SFT strata lift by {knob}: " + "; ".join(parts))
split = c.groupby("run_id").agg(
    wall=("wall_s", "max"),
    gen=("rollout_gen_s", "sum"),
    env=("rollout_env_s", "sum"),
    update=("update_s", "sum"),
    eval=("eval_s", "sum"),
)
split = split.join(rl.set_index("run_id")["params.sft_checkpoint"])
print("\nper-trial wall split (train_rl's own, mean s per trial):")
print(split.groupby("params.sft_checkpoint").mean().round(1).to_string())
m = split[["wall", "gen", "env", "update", "eval"]].mean().to_dict()
other = m["wall"] - m["gen"] - m["env"] - m["update"] - m["eval"]
print(
    "all: wall {wall:.0f} = gen {gen:.0f} + env {env:.0f} + update {update:.0f} + eval {eval:.0f}".format(**m)
    + f" + other {other:.0f}"
)
