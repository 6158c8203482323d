"""Issue 16: the RL lift over a branch point, measured on an evaluation that did not choose it.

Reads RL run directories (`train_rl` output: `evals.jsonl`, per-goal outcomes of every evaluation). For every run
the lift is last evaluation minus the branch point's own evaluation (step 0), on the same held-out goals, paired
by goal. Runs are grouped (default: by branch point, the `--group` regex's first group on the directory name);
each group's lift is the mean over its runs (seeds) and goals, with a two-stage bootstrap 95% interval (runs
resampled, then goals, paired), so seed-to-seed variation is in the interval, and beside it the simultaneous
interval over all the groups (Bonferroni: each at 1 - 0.05 / groups), for a claim about several branch points at
once. A per-task table says where the lift comes from. The chosen checkpoint is never used: the best of several
noisy evaluations is biased upwards.

    /work/wt/venv-run python benchmarks/study_lift.py /work/study/rl*_s* --csv benchmarks/study/lift.csv
    # or from the committed table (columns run, step, split, task, seed, success), in seconds:
    /work/wt/venv-run python benchmarks/study_lift.py --evals benchmarks/study/rl_evals.csv --group '(.+)$'
    # several tables at once (--evals repeats; a run in two of them is refused)
    /work/wt/venv-run python benchmarks/study_lift.py --evals A.csv --evals B.csv --group '^(.+)_[0-9a-f]+$'
    # the trials of a sweep (benchmarks/study/lift/), grouped by branch point
    /work/wt/venv-run python benchmarks/study_lift.py --sweep /work/study/lift/study-lift-... --group '^(.+)_[0-9a-f]+$'
    # how the episodes end at each evaluation (does the policy learn to stall until the step limit?)
    /work/wt/venv-run python benchmarks/study_lift.py /work/study/rlE_300_s0 --lengths 6
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np


def _jsonl_rows(path: Path, split: str) -> list[dict]:
    """The per-goal outcome records of one run's `evals.jsonl` on `split` (a torn last line is skipped)."""
    rows = []
    for line in (path / "evals.jsonl").read_text().splitlines():
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if r["split"] == split:
            rows.append(r)
    return rows


def load_run(path: Path, split: str = "heldout_goals") -> dict[int, dict[tuple[str, int], float]]:
    """step -> {(task, seed): success} of one run's evaluations."""
    out: dict[int, dict[tuple[str, int], float]] = defaultdict(dict)
    for r in _jsonl_rows(path, split):
        out[int(r["step"])][(r["task"], int(r["seed"]))] = float(r["success"])
    return dict(out)


def load_table(
    path: Path, split: str = "heldout_goals"
) -> dict[str, dict[int, dict[tuple[str, int], float]]]:
    """run -> step -> {(task, seed): success} from a CSV of per-goal outcomes (`rl_evals.csv`)."""
    out: dict[str, dict[int, dict]] = defaultdict(lambda: defaultdict(dict))
    with path.open() as f:
        for r in csv.DictReader(f):
            if r["split"] == split:
                out[r["run"]][int(r["step"])][(r["task"], int(r["seed"]))] = float(r["success"])
    return {k: dict(v) for k, v in out.items()}


