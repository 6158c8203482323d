"""Issue 16 study recipe, stages 2-4: SFT branch points of the pretrained student on MiniWoB++ scripted traces, a
held-out lookup probe, held-out success in the browser, and GRPO from a branch point with a per-update wall split.

Stages (each resumable / skippable; outputs under --out, small tables under benchmarks/study/):

    # 1. SFT with branch points every --every updates (student: an `agentsweep train pretrain` model dir or `tiny-llama`)
    /work/wt/venv-run python benchmarks/study_recipe.py sft --student /tmp/study/student/snap_001500 \\
        --traces /tmp/study/teacher/train --out /tmp/study/sftP --steps 300 --every 50 --lr 1e-3
    # 2. greedy probe on the held-out teacher steps (seeds never trained on): does the student write the
    #    teacher's action (right bid, right copied text)? per task, Wilson 95% intervals
    /work/wt/venv-run python benchmarks/study_recipe.py probe --traces /tmp/study/teacher/heldout \\
        --models /tmp/study/sftP/branch_* --csv benchmarks/study/probe.csv --tag pretrained
    # 3. held-out goal success in the browser (one episode per goal), Wilson 95% interval
    /work/wt/venv-run python benchmarks/study_recipe.py eval --models /tmp/study/sftP/branch_step000150 \\
        --seeds 0-2,1000-1009
    # 4. GRPO from a branch point (the study's recommended knobs unless changed), last-evaluation lift with a
    #    paired bootstrap interval, per-update wall split (generation, env, update, evaluation)
    /work/wt/venv-run python benchmarks/study_recipe.py rl --branch /tmp/study/sftP/branch_step000150 \\
        --out /tmp/study/rl0 --seed 0 --updates 20

The full protocol (a later session, unattended): `rl` over seeds 0-2 from >= 2 branch points; each run writes
`<out>/rl_summary.json`, and a rerun of the same command resumes from its last checkpoint.
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import logging
import math
import time
from pathlib import Path

from envs.registry import parse_seeds

TASKS = (
    "click-test,click-test-2,click-link,click-dialog,click-dialog-2,click-tab,enter-text,login-user,"
    "choose-list,focus-text-2"
)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


def append_csv(path: Path, rows: list[dict]) -> None:
    """Append `rows` to the CSV at `path` (header written when the file is new)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.is_file()
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        if new:
            w.writeheader()
        w.writerows(rows)


def _setup(threads: int) -> None:
    import torch
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(threads)
    hf_logging.disable_progress_bar()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")


# ---------------------------------------------------------------- sft
def cmd_sft(args) -> None:
    from trainers.config import SFTConfig
    from trainers.sft import train_sft
    from trainers.teacher import TraceSet

    n = len(TraceSet.load(args.traces).examples)
    cfg = SFTConfig(
        traces=args.traces,
        student=args.student,
        output_dir=args.out,
        learning_rate=args.lr,
        batch_size=args.batch,
        micro_batch_size=args.batch,
        num_epochs=args.steps * args.batch / n,
        warmup_ratio=0.05,
        checkpoint_every_steps=args.every,
        max_seq_len=1024,
        seed=args.seed,
        cpu_threads=args.threads,
    )
    t0 = time.perf_counter()
    branches = train_sft(cfg)
    wall = time.perf_counter() - t0
    for b in branches:
        print(f"branch step {b.step}: {b.flops:.3e} FLOPs  {b.path}")
    print(f"SFT {args.steps} steps of {args.batch} on {n} examples: {wall:.0f} s")


