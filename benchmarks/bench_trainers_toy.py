"""Learning, not just running, on the toy env: scripted teacher -> short SFT (a weak branch point) -> GRPO.

Side by side, same seeds, same held-out goals: the untrained student, every SFT branch point, the one RL starts
from (with `--branch-below X`: the last branch point whose held-out success is under X, i.e. the strongest weak
one), and the RL run's chosen checkpoint (rolling mean, window 3, of held-out-goal success). Prints success rates,
ratios, FLOPs and wall time. The held-out goals are seeds the teacher, SFT and RL never saw (train: seeds 1000,
1001, ... of the toy tasks; held-out: seeds 0-39 of the same tasks).

The issue's target run (0.175 -> 0.85 held-out success, benchmarks/RESULTS.md, trainers):

    AGENTSWEEP_CACHE=/tmp/agc .venv/bin/python benchmarks/bench_trainers_toy.py --bids stable --sft-steps 300 \
        --sft-every 20 --sft-lr 3e-3 --branch-below 0.2 --rl-updates 400 --batch-size 64 --group-size 8 \
        --lr 7e-4 --temperature 1.0 --eval-every 10 --micro-batch 64

Others:

    AGENTSWEEP_CACHE=/tmp/agc .venv/bin/python benchmarks/bench_trainers_toy.py --tasks click-button
    AGENTSWEEP_CACHE=/tmp/agc .venv/bin/python benchmarks/bench_trainers_toy.py --student smollm2-135m \
        --sft-steps 12 --sft-every 2 --sft-lr 5e-5 --branch-below 0.2 --rl-updates 16 --batch-size 16 \
        --group-size 4 --lr 2e-5 --temperature 0.7
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from pathlib import Path
from typing import get_args

from trainers.grpo import LossAggregation  # numpy only: --help stays fast


def _drop_reasoning(traces: Path) -> None:
    import json

    path = traces / "examples.jsonl" if traces.is_dir() else traces
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for r in rows:
        r["completion"] = r["completion"].strip().splitlines()[-1]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default="click-button", help="comma-separated toy training tasks")
    ap.add_argument("--out", default="/tmp/bench_trainers_toy")
    ap.add_argument(
        "--student", default="tiny-llama", help="tiny-llama or smollm2-135m (or a model directory)"
    )
    ap.add_argument("--sft-steps", type=int, default=40, help="SFT updates of the weak branch point")
    ap.add_argument(
        "--sft-every", type=int, default=None, help="save a branch point every this many SFT updates"
    )
    ap.add_argument("--sft-lr", type=float, default=3e-3)
    ap.add_argument("--sft-batch", type=int, default=8)
    ap.add_argument(
        "--branch-below",
        type=float,
        default=None,
        help="start RL from the last branch point whose held-out success is under this",
    )
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--rl-updates", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--group-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--micro-batch", type=int, default=32, help="RL sequences per forward/backward")
    ap.add_argument("--max-new-tokens", type=int, default=40)
    ap.add_argument(
        "--loss-aggregation",
        choices=get_args(LossAggregation),
        default="token",
        help="RL loss average: over the batch's tokens (the study) or per completion",
    )
    ap.add_argument("--warmup-updates", type=int, default=0, help="RL learning-rate warm-up (updates)")
    ap.add_argument(
        "--resume-from",
        help="an RL checkpoint of this command's run (with --branch): continue it "
        "to --rl-updates with the same numbers as an uninterrupted run",
    )
    ap.add_argument("--max-steps", type=int, default=2, help="agent steps per episode")
    ap.add_argument("--eval-every", type=int, default=5)
    ap.add_argument(
        "--branch", default=None, help="reuse this SFT branch point directory (skips teacher + SFT)"
    )
    ap.add_argument(
        "--branch-flops", type=float, default=0.0, help="its FLOPs (teacher + SFT), with --branch"
    )
    ap.add_argument(
        "--distractors", type=int, default=3, help="extra elements per page (random click: 1/(1+d))"
    )
    ap.add_argument(
        "--bids", default="random", help="toy bids: random per page (read the page) or stable per label"
    )
    ap.add_argument("--action-only", action="store_true", help="SFT on the teacher's action line only")
    ap.add_argument("--heldout-goals", type=int, default=40, help="held-out goals (seeds 0, 1, ...) per task")
    ap.add_argument(
        "--train-goals", type=int, default=400, help="training goals (seeds 1000, 1001, ...) per task"
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import torch
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(args.threads)  # tiny model: one intra-op thread is fastest, more only contend

    hf_logging.disable_progress_bar()

    from envs.registry import goals
    from envs.runner import open_runner
    from trainers.backends import HFPolicy
    from trainers.config import RLConfig, SFTConfig, TeacherConfig
    from trainers.models import load_student
    from trainers.rl import evaluate, train_rl
    from trainers.sft import BranchPoint, train_sft
    from trainers.teacher import collect_teacher_traces

    out = Path(args.out)
    tasks = tuple(f"toy.{t}" for t in args.tasks.split(","))
    goals("toy.train", tasks=tasks)  # checks the names
    train = [(t, s) for t in tasks for s in range(1000, 1000 + args.train_goals)]
    heldout = [
        (t, s) for t in tasks for s in range(args.heldout_goals)
    ]  # never played by the teacher, SFT or RL
    splits = {"train": train, "heldout_goals": heldout, "heldout_tasks": []}
    t0 = time.perf_counter()
    runner = open_runner(
        "toy", workers=1, max_steps=args.max_steps, num_distractors=args.distractors, bids=args.bids
    )
    if args.branch:
        branches = [BranchPoint(args.branch, args.branch_flops, -1)]
        num_examples, t_teacher, t_sft = 0, 0.0, 0.0
    else:
        traces = collect_teacher_traces(
            TeacherConfig(env="toy", output_dir=str(out / "teacher")), runner=runner, goals=train
        )
        t_teacher = time.perf_counter() - t0
        if args.action_only:
            _drop_reasoning(Path(traces.path))
        num_examples = len(traces.examples)
        sft_cfg = SFTConfig(
            traces=traces.path,
            student=args.student,
            output_dir=str(out / "sft"),
            learning_rate=args.sft_lr,
            batch_size=args.sft_batch,
            micro_batch_size=args.sft_batch,
            num_epochs=args.sft_steps * args.sft_batch / num_examples,
            warmup_ratio=0.0,
            checkpoint_every_steps=args.sft_every,
            seed=args.seed,
            cpu_threads=args.threads,
        )
        branches = train_sft(sft_cfg)
        t_sft = time.perf_counter() - t0 - t_teacher

    rl_cfg = RLConfig(
        student=args.student,
        env="toy",
        batch_size=args.batch_size,
        group_size=args.group_size,
        num_updates=args.rl_updates,
        eval_every=args.eval_every,
        learning_rate=args.lr,
        temperature=args.temperature,
        max_new_tokens=args.max_new_tokens,
        max_seq_len=320,
        max_steps=args.max_steps,
        output_dir=str(out / "rl"),
        seed=args.seed,
        gamma=0.9,
        micro_batch_size=args.micro_batch,
        cpu_threads=args.threads,
        loss_aggregation=args.loss_aggregation,
        warmup_updates=args.warmup_updates,
    )
    import torch

    def score(model_dir: str) -> float:
        model, tok = load_student(model_dir)
        with torch.no_grad():
            return evaluate(runner, HFPolicy(model, tok), heldout, rl_cfg, seed=args.seed)

    untrained = score(args.student)
    branch_scores = [score(b.path) for b in branches]
    for b, sc in zip(branches, branch_scores, strict=True):
        logging.info("branch point step %d (%.3e FLOPs): held-out goal success %.3f", b.step, b.flops, sc)
    pick = len(branches) - 1
    if args.branch_below is not None:
        below = [i for i, sc in enumerate(branch_scores) if sc < args.branch_below]
        if not below:
            raise SystemExit(f"no branch point under {args.branch_below}: {branch_scores}")
        pick = below[-1]
    branch, at_branch = branches[pick], branch_scores[pick]
    rl_cfg = dataclasses.replace(
        rl_cfg, init_checkpoint=branch.path, sft_flops=branch.flops, resume_from=args.resume_from
    )
    t1 = time.perf_counter()
    result = train_rl(rl_cfg, runner=runner, goal_splits=splits)
    t_rl = time.perf_counter() - t1
    runner.close()
    print(f"## toy GRPO: tasks {','.join(tasks)}, {len(train)} train goals, {len(heldout)} held-out goals")
    if args.branch:
        print(f"branch point reused: {args.branch} ({args.branch_flops:.3e} FLOPs)")
    else:
        print(
            f"teacher: {num_examples} SFT examples in {t_teacher:.1f} s; SFT {args.sft_steps} steps in {t_sft:.1f} s"
        )
    print(f"held-out goal success, untrained {args.student:<14} {untrained:.3f}")
    print(
        "SFT branch points (step: held-out goal success): "
        + ", ".join(f"{b.step}: {sc:.3f}" for b, sc in zip(branches, branch_scores, strict=True))
    )
    print(f"held-out goal success, SFT branch point         {at_branch:.3f}  ({branch.flops:.3e} FLOPs)")
    print(
        f"held-out goal success, GRPO chosen checkpoint   {result.scores['heldout_goal_success']:.3f}  "
        f"(update {int(result.scores['step'])}, {result.scores['flops']:.3e} FLOPs)"
    )
    best = result.scores["heldout_goal_success"]
    ratio = f"{best / at_branch:.2f}" if at_branch > 0 else "undefined (branch point 0)"
    print(f"ratio RL/branch                                 {ratio}")
    print(
        "curve (update: held-out goal success, train return): "
        + ", ".join(
            f"{int(h['step'])}: {h['heldout_goal_success']:.2f}/{h['train_return']:.2f}"
            for h in result.history
        )
    )
    if args.resume_from:  # the run's own clock, which counts the time before the resume
        t_rl = result.history[-1]["wall_s"]
    print(f"RL wall {t_rl:.1f} s ({t_rl / args.rl_updates:.2f} s/update, {args.batch_size} episodes/update)")


if __name__ == "__main__":
    main()