def length_table(rows: list[dict], limit: int) -> list[str]:
    """Per run and evaluation step: successes and failures by episode length (1 step, 2..limit-1, at the limit)."""
    counts: dict[tuple[str, int], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in rows:
        n = int(float(r["steps"]))
        kind = "win" if float(r["success"]) >= 0.5 else "fail"
        span = "1" if n <= 1 else (f"{limit}" if n >= limit else f"2-{limit - 1}")
        counts[(r["run"], int(r["step"]))][f"{kind} {span}"] += 1
    cols = [f"{k} {s}" for k in ("win", "fail") for s in ("1", f"2-{limit - 1}", f"{limit}")]
    out = [f"{'run':<24} {'step':>4}  " + "  ".join(f"{c:>8}" for c in cols)]
    for (run, step), c in sorted(counts.items()):
        out.append(f"{run:<24} {step:>4}  " + "  ".join(f"{c[k]:>8}" for k in cols))
    return out


def raw_rows(paths: list[Path], evals: list[Path], split: str = "heldout_goals") -> list[dict]:
    """Per-goal outcome rows (run, step, success, steps) of run directories and/or rl_evals.csv-like tables."""
    rows = []
    for table in evals:
        with table.open() as f:
            rows += [r for r in csv.DictReader(f) if r["split"] == split]
    for path in paths:
        rows += [{**r, "run": path.name} for r in _jsonl_rows(path, split)]
    return rows


def sweep_runs(sweep_dir: Path, split: str = "heldout_goals") -> dict[str, dict[int, dict]]:
    """The trials of an `agentsweep launch` sweep, named `<params.sft_checkpoint>_<trial id>` (so `--group
    '^(.+)_[0-9a-f]+$'` groups them by branch point), each with its per-goal outcomes: the trial's mirrored
    `samples/evals.jsonl`, or the `evals.jsonl` in Ray's working directory of the trial (sweeps of earlier commits)."""
    out: dict[str, dict[int, dict]] = {}
    for params in sorted((sweep_dir / "tune" / "experiment").glob("*/params.json")):
        trial = params.parent
        found = [trial / "samples"] + sorted(
            sweep_dir.parent.glob(f".ray/session_*/artifacts/*/experiment/working_dirs/{trial.name}")
        )
        found = [d for d in found if (d / "evals.jsonl").is_file()]
        if not found:
            print(f"{trial.name}: no per-goal outcomes (evals.jsonl), skipped")
            continue
        bp = json.loads(params.read_text()).get("sft_checkpoint")
        out[f"{float(bp or 0):.4g}_{trial.name}"] = load_run(found[0], split)
    return out


def paired(run: dict[int, dict]) -> tuple[list[tuple[str, int]], np.ndarray, np.ndarray, int]:
    """(goals, success at step 0, success at the last step, last step) over the goals both evaluations played."""
    first, last = min(run), max(run)
    goals = sorted(set(run[first]) & set(run[last]))
    return goals, np.array([run[first][g] for g in goals]), np.array([run[last][g] for g in goals]), last


def two_stage_bootstrap(
    diffs: list[np.ndarray], reps: int, seed: int, levels: tuple[float, ...] = (0.95,)
) -> list[tuple[float, float]]:
    """Percentile intervals (one per confidence level) of the mean of per-run mean differences: runs resampled,
    then goals in each."""
    rng = np.random.default_rng(seed)
    k = len(diffs)
    stats = np.empty(reps)
    for b in range(reps):
        runs = rng.integers(0, k, k)
        stats[b] = np.mean([diffs[r][rng.integers(0, len(diffs[r]), len(diffs[r]))].mean() for r in runs])
    out = []
    for level in levels:
        lo, hi = np.percentile(stats, [50 * (1 - level), 50 * (1 + level)])
        out.append((float(lo), float(hi)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="*", type=Path, help="RL run directories (with evals.jsonl)")
    ap.add_argument(
        "--evals",
        type=Path,
        action="append",
        default=[],
        help="a CSV of per-goal outcomes instead of run dirs (repeatable: the tables of several sweeps)",
    )
    ap.add_argument(
        "--sweep",
        type=Path,
        default=None,
        help="an agentsweep sweep directory: its trials, named <branch point FLOPs>_<trial id>",
    )
    ap.add_argument(
        "--export-evals",
        type=Path,
        default=None,
        help="write the loaded per-goal outcomes here (rl_evals.csv layout)",
    )
    ap.add_argument("--group", default=r"(.+)_s\d+$", help="regex on the run dir name; group 1 names the arm")
    ap.add_argument("--reps", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--csv", type=Path, default=None)
    ap.add_argument(
        "--lengths",
        type=int,
        default=None,
        metavar="MAX_STEPS",
        help="print how episodes end, by length, instead",
    )
    args = ap.parse_args()
    if args.lengths:
        print("\n".join(length_table(raw_rows(sorted(args.runs), args.evals), args.lengths)))
        return

    loaded: dict[str, dict[int, dict]] = {}
    for table in args.evals:
        for name, run in load_table(table).items():
            if name in loaded:
                raise SystemExit(f"run {name} is in two --evals tables; give each run once")
            loaded[name] = run
    for path in sorted(args.runs):
        if (path / "evals.jsonl").is_file():
            loaded[path.name] = load_run(path)
    if args.sweep:
        loaded.update(sweep_runs(args.sweep))
    if args.export_evals:
        with args.export_evals.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["run", "step", "split", "task", "seed", "success"])
            for name, run in sorted(loaded.items()):
                for step, goals in sorted(run.items()):
                    for (task, seed), ok in sorted(goals.items()):
                        w.writerow([name, step, "heldout_goals", task, seed, int(ok)])
    groups: dict[str, list[tuple[str, tuple]]] = defaultdict(list)
    for name, run in sorted(loaded.items()):
        if len(run) < 2:
            print(f"{name}: one evaluation only, skipped")
            continue
        m = re.match(args.group, name)
        groups[m.group(1) if m else name].append((name, paired(run)))
    rows = []
    # every group is a claim ("RL lifts from this branch point"): beside each 95% interval, the simultaneous one
    # over all groups (Bonferroni, level 1 - 0.05 / groups), which holds for the whole family at once
    family = 1 - 0.05 / max(len(groups), 1)
    if len(groups) > 1:
        print(f"{len(groups)} groups: [simultaneous] intervals at {family:.4f} each hold together at 95%")
    for name, runs in groups.items():
        diffs = [after - before for _, (_, before, after, _) in runs]
        lift = float(np.mean([d.mean() for d in diffs]))
        (lo, hi), (slo, shi) = two_stage_bootstrap(diffs, args.reps, args.seed, (0.95, family))
        before = float(np.mean([b.mean() for _, (_, b, _, _) in runs]))
        after = float(np.mean([a.mean() for _, (_, _, a, _) in runs]))
        print(
            f"## {name}: {len(runs)} runs, {len(diffs[0])} held-out goals each: branch point {before:.3f} -> "
            f"last evaluation {after:.3f}, lift {lift:+.3f} [{lo:+.3f}, {hi:+.3f}] (two-stage bootstrap 95%), "
            f"simultaneous [{slo:+.3f}, {shi:+.3f}]"
        )
        for run_name, (_goals, b, a, last) in runs:
            print(
                f"   {run_name}: step 0 {b.mean():.3f} -> step {last} {a.mean():.3f} ({(a - b).mean():+.3f})"
            )
        per_task: dict[str, list[float]] = defaultdict(list)
        for _, (goals, b, a, _) in runs:
            for g, x, y in zip(goals, b, a, strict=True):
                per_task[g[0]].append(y - x)
        print("   per task (mean paired difference over runs and goals):")
        for task, d in sorted(per_task.items()):
            print(f"     {task:<28} {np.mean(d):+.3f}  (n={len(d)})")
        rows.append(
            {
                "arm": name,
                "runs": len(runs),
                "goals": len(diffs[0]),
                "branch_success": round(before, 4),
                "last_success": round(after, 4),
                "lift": round(lift, 4),
                "lo": round(lo, 4),
                "hi": round(hi, 4),
                "simultaneous_lo": round(slo, 4),
                "simultaneous_hi": round(shi, 4),
            }
        )
    if args.csv and rows:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        with args.csv.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)


if __name__ == "__main__":
    main()
