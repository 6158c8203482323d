"""The sweep driver at the study's scale, and its per-trial overhead over a bare Ray Tune run, side by side.

    RAY_AUTH_MODE=disabled .venv/bin/python benchmarks/bench_sweep.py --overhead-trials 150 --trials 1370

1. Overhead: the same trainable (the surrogate objective: seeded curves on a response surface shaped after the
   study's findings, `num_evals` reports each with a checkpoint) run N times by a bare `tune.Tuner` (random
   `tune.choice` space, no MLflow) and by agentsweep's driver (Optuna random searcher, nested MLflow child runs
   in sqlite, params, metrics vs step and FLOPs, artifacts). Same Ray, same resources. Bare runs before and
   after each agentsweep run (`--rounds`), so load from other processes shows as drift. Prints the ratios.
2. Scale: `--trials` surrogate trials (1,370 as in the study) through the real driver, Ray and MLflow; then
   `agentsweep export` (runs + curves tables) and `agentsweep report`, each in its own process. Prints wall times,
   the driver's peak RSS and those of export and report, the per-trial time per tenth of the sweep (growth),
   and checks that every run was logged FINISHED and exported with all its evaluations.
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

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
ROOT = Path(__file__).resolve().parents[1]


def _bare_trainable(config: dict) -> None:
    from ray import tune

    from sweep.objectives import TrialContext, surrogate

    work = tempfile.mkdtemp(prefix="bare-")
    ctx = TrialContext(
        trial_id=tune.get_context().get_trial_id(),
        seed=0,
        trial_dir=work,
        samples_dir=f"{work}/samples",
        options={"num_evals": config.pop("_num_evals"), "sleep_s": config.pop("_sleep_s")},
    )

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
        run_config=tune.RunConfig(
            name="bare",
            storage_path=str(storage),
            verbose=0,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        ),
    )
    grid = tuner.fit()
    wall_s = time.perf_counter() - t0
    assert grid.num_errors == 0 and len(grid) == num_trials
    return wall_s


def agentsweep_run(
    num_trials: int, num_evals: int, out: Path, seed: int = 0, sleep_s: float = 0.0, progress=None
):
    """One sweep through `launch`; returns (result, launch wall s, Tune fit wall s)."""
    from sweep.driver import launch

    t0 = time.perf_counter()
    result = launch(
        "paper",
        out_dir=out,
        objective="sweep.objectives:surrogate",
        num_trials=num_trials,
        seed=seed,
        options={"num_evals": num_evals, "sleep_s": sleep_s},
        progress=progress,
    )
    wall_s = time.perf_counter() - t0
    assert result.num_finished == num_trials, result
    return result, wall_s


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


_PEAK_RSS_LAUNCHER = """
import atexit, re, sys
from pathlib import Path

def _peak():  # VmHWM: this process's own peak RSS (ru_maxrss would count the parent's pages at fork)
    hwm = re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text())
    Path(sys.argv[1]).write_text(hwm.group(1) if hwm else "0")

atexit.register(_peak)
from sweep.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _timed_cli(args: list[str], peak_file: Path) -> tuple[float, float]:
    """Run `agentsweep ARGS` in a fresh process; returns (wall s, its peak RSS MiB)."""
    cmd = [sys.executable, "-c", _PEAK_RSS_LAUNCHER, str(peak_file), *args]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall_s = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"agentsweep {' '.join(args)} failed ({proc.returncode}): {proc.stderr[-500:]}")
    return wall_s, int(peak_file.read_text()) / 1024


def overhead(n: int, num_evals: int, sleep_s: float, rounds: int, out: Path, num_cpus: int) -> None:
    """Bare Tune and agentsweep alternately (bare, ours, bare, ours, ..., bare): each of our runs is compared
    with the mean of the bare runs just before and after it, so load from other processes shows as drift."""
    tag = f"{sleep_s:g}s"
    bare, ours, cpu_bare, cpu_ours, setup = [], [], [], [], []
    for r in range(rounds + 1):
        c0 = _cpu_s()
        bare.append(bare_tune(n, num_evals, out / f"bare{r}-{tag}", sleep_s))
        cpu_bare.append(_cpu_s() - c0)
        if r == rounds:
            break
        c0 = _cpu_s()
        result, wall_s = agentsweep_run(n, num_evals, out / f"overhead{r}-{tag}", sleep_s=sleep_s)
        cpu_ours.append(_cpu_s() - c0)
        ours.append(wall_s)
        setup.append(wall_s - result.wall_s)
    print(
        f"## overhead: {n} trials x {num_evals} evals of {sleep_s:g} s work, {num_cpus} CPUs, {rounds} rounds"
    )
    for r in range(rounds + 1):
        print(
            f"bare Ray Tune            {bare[r]:7.1f} s  ({1000 * bare[r] / n:5.0f} ms/trial, driver CPU "
            f"{1000 * cpu_bare[r] / n:4.0f} ms/trial)"
        )
        if r < rounds:
            ref = (bare[r] + bare[r + 1]) / 2
            print(
                f"agentsweep (+MLflow)     {ours[r]:7.1f} s  ({1000 * ours[r] / n:5.0f} ms/trial, driver CPU "
                f"{1000 * cpu_ours[r] / n:4.0f} ms/trial; setup before the Tune fit {setup[r]:.1f} s)"
                f"  ratio to the bare runs around it {ours[r] / ref:.3f}"
            )
    ref = sum((bare[r] + bare[r + 1]) / 2 for r in range(rounds))
    print(
        f"ratio agentsweep/bare    {sum(ours) / ref:7.3f}  (overhead {100 * (sum(ours) / ref - 1):+.1f}%, "
        f"{1000 * (sum(ours) - ref) / (n * rounds):+.0f} ms/trial)",
        flush=True,
    )