# ---------------------------------------------------------------- probe
def _action_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def cmd_probe(args) -> None:
    """Greedy completions on the held-out teacher steps; a step is right when its action line is the teacher's."""
    import torch

    from envs.protocol import Prompt
    from trainers.backends import HFPolicy
    from trainers.models import load_student
    from trainers.teacher import TraceSet

    examples = TraceSet.load(args.traces).examples
    prompts = [Prompt(messages=tuple(e.messages), observation={}, task=e.task, seed=e.seed) for e in examples]
    models = sorted({m for pat in args.models for m in (glob.glob(pat) or [pat])})
    rows = []
    for mdir in models:
        model, tok = load_student(mdir)
        t0 = time.perf_counter()
        with torch.no_grad():
            comps = HFPolicy(model, tok, micro_batch_size=32).generate(
                prompts, temperature=0.0, max_new_tokens=args.max_new_tokens
            )
        wall = time.perf_counter() - t0
        per: dict[str, list[int]] = {}
        samples: dict[str, str] = {}
        for e, c in zip(examples, comps, strict=True):
            ok = int(_action_line(c.text) == _action_line(e.completion))
            per.setdefault(e.task, []).append(ok)
            if not ok and e.task not in samples:
                samples[e.task] = f"teacher {e.completion!r} student {c.text!r}"
        allk = sum(sum(v) for v in per.values())
        alln = sum(len(v) for v in per.values())
        lo, hi = wilson(allk, alln)
        print(
            f"## {mdir}: held-out steps right {allk}/{alln} = {allk / alln:.3f} [{lo:.3f}, {hi:.3f}] ({wall:.0f} s)"
        )
        for task, v in sorted(per.items()):
            lo, hi = wilson(sum(v), len(v))
            print(
                f"   {task:<28} {sum(v):>3}/{len(v):<3} {sum(v) / len(v):.2f} [{lo:.2f}, {hi:.2f}]"
                + (f"   e.g. {samples[task][:150]}" if task in samples else "")
            )
            rows.append({"tag": args.tag, "model": mdir, "task": task, "right": sum(v), "steps": len(v)})
        rows.append({"tag": args.tag, "model": mdir, "task": "ALL", "right": allk, "steps": alln})
    if args.csv:
        append_csv(Path(args.csv), rows)


# ---------------------------------------------------------------- env evaluation
def _rl_config(args, **over):
    from trainers.config import RLConfig

    tasks = tuple(f"miniwob.{t}" for t in args.tasks.split(","))
    base = dict(
        student=args.student,
        env="miniwob",
        tasks=tasks,
        batch_size=args.batch_size,
        group_size=args.group_size,
        num_updates=args.updates,
        eval_every=args.eval_every,
        learning_rate=args.lr,
        temperature=args.temperature,
        max_new_tokens=args.max_new_tokens,
        max_seq_len=1024,
        max_steps=args.max_steps,
        gamma=args.gamma,
        output_dir=args.out,
        seed=args.seed,
        micro_batch_size=16,
        cpu_threads=args.threads,
        loss_aggregation=args.loss_aggregation,
        negative_advantage_weight=args.negative_advantage_weight,
        credit_failed_steps=args.credit_failed_steps,
        env_options={"observation": "compact", "max_obs_tokens": 600},
    )
    base.update(over)
    return RLConfig(**base)


def _runner(args):
    from envs.runner import open_runner

    return open_runner(
        "miniwob", workers=1, max_steps=args.max_steps, observation="compact", max_obs_tokens=600
    )


def _episodes(runner, policy, goals, cfg, seed: int):
    import torch

    from trainers.envio import play_episodes

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return play_episodes(runner, policy, list(goals), cfg)


