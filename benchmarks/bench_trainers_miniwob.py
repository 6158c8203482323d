"""MiniWoB++: SFT on scripted traces of a few tasks, side by side with the untrained student, then RL from the
branch point (does it run without collapse?).

Same held-out goals (seeds 0-2 of the chosen training tasks, never in the SFT data) and the same sampling
seed for both students. Compact observations (the element list) keep sequences short. Prints success rates,
their ratio, FLOPs and wall time per stage.

    AGENTSWEEP_CACHE=/tmp/agc .venv/bin/python benchmarks/bench_trainers_miniwob.py \
        --tasks click-test,click-test-2,click-link,click-dialog --student tiny-llama
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default="click-test,click-test-2,click-link,click-dialog")
    ap.add_argument("--student", default="tiny-llama")
    ap.add_argument("--out", default="/tmp/bench_trainers_miniwob")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--sft-epochs", type=float, default=30.0)
    ap.add_argument("--sft-lr", type=float, default=3e-3)
    ap.add_argument("--rl-updates", type=int, default=6)
    ap.add_argument("--rl-lr", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    torch.set_num_threads(1)

    from envs.registry import goals
    from envs.runner import open_runner
    from trainers.backends import HFPolicy
    from trainers.config import RLConfig, SFTConfig, TeacherConfig
    from trainers.models import load_student
    from trainers.rl import evaluate, train_rl
    from trainers.sft import train_sft
    from trainers.teacher import collect_teacher_traces

    out = Path(args.out)
    tasks = tuple(f"miniwob.{t}" for t in args.tasks.split(","))
    train = goals("miniwob.train", tasks=tasks)
    heldout = goals("miniwob.heldout_goals", tasks=tasks)
    runner = open_runner(
        "miniwob", workers=args.workers, max_steps=4, observation="compact", max_obs_tokens=600
    )
    stage: dict[str, float] = {}
    try:
        t0 = time.perf_counter()
        traces = collect_teacher_traces(
            TeacherConfig(env="miniwob", tasks=tasks, output_dir=str(out / "teacher")),
            runner=runner,
            goals=train,
        )
        stage["teacher"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        sft_cfg = SFTConfig(
            traces=traces.path,
            student=args.student,
            output_dir=str(out / "sft"),
            learning_rate=args.sft_lr,
            batch_size=8,
            micro_batch_size=8,
            num_epochs=args.sft_epochs,
            warmup_ratio=0.05,
            max_seq_len=1024,
            seed=args.seed,
            cpu_threads=1,
        )
        branch = train_sft(sft_cfg)[-1]
        stage["sft"] = time.perf_counter() - t0
        rl_cfg = RLConfig(
            student=args.student,
            init_checkpoint=branch.path,
            sft_flops=branch.flops,
            env="miniwob",
            tasks=tasks,
            batch_size=16,
            group_size=4,
            num_updates=args.rl_updates,
            eval_every=2,
            learning_rate=args.rl_lr,
            temperature=0.5,
            max_new_tokens=24,
            max_seq_len=1024,
            max_steps=4,
            output_dir=str(out / "rl"),
            seed=args.seed,
            micro_batch_size=8,
            cpu_threads=1,
        )

        def score(model_dir: str) -> float:
            model, tok = load_student(model_dir)
            return evaluate(runner, HFPolicy(model, tok), heldout, rl_cfg, seed=args.seed)

        t0 = time.perf_counter()
        untrained, at_branch = score(args.student), score(branch.path)
        stage["eval x2"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        result = train_rl(
            rl_cfg, runner=runner, goal_splits={"train": train, "heldout_goals": heldout, "heldout_tasks": []}
        )
        stage["rl"] = time.perf_counter() - t0
    finally:
        runner.close()
    print(f"## MiniWoB++ SFT -> RL: {args.student}, tasks {', '.join(tasks)}")
    print(
        f"teacher: {traces.provenance['num_successful']}/{traces.provenance['num_episodes']} scripted episodes "
        f"succeeded -> {len(traces.examples)} SFT examples"
    )
    print(f"held-out goal success ({len(heldout)} goals), untrained student  {untrained:.3f}")
    print(
        f"held-out goal success, SFT branch point                {at_branch:.3f}  ({branch.flops:.3e} FLOPs)"
    )
    ratio = f"{at_branch / untrained:.2f}" if untrained > 0 else "undefined (untrained 0)"
    print(f"ratio SFT/untrained  {ratio}  (difference {at_branch - untrained:+.3f})")
    print(
        "RL from the branch point (update: held-out goal success, train return): "
        + ", ".join(
            f"{int(h['step'])}: {h['heldout_goal_success']:.2f}/{h['train_return']:.2f}"
            for h in result.history
        )
    )
    print(
        f"RL chosen checkpoint: {result.scores['heldout_goal_success']:.3f} at update {int(result.scores['step'])}"
    )
    print("wall: " + ", ".join(f"{k} {v:.0f} s" for k, v in stage.items()))


if __name__ == "__main__":
    main()
