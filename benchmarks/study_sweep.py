"""Issue 16's study through the product, as a user runs it: `agentsweep launch` (SFT branch points + a random-search
RL sweep over sweep/spaces/study-cpu.yaml), `agentsweep export`, `agentsweep report --curves ... --arm params.arm
--baseline sft`; then the runs and curves tables are copied to benchmarks/study/sweep/ with COMMANDS.md (the
exact commands, wall time per stage, FLOPs, the machine).

    # the study (hours on 2 cores: do not start it beside other long jobs)
    nice -n 19 /work/wt/venv-run python benchmarks/study_sweep.py --out /work/study/sweep
    # after an interruption (Ctrl-C, a lost machine): continue the same sweep, then export and report
    nice -n 19 /work/wt/venv-run python benchmarks/study_sweep.py --out /work/study/sweep --resume
    # the tables of the trials finished so far (after a Ctrl-C; --resume later runs the rest)
    nice -n 19 /work/wt/venv-run python benchmarks/study_sweep.py --out /work/study/sweep --export-only
    # the pipeline in a few minutes (2 tasks, 2 trials of 1 update, batch 16); ships into OUT/shipped/
    nice -n 19 /work/wt/venv-run python benchmarks/study_sweep.py --out /tmp/study-smoke --smoke

The fixed options are benchmarks/study/options.yaml; `--updates`, `--sft-epochs` and `--branch-every` set its
VARIABLE values, and the result is written to OUT/options.yaml (the file `launch` reads). The commands are
`python -m sweep.cli ...` (the `agentsweep` console script's module), each in a subprocess with its log in OUT.
The report's target is the SFT-only peak and its flags those of `agentsweep demo` (`sweep.demo.report_command`).
notebooks/study.ipynb walks through the shipped tables; it also reads an optional `trajectories.jsonl` from the
study directory, which this script does not write.

The full size (SIZES["full"]): 72 trials (18 per stratum: the base student and 3 SFT branch points, drawn in
balanced blocks) of 4 updates of 32 or 64 episodes, against the 10 effects-model coefficients per stratum of
sweep/spaces/study-cpu.yaml. Measured on the shared 2-core box with 2 trials at a time: 56 trials (14 blocks) took
6,708 s including the SFT branch points (about 2 min per trial), so all 72 take about 2.4 h; benchmarks/RESULTS.md,
"The study sweep", and benchmarks/study/sweep/COMMANDS.md have the stages, FLOPs and load averages.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OPTIONS = REPO / "benchmarks" / "study" / "options.yaml"
SHIP = REPO / "benchmarks" / "study" / "sweep"
SPACE = "study-cpu"
BUILDER = "sweep.branch_points:sft_branch_points"


@dataclass(frozen=True)
class Size:
    """What the wall time is traded against."""

    trials: int
    """RL trials. study-cpu varies 9 knobs of two values each: 10 effects-model coefficients per branch point
    (intercept + 1 per knob), so each of the 4 strata needs more runs than that for residual degrees of freedom."""
    updates: int
    """GRPO updates per trial (evaluations at step 0, half-way and after the last)."""
    sft_epochs: float
    """SFT epochs over the teacher's traces."""
    branch_every: int
    """An SFT branch point every this many SFT updates (and one at the end)."""
    tasks: int | None = None
    """Only the first this many of the options' tasks (None: all)."""
    batch_size: int | None = None
    """Fix the space's batch_size at this value (None: the space's values)."""


SIZES = {
    # ~24 epochs x ~100 teacher steps / batch 8 = ~300 SFT updates: branch points at 120, 240 and the end
    "full": Size(trials=72, updates=4, sft_epochs=24.0, branch_every=120),
    # the pipeline, not a result: 2 easy tasks, SFT of a few updates, 2 trials of 1 update of 2 goals x G=8
    "smoke": Size(trials=2, updates=1, sft_epochs=2.0, branch_every=4, tasks=2, batch_size=16),
}