def cmd_eval(args) -> None:
    """Held-out success of each model, `--episodes` sampled episodes per goal; with `--csv`, per-goal mean success
    (the layout of `rl_evals.csv`: run, step, split, task, seed, success, steps) for `study_lift.py --evals`."""
    from trainers.backends import HFPolicy
    from trainers.models import load_student

    tasks = [f"miniwob.{t}" for t in args.tasks.split(",")]
    goals = [(t, s) for t in tasks for s in parse_seeds(args.seeds)]
    steps = [int(x) for x in args.steps.split(",")] if args.steps else list(range(len(args.models)))
    if len(steps) != len(args.models):
        raise SystemExit(
            f"--steps gives {len(steps)} steps for {len(args.models)} models; give one per model"
        )
    labels = args.labels.split(",") if args.trajectories else []
    if args.trajectories and len(labels) != len(args.models):
        raise SystemExit(
            f"--labels gives {len(labels)} labels for {len(args.models)} models; give one per model"
        )
    cfg = _rl_config(args)
    runner = _runner(args)
    rows: list[dict] = []
    episodes: list[dict] = []
    rows_models: list[str] = []  # the models done so far (indexes --labels)
    try:
        for mdir, step in zip(args.models, steps, strict=True):
            model, tok = load_student(mdir)
            t0 = time.perf_counter()
            per_goal: dict[tuple[str, int], list[int]] = {}
            lengths: dict[tuple[str, int], list[int]] = {}
            for e in range(args.episodes):  # same sampling seeds for every model: paired by goal and episode
                trajs = _episodes(runner, HFPolicy(model, tok), goals, cfg, args.seed * 1000 + e)
                for g, t in zip(goals, trajs, strict=True):
                    if not t.env_error:
                        per_goal.setdefault(g, []).append(int(t.success))
                        lengths.setdefault(g, []).append(len(t.steps))
                        if labels:
                            episodes.append(_episode_record(labels[len(rows_models)], step, e, t))
            ok = [x for v in per_goal.values() for x in v]
            lo, hi = wilson(sum(ok), len(ok))
            print(
                f"## {mdir}: held-out goal success {sum(ok)}/{len(ok)} = {sum(ok) / max(1, len(ok)):.3f} "
                f"[{lo:.3f}, {hi:.3f}] at T={cfg.temperature}, {args.episodes} episode(s) per goal "
                f"({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
            per_task: dict[str, list[int]] = {}
            for (task, _), v in per_goal.items():
                per_task.setdefault(task, []).extend(v)
            print(
                "   "
                + ", ".join(f"{k.removeprefix('miniwob.')} {sum(v)}/{len(v)}" for k, v in per_task.items())
            )
            rows += [
                {"run": args.run or Path(args.models[0]).name, "step": step, "split": "heldout_goals",
                 "task": g[0], "seed": g[1], "success": round(sum(v) / len(v), 4),
                 "steps": round(sum(lengths[g]) / len(v), 2)}
                for g, v in per_goal.items()
            ]  # fmt: skip
            rows_models.append(mdir)
    finally:
        runner.close()
    if args.csv:
        append_csv(Path(args.csv), rows)
    if args.trajectories:
        with Path(args.trajectories).open("a") as f:
            f.writelines(json.dumps(r) + "\n" for r in episodes)
        print(f"{len(episodes)} episodes -> {args.trajectories}")


def _episode_record(label: str, step: int, episode: int, t) -> dict:
    """One episode as notebooks/study.ipynb's trajectories.jsonl holds it: who played it, the goal, the outcome
    and each step's parsed action (or the raw completion, cut, when it did not parse)."""
    actions = [
        s.action if s.action is not None else f"(unparsed) {s.completion.text[:60]!r}" for s in t.steps
    ]
    return {"model": label, "step": step, "episode": episode, "task": t.task, "seed": t.seed, "goal": t.goal,
            "success": bool(t.success), "actions": actions}  # fmt: skip


# ---------------------------------------------------------------- RL (the wall split comes from train_rl's history)
def cmd_rl(args) -> None:
    from trainers.rl import train_rl

    tasks = [f"miniwob.{t}" for t in args.tasks.split(",")]
    train = [(t, s) for t in tasks for s in parse_seeds(args.train_seeds)]
    heldout = [(t, s) for t in tasks for s in parse_seeds(args.seeds)]
    out = Path(args.out)
    resume = None
    ckpts = sorted(out.glob("ckpt_*"))
    if ckpts and not (out / "rl_summary.json").is_file():
        resume = str(ckpts[-1])
    cfg = _rl_config(args, init_checkpoint=args.branch, sft_flops=args.branch_flops, resume_from=resume)
    runner = _runner(args)
    marks: list[dict] = []
    t_start = time.perf_counter()

    def report(metrics, checkpoint=None):
        marks.append(
            {
                **{k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))},
                "since_start_s": round(time.perf_counter() - t_start, 1),
            }
        )
        print(json.dumps(marks[-1]), flush=True)

    try:
        res = train_rl(
            cfg,
            report,
            runner=runner,
            goal_splits={"train": train, "heldout_goals": heldout, "heldout_tasks": []},
        )
    finally:
        runner.close()
    wall = time.perf_counter() - t_start
    first, last = res.history[0], res.history[-1]
    n = len(heldout)
    k0, k1 = round(first["heldout_goal_success"] * n), round(last["heldout_goal_success"] * n)
    from trainers.rl import WALL_SPLIT_KEYS

    t = {k: sum(h[k] for h in res.history) for k in (*WALL_SPLIT_KEYS, "eval_s")}
    other_s = wall - sum(t.values())
    summary = {
        "branch": args.branch,
        "seed": args.seed,
        "heldout_goals": n,
        "updates": int(last["step"]),
        "branch_success": first["heldout_goal_success"],
        "last_success": last["heldout_goal_success"],
        "lift_last": last["heldout_goal_success"] - first["heldout_goal_success"],
        "branch_wilson": wilson(k0, n),
        "last_wilson": wilson(k1, n),
        "chosen": res.scores.get("heldout_goal_success"),
        "chosen_step": res.scores.get("step"),
        "wall_s": wall,
        "wall_split_s": {**t, "other (model load, checkpoints, start)": other_s},
        "curve": [(h["step"], h["heldout_goal_success"], h.get("train_return")) for h in res.history],
        "config": {k: str(v) for k, v in vars(args).items()},
    }
    (out / "rl_summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: v for k, v in summary.items() if k not in ("config",)}, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--threads", type=int, default=1)
    common.add_argument("--tasks", default=TASKS)
    common.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("sft", parents=[common])
    p.add_argument("--student", required=True)
    p.add_argument("--traces", default="/tmp/study/teacher/train")
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--every", type=int, default=50)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)

    p = sub.add_parser("probe", parents=[common])
    p.add_argument("--traces", default="/tmp/study/teacher/heldout")
    p.add_argument("--models", nargs="+", required=True)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--csv", default=None)
    p.add_argument("--tag", default="")

    for name in ("eval", "rl"):
        p = sub.add_parser(name, parents=[common])
        p.add_argument(
            "--student", default="tiny-llama", help="only names the run; weights come from --branch/--models"
        )
        p.add_argument("--seeds", default="0-2,1000-1009", help="held-out seeds (never trained on)")
        p.add_argument("--temperature", type=float, default=0.25, help="the study's best: 0.25")
        p.add_argument("--max-new-tokens", type=int, default=32)
        p.add_argument("--max-steps", type=int, default=6)
        p.add_argument("--batch-size", type=int, default=32)
        p.add_argument("--group-size", type=int, default=8)
        p.add_argument("--updates", type=int, default=20)
        p.add_argument("--eval-every", type=int, default=10)
        p.add_argument("--lr", type=float, default=1e-4)
        p.add_argument("--loss-aggregation", default="sequence")
        p.add_argument(
            "--gamma",
            type=float,
            default=0.9,
            help="discount (the study's 0.9); below 1 a failure's -gamma**steps rewards failing slowly",
        )
        p.add_argument(
            "--negative-advantage-weight",
            type=float,
            default=1.0,
            help="RLConfig.negative_advantage_weight: 1 the study's update, 0 reinforce only above-mean episodes",
        )
        p.add_argument(
            "--no-credit-failed-steps",
            dest="credit_failed_steps",
            action="store_false",
            help="RLConfig.credit_failed_steps=False: a failed (unparsed, refused) step gets no positive advantage",
        )
        p.add_argument("--out", default="/tmp/study/rl")
    p = sub.choices["eval"]
    p.add_argument("--models", nargs="+", required=True, help="the branch point first, then RL checkpoints")
    p.add_argument("--steps", default=None, help="comma-separated step of each model (default 0, 1, ...)")
    p.add_argument("--episodes", type=int, default=1, help="sampled episodes per goal")
    p.add_argument("--csv", default=None, help="append per-goal mean success here (rl_evals.csv's layout)")
    p.add_argument("--run", default=None, help="the run column of --csv (default: the first model's name)")
    p.add_argument(
        "--trajectories", default=None, help="append every episode (model, task, seed, success, actions)"
    )
    p.add_argument("--labels", default="branch,rl", help="with --trajectories: each model's `model` field")
    p = sub.choices["rl"]
    p.add_argument("--branch", required=True)
    p.add_argument("--branch-flops", type=float, default=0.0)
    p.add_argument("--train-seeds", default="3-39")
    args = ap.parse_args()
    _setup(args.threads)
    {"sft": cmd_sft, "probe": cmd_probe, "eval": cmd_eval, "rl": cmd_rl}[args.cmd](args)


if __name__ == "__main__":
    main()
