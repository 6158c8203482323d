"""SFT engines side by side: the native loop vs TRL's SFTTrainer, same traces, config, student and seeds.

Scripted teacher on toy training goals, then `train_sft` twice (engine native, then trl, alternating order per
round), printing wall time, final FLOPs, the last reported train loss, greedy held-out success of the final
branch point and the time ratio trl/native. One torch thread (the tiny student is fastest that way).

    AGENTSWEEP_CACHE=/tmp/agc .venv/bin/python benchmarks/bench_sft_engines.py --steps 300 --rounds 2
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path


def _collect(losses: list[float]):
    def report(metrics: dict, checkpoint: str | None = None) -> None:
        losses.append(metrics["train_loss"])

    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/bench_sft_engines")
    ap.add_argument("--student", default="tiny-llama")
    ap.add_argument("--steps", type=int, default=300, help="SFT updates of 8 examples")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--bids", default="stable")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    import logging

    import torch

    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    from envs.runner import open_runner
    from trainers.backends import HFPolicy
    from trainers.config import RLConfig, SFTConfig, TeacherConfig
    from trainers.models import load_student
    from trainers.rl import evaluate
    from trainers.sft import train_sft
    from trainers.teacher import collect_teacher_traces

    out = Path(args.out)
    train = [("toy.click-button", s) for s in range(1000, 1400)]
    heldout = [("toy.click-button", s) for s in range(40)]
    runner = open_runner("toy", workers=1, max_steps=2, num_distractors=3, bids=args.bids)
    traces = collect_teacher_traces(
        TeacherConfig(env="toy", output_dir=str(out / "teacher")), runner=runner, goals=train
    )
    base = SFTConfig(
        traces=traces.path,
        student=args.student,
        learning_rate=3e-3,
        batch_size=8,
        micro_batch_size=8,
        num_epochs=args.steps * 8 / len(traces.examples),
        warmup_ratio=0.0,
        cpu_threads=args.threads,
        resume=False,
    )
    eval_cfg = RLConfig(env="toy", temperature=0.0, max_new_tokens=24, max_steps=2)
    rows: dict[str, list[tuple[float, float, float, float]]] = {"native": [], "trl": []}
    for r in range(args.rounds):
        for engine in ("native", "trl") if r % 2 == 0 else ("trl", "native"):
            losses: list[float] = []
            cfg = dataclasses.replace(base, engine=engine, output_dir=str(out / f"{engine}{r}"))
            t0 = time.perf_counter()
            (bp,) = train_sft(cfg, _collect(losses))
            wall = time.perf_counter() - t0
            model, tok = load_student(bp.path)
            with torch.no_grad():
                ok = evaluate(runner, HFPolicy(model, tok), heldout, eval_cfg, seed=0)
            rows[engine].append((wall, bp.flops, losses[-1], ok))
            print(
                f"round {r} {engine:<6} wall {wall:6.1f} s  FLOPs {bp.flops:.4e}  loss {losses[-1]:.4f}  "
                f"held-out greedy {ok:.3f}",
                flush=True,
            )
    runner.close()
    mean = {k: sum(w for w, *_ in v) / len(v) for k, v in rows.items()}
    print(f"## SFT engines, {args.student}, {args.steps} updates of 8, {args.rounds} rounds")
    print(
        f"mean wall: native {mean['native']:.1f} s, trl {mean['trl']:.1f} s, ratio trl/native "
        f"{mean['trl'] / mean['native']:.2f}"
    )


if __name__ == "__main__":
    main()