def study_options(base: dict, size: Size) -> dict:
    """benchmarks/study/options.yaml with the size's VARIABLE values set (a new dict)."""
    options = json.loads(json.dumps(base))  # a deep copy of plain YAML data
    rl, teacher, student = options["rl"], options["sft"]["teacher"], options["sft"]["student"]
    rl["num_updates"] = size.updates
    rl["eval_every"] = max(1, size.updates // 2)
    student["num_epochs"] = float(size.sft_epochs)
    student["checkpoint_every_steps"] = size.branch_every
    if size.tasks is not None:
        rl["tasks"] = rl["tasks"][: size.tasks]
        teacher["tasks"] = teacher["tasks"][: size.tasks]
    return options


def space_arg(out: Path, size: Size) -> str:
    """The space `launch` gets: the packaged study-cpu, or (a fixed batch size) a copy of it in OUT."""
    if size.batch_size is None:
        return SPACE
    import yaml

    from sweep.space import space_path

    data = yaml.safe_load(space_path(SPACE).read_text())
    data["name"] = f"{SPACE}-smoke"
    data["parameters"]["batch_size"]["values"] = [size.batch_size]
    path = out / "space.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


class Stages:
    """Runs the commands (cwd: the repository), logs each to OUT/<name>.log, times them and appends a record to
    OUT/stages.jsonl (kept across a launch and its resumes: COMMANDS.md lists every stage that ran)."""

    def __init__(self, out: Path):
        self.out = out
        self.history = out / "stages.jsonl"
        self.script = shlex.join(["python", "benchmarks/study_sweep.py", *sys.argv[1:]])
        path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        self.env = {**os.environ, "PYTHONPATH": path}

    def run(self, name: str, cmd: list[str]) -> str:
        log = self.out / f"{name}.log"
        print(f"[{time.strftime('%H:%M:%S')}] {name}: {shown(cmd)}  (log: {log})", flush=True)
        record = {
            "stage": name,
            "command": shown(cmd),
            "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        }
        record.update(
            script=self.script, commit=git_commit(), loadavg_start=machine()["loadavg"], t0=time.time()
        )
        t0 = time.perf_counter()
        returncode = None
        try:
            with log.open("w") as f:
                proc = subprocess.run(
                    cmd, cwd=REPO, env=self.env, stdout=subprocess.PIPE, stderr=f, text=True
                )
                f.write(proc.stdout)
            returncode = proc.returncode
        finally:  # an interrupted stage (Ctrl-C) is recorded too
            record.update(wall_s=round(time.perf_counter() - t0, 1), returncode=returncode)
            record.update(loadavg_end=machine()["loadavg"])
            with self.history.open("a") as f:
                f.write(json.dumps(record) + "\n")
        print(f"    {record['wall_s']:.0f} s", flush=True)
        if returncode != 0:
            tail = log.read_text().strip().splitlines()[-15:]
            raise SystemExit(f"{name} failed (exit {returncode}); the end of {log}:\n" + "\n".join(tail))
        return proc.stdout

    def records(self) -> list[dict]:
        return [json.loads(line) for line in self.history.read_text().splitlines() if line.strip()]


def shown(cmd: list[str]) -> str:
    """A command as COMMANDS.md shows it: the interpreter as `python`."""
    return shlex.join(["python", *cmd[1:]] if cmd and cmd[0] == sys.executable else cmd)


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "sweep.cli", *args]


def sweep_dirs(out: Path) -> list[Path]:
    return sorted(p.parent for p in out.glob("*/sweep.json"))


def arm_counts(runs_path: Path) -> dict[str, int]:
    import pandas as pd

    from sweep.arms import ARM_COLUMN

    runs = pd.read_parquet(runs_path)
    return {str(k): int(v) for k, v in runs.groupby(ARM_COLUMN)["run_id"].count().items()}


def machine() -> dict[str, str]:
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").is_file() else ["?"] * 3
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip() or str(os.cpu_count())
    return {"nproc": nproc, "loadavg": " ".join(load)}


def git_commit() -> str:
    proc = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True).stdout
    return proc.stdout.strip() + (" (with uncommitted changes)" if dirty.strip() else "")