def scale(num_trials: int, num_evals: int, out: Path, num_cpus: int) -> None:
    """The study's trial count through driver + Ray + MLflow; then `agentsweep export` and `agentsweep report`
    as the user runs them (separate processes, timed, with their peak RSS)."""
    import pandas as pd
    import ray

    done_at: list[tuple[float, float]] = []  # (wall s, driver CPU s) as each trial ends
    t0, cpu0 = time.perf_counter(), _cpu_s()
    result, wall_s = agentsweep_run(
        num_trials,
        num_evals,
        out / "scale",
        seed=1,
        progress=lambda *_: done_at.append((time.perf_counter() - t0, _cpu_s())),
    )
    driver_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ray.shutdown()  # export and report run alone, as after a real sweep
    sweep_dir = result.settings.sweep_dir
    runs_path = out / "runs.parquet"
    export_s, export_rss = _timed_cli(["export", sweep_dir, "-o", str(runs_path)], out / "export.peak")
    report_s, report_rss = _timed_cli(
        ["report", str(runs_path), "--out", str(out / "report")], out / "report.peak"
    )
    runs = pd.read_parquet(runs_path)
    curves = pd.read_parquet(runs_path.with_name("runs.curves.parquet"))
    assert len(runs) == num_trials and (runs["status"] == "FINISHED").all(), runs["status"].value_counts()
    assert runs["run_id"].is_unique and len(curves) == num_trials * num_evals
    print(
        f"## scale: {num_trials} trials x {num_evals} evals through driver + Ray + MLflow (sqlite), "
        f"{num_cpus} CPUs"
    )
    print(f"sweep wall              {wall_s:8.1f} s  ({1000 * wall_s / num_trials:.0f} ms/trial)")
    print(f"driver peak RSS         {driver_rss:8.0f} MiB (this process: driver, MLflow writer)")
    print(
        f"export wall             {export_s:8.1f} s  peak RSS {export_rss:5.0f} MiB  "
        f"({len(runs)} runs FINISHED, {len(curves)} curve points)"
    )
    print(f"report wall             {report_s:8.1f} s  peak RSS {report_rss:5.0f} MiB  -> {out / 'report'}")
    block = max(1, num_trials // 10)
    marks = [(0.0, cpu0)] + done_at[block - 1 :: block]
    pairs = list(zip(marks, marks[1:], strict=False))
    print(f"per block of {block} finished trials (growth = per-trial cost rising with the trials done):")
    print("  wall ms/trial        " + " ".join(f"{1000 * (b[0] - a[0]) / block:5.0f}" for a, b in pairs))
    print("  driver CPU ms/trial  " + " ".join(f"{1000 * (b[1] - a[1]) / block:5.0f}" for a, b in pairs))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--overhead-trials", type=int, default=150)
    parser.add_argument(
        "--rounds", type=int, default=2, help="agentsweep runs per comparison (bare: one more)"
    )
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
    import ray

    out = Path(args.out or tempfile.mkdtemp(prefix="bench-sweep-")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    ray_tmp = tempfile.mkdtemp(prefix="as-ray-")
    ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False, _temp_dir=ray_tmp)
    try:
        for sleep_s in args.sleep_s if args.overhead_trials else []:
            overhead(args.overhead_trials, args.num_evals, sleep_s, args.rounds, out, args.num_cpus)
        if args.trials:
            scale(args.trials, args.num_evals, out, args.num_cpus)
    finally:
        ray.shutdown()
        shutil.rmtree(ray_tmp, ignore_errors=True)
    print(f"outputs in {out}")


if __name__ == "__main__":
    main()
