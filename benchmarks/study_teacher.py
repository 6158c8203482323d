"""Issue 16 study recipe, stage 0: scripted-teacher traces of the study's MiniWoB++ tasks (compact observation).

Plays envs' ScriptedPolicy on training seeds and, separately, on held-out seeds (never trained on; their traces
are only the teacher-forced probe's reference and the teacher's success on held-out goals). Resumable task by task
(`collect_teacher_traces` keeps each finished task's episodes under `<split>/parts/` until the split is saved).

    /work/wt/venv-run python benchmarks/study_teacher.py --out /tmp/study/teacher
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from envs.registry import parse_seeds

TASKS = (
    "click-test,click-test-2,click-link,click-dialog,click-dialog-2,click-tab,enter-text,login-user,"
    "choose-list,focus-text-2"
)
READS_GOAL = (
    "click-test-2",
    "click-link",
    "click-dialog-2",
    "click-tab",
    "enter-text",
    "login-user",
    "choose-list",
    "focus-text-2",
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default=TASKS)
    ap.add_argument("--train-seeds", default="3-39", help="the study's 3-9 plus more unseen-by-eval seeds")
    ap.add_argument(
        "--heldout-seeds", default="0-2,1000-1019", help="the study's 0-2 plus fresh unseen seeds"
    )
    ap.add_argument("--out", default="/tmp/study/teacher")
    ap.add_argument("--max-steps", type=int, default=6)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import torch

    torch.set_num_threads(1)
    from envs.runner import open_runner
    from trainers.config import TeacherConfig
    from trainers.teacher import collect_teacher_traces

    tasks = tuple(f"miniwob.{t}" for t in args.tasks.split(","))
    runner = open_runner(
        "miniwob", workers=1, max_steps=args.max_steps, observation="compact", max_obs_tokens=600
    )
    try:
        for split, spec in (("train", args.train_seeds), ("heldout", args.heldout_seeds)):
            out = Path(args.out) / split
            if (out / "provenance.json").is_file():
                continue
            t0 = time.perf_counter()
            tr = collect_teacher_traces(
                TeacherConfig(env="miniwob", tasks=tasks, output_dir=str(out), max_steps=args.max_steps),
                runner=runner,
                goals=[(task, s) for task in tasks for s in parse_seeds(spec)],
            )
            p = tr.provenance
            print(
                f"{split}: {p['num_successful']}/{p['num_episodes']} episodes succeeded, "
                f"{len(tr.examples)} examples, {time.perf_counter() - t0:.0f} s",
                flush=True,
            )
    finally:
        runner.close()


if __name__ == "__main__":
    main()