def commands_md(stages: Stages, *, sweep: Path, flops: dict, arms: dict, status: dict) -> str:
    records = stages.records()
    sweep_s = sum(r["wall_s"] for r in records if r["stage"] in ("launch", "resume"))
    lines = [
        "# The study sweep: how these tables were made",
        "",
        f"- sweep directory: `{sweep}`; its fixed options: `{stages.out / 'options.yaml'}` "
        "(benchmarks/study/options.yaml with the script's sizes, see `launch` below)",
        "- runs per arm (params.arm): " + ", ".join(f"{k} {v}" for k, v in arms.items()),
        f"- trials by state: {status.get('trials_by_state')}",
        f"- FLOPs (`sweep.export.study_flops`): SFT branch points (teacher + SFT, once) {flops['sft']:.4g}, RL "
        f"updates {flops['rl']:.4g}, evaluations {flops['eval']:.4g}; total {flops['total']:.4g} "
        f"(`agentsweep status`: {status.get('flops_spent', float('nan')):.4g} spent, SFT + RL without the "
        "evaluations)",
        f"- wall time of the sweep (launch and resumes, SFT branch points included): {sweep_s:.0f} s",
        f"- machine: `nproc` {machine()['nproc']}; the load average (1, 5, 15 min) at each stage's start and end "
        "is in the table",
        "",
        "## Every stage that ran (cwd: the repository root; `python -m sweep.cli` is `agentsweep`)",
        "",
        "| started | stage | wall time | exit | load average start / end | commit | command |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in records:
        lines.append(
            f"| {r['started']} | {r['stage']} | {r['wall_s']:.0f} s | {r['returncode']} | {r['loadavg_start']} / "
            f"{r['loadavg_end']} | {r['commit']} | `{r['command']}` |"
        )
    lines += ["", "The script's invocations:", ""]
    lines += [f"- `{s}`" for s in dict.fromkeys(r["script"] for r in records)]
    manifests = [m.stat().st_mtime for m in stages.out.glob("branch_points/*/manifest.json")]
    for r in records:
        built = [m - r["t0"] for m in manifests if r["stage"] == "launch" and 0 < m - r["t0"] <= r["wall_s"]]
        if built:
            lines += ["", f"The SFT branch points were built in the first {max(built):.0f} s of the launch "
                      f"of {r['started']} (their manifest's time)."]  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="sizes: " + "; ".join(f"{k}: {v}" for k, v in SIZES.items()),
    )
    ap.add_argument(
        "--out", type=Path, required=True, help="where the sweep, MLflow store, logs and report go"
    )
    ap.add_argument("--trials", type=int, default=None, help="RL trials (default: the size's)")
    ap.add_argument("--updates", type=int, default=None, help="GRPO updates per trial (default: the size's)")
    ap.add_argument("--sft-epochs", type=float, default=None, help="SFT epochs (default: the size's)")
    ap.add_argument("--branch-every", type=int, default=None, help="SFT updates between branch points")
    ap.add_argument("--seed", type=int, default=0, help="the sweep's seed (searcher and trials)")
    ap.add_argument("--smoke", action="store_true", help="the pipeline in a few minutes (SIZES['smoke'])")
    ap.add_argument("--resume", action="store_true", help="`agentsweep resume` the sweep in OUT, then export")
    ap.add_argument(
        "--export-only",
        action="store_true",
        help="export, report and ship the sweep in OUT as it stands (its finished trials; an interrupted sweep "
        "stays resumable with --resume)",
    )
    ap.add_argument(
        "--ship",
        type=Path,
        default=None,
        help=f"where the tables go (default {SHIP}; with --smoke OUT/shipped)",
    )
    args = ap.parse_args(argv)
    size = SIZES["smoke" if args.smoke else "full"]
    given = {"trials": args.trials, "updates": args.updates, "sft_epochs": args.sft_epochs}
    given["branch_every"] = args.branch_every
    size = replace(size, **{k: v for k, v in given.items() if v is not None})
    if size.trials < 1 or size.updates < 1 or size.sft_epochs <= 0 or size.branch_every < 1:
        ap.error(f"{size}: trials, updates and branch_every must be >= 1, sft_epochs > 0")
    args.out = args.out.resolve()
    ship = (args.ship or (args.out / "shipped" if args.smoke else SHIP)).resolve()
    sys.path.insert(0, str(REPO))
    import yaml

    from sweep.demo import report_command

    args.out.mkdir(parents=True, exist_ok=True)
    stages = Stages(args.out)
    existing = sweep_dirs(args.out)
    if args.resume and args.export_only:
        ap.error("--resume and --export-only: pick one (resume runs the rest of the sweep, then exports)")
    if args.resume or args.export_only:
        if len(existing) != 1:
            raise SystemExit(
                f"--resume and --export-only need exactly one sweep directory in {args.out}, found {[str(p) for p in existing]}: "
                "pass the --out of the sweep to continue, or run without --resume to launch one (a launch stopped "
                "while building the SFT branch points leaves none; launching again continues the SFT)"
            )
        sweep = existing[0]
        if args.resume:
            stages.run("resume", cli("resume", str(sweep)))
    else:
        if existing:
            raise SystemExit(
                f"{args.out} already holds the sweep {existing[0]}: add --resume to continue it, or pass a new --out"
            )
        options = study_options(yaml.safe_load(OPTIONS.read_text()), size)
        options_path = args.out / "options.yaml"
        options_path.write_text(yaml.safe_dump(options, sort_keys=False))
        launch = cli(
            "launch", space_arg(args.out, size), "--out", str(args.out), "--branch-builder", BUILDER,
            "--options", str(options_path), "--trials", str(size.trials), "--seed", str(args.seed),
        )  # fmt: skip
        stages.run("launch", launch)
        (sweep,) = sweep_dirs(args.out)
    runs = args.out / "runs.parquet"
    stages.run("export", cli("export", str(sweep), "-o", str(runs)))
    curves = runs.with_name("runs.curves.parquet")
    stages.run("report", report_command(runs, curves, args.out / "report"))
    printed = stages.run("status", cli("-q", "status", str(sweep), "--json"))
    status = json.loads(printed[printed.index("{") :])
    ship.mkdir(parents=True, exist_ok=True)
    for path in (runs, curves):
        shutil.copy2(path, ship / path.name)
    import pandas as pd

    from sweep.export import study_flops

    flops = study_flops(pd.read_parquet(runs), pd.read_parquet(curves))
    arms = arm_counts(runs)
    text = commands_md(stages, sweep=sweep, flops=flops, arms=arms, status=status)
    (ship / "COMMANDS.md").write_text(text)
    print(text)
    print(f"tables: {ship}; report: {args.out / 'report' / 'report.html'}")
    print(f"the notebook on them: AGENTSWEEP_STUDY_DIR={ship} jupyter execute notebooks/study.ipynb")
    return 0


if __name__ == "__main__":
    sys.exit(main())
