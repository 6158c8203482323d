"""The sweep driver at the study's scale, and its per-trial overhead over a bare Ray Tune run, side by side.

    RAY_AUTH_MODE=disabled .venv/bin/python benchmarks/bench_sweep.py --overhead-trials 150 --trials 1370

1. Overhead: the same trainable (the surrogate objective: seeded curves on a response surface shaped after the
   study's findings, `num_evals` reports each with a checkpoint) run N times by a bare `tune.Tuner` (random
   `tune.choice` space, no MLflow) and by agentsweep's driver (Optuna random searcher, nested MLflow child runs
   in sqlite, params, metrics vs step and FLOPs, artifacts). Same Ray, same resources. Prints the ratio.
2. Scale: `--trials` surrogate trials (1,370 as in the study) through the real driver, Ray and MLflow; then
   `export` (runs + curves tables) and, when the analysis package provides it, `agentsweep report`. Prints wall
   times, the driver's peak RSS, and checks that every run was logged and exported.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
ROOT = Path(__file__).resolve().parents[1]


def _bare_trainable(config: dict) -> None:
    from ray import tune

    from sweep.objectives import TrialContext, surrogate

    work = tempfile.mkdtemp(prefix="bare-")
    ctx = TrialContext(
        trial_id=tune.get_context().get_trial_id(), seed=0, trial_dir=work, samples_dir=f"{work}/samples",
        options={"num_evals": config.pop("_num_evals"), "sleep_s": config.pop("_sleep_s")},
    )  # fmt: skip

    def report(metrics: dict, checkpoint: str | None = None) -> None:
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(checkpoint) if checkpoint else None)

    surrogate(config, ctx, report)
    shutil.rmtree(work, ignore_errors=True)


def bare_tune(num_trials: int, num_evals: int, storage: Path, sleep_s: float = 0.0) -> float:
    from ray import tune

    from sweep.space import load_space

    space = load_space("paper")
    param_space = {p.name: tune.choice(list(p.values)) for p in space.parameters}
    param_space["_num_evals"] = num_evals
    param_space["_sleep_s"] = sleep_s
    t0 = time.perf_counter()
    tuner = tune.Tuner(
        _bare_trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(num_samples=num_trials),
        run_config=tune.RunConfig(name="bare", storage_path=str(storage), verbose=0,
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=2)),
    )  # fmt: skip
    grid = tuner.fit()
    wall_s = time.perf_counter() - t0
    assert grid.num_errors == 0 and len(grid) == num_trials
    return wall_s


def agentsweep_run(num_trials: int, num_evals: int, out: Path, seed: int = 0, sleep_s: float = 0.0):
    from sweep.driver import launch

    t0 = time.perf_counter()
    result = launch("paper", out_dir=out, objective="sweep.objectives:surrogate", num_trials=num_trials,
                    seed=seed, options={"num_evals": num_evals, "sleep_s": sleep_s})  # fmt: skip
    wall_s = time.perf_counter() - t0
    assert result.num_finished == num_trials, result
    return result, wall_s


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--overhead-trials", type=int, default=150)
    parser.add_argument("--trials", type=int, default=1370)
    parser.add_argument("--num-evals", type=int, default=3)
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument(
        "--sleep-s",
        type=float,
        nargs="+",
        default=[0.0, 0.3],
        help="Work per evaluation in the overhead trainable (one comparison per value).",
    )
    parser.add_argument("--out", default=None, help="Keep outputs here (default: a temporary directory).")
    args = parser.parse_args()
    import pandas as pd
    import ray

    out = Path(args.out or tempfile.mkdtemp(prefix="bench-sweep-")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False,
             _temp_dir=tempfile.mkdtemp(prefix="as-ray-"))  # fmt: skip
    try:
        n = args.overhead_trials
        for sleep_s in args.sleep_s if n else []:
            tag = f"{sleep_s:g}s"
            bare_a = bare_tune(n, args.num_evals, out / f"bare-{tag}", sleep_s)
            _, ours = agentsweep_run(n, args.num_evals, out / f"overhead-{tag}", sleep_s=sleep_s)
            bare_b = bare_tune(
                n, args.num_evals, out / f"bare2-{tag}", sleep_s
            )  # before and after: drift shows
            bare = (bare_a + bare_b) / 2
            print(
                f"## overhead: {n} trials x {args.num_evals} evals of {sleep_s:g} s work, {args.num_cpus} CPUs"
            )
            print(
                f"bare Ray Tune           {bare_a:8.1f} s, again {bare_b:8.1f} s  ({1000 * bare / n:.0f} ms/trial)"
            )
            print(f"agentsweep (+MLflow)    {ours:8.1f} s  ({1000 * ours / n:.0f} ms/trial)")
            print(f"ratio agentsweep/bare   {ours / bare:8.3f}  (overhead {100 * (ours / bare - 1):+.1f}%, "
                  f"{1000 * (ours - bare) / n:+.0f} ms/trial)", flush=True)  # fmt: skip
        if args.trials:
            from sweep.export import export_sweep

            result, wall_s = agentsweep_run(args.trials, args.num_evals, out / "scale", seed=1)
            t0 = time.perf_counter()
            runs_path, curves_path = export_sweep(result.settings.sweep_dir, out / "runs.parquet")
            export_s = time.perf_counter() - t0
            runs, curves = pd.read_parquet(runs_path), pd.read_parquet(curves_path)
            assert len(runs) == args.trials and (runs["status"] == "FINISHED").all()
            assert len(curves) == args.trials * args.num_evals
            peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(
                f"## scale: {args.trials} trials x {args.num_evals} evals through driver + Ray + MLflow (sqlite)"
            )
            print(f"sweep wall              {wall_s:8.1f} s  ({1000 * wall_s / args.trials:.0f} ms/trial)")
            print(
                f"export wall             {export_s:8.1f} s  ({len(runs)} runs, {len(curves)} curve points)"
            )
            print(
                f"driver peak RSS         {peak_mib:8.0f} MiB (this process: driver, MLflow client, export)"
            )
            report_cmd = [str(Path(sys.executable).with_name("agentsweep")), "report", str(runs_path),
                          "--out", str(out / "report")]  # fmt: skip
            t0 = time.perf_counter()
            proc = subprocess.run(report_cmd, capture_output=True, text=True)
            report_s = time.perf_counter() - t0
            if proc.returncode == 0:
                print(f"report wall             {report_s:8.1f} s  -> {out / 'report'}")
            else:
                print(
                    f"report: `{' '.join(report_cmd)}` failed (rc {proc.returncode}): {proc.stderr.strip()[-300:]}"
                )
    finally:
        ray.shutdown()
    print(f"outputs in {out}")


if __name__ == "__main__":
    main()
