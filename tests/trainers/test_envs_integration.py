"""The trainers on envs' real toy env through `envio` (registry splits, episode runner, scripted teacher)."""

from __future__ import annotations

import json
from pathlib import Path

from trainers.config import RLConfig, SFTConfig, TeacherConfig
from trainers.rl import train_rl
from trainers.sft import train_sft
from trainers.teacher import collect_teacher_traces


def test_teacher_sft_rl_pipeline_on_the_toy_env(tmp_path):
    traces = collect_teacher_traces(
        TeacherConfig(
            env="toy",
            tasks=("click-button", "login"),
            max_goals=6,
            max_steps=4,
            output_dir=str(tmp_path / "teacher"),
        )  # fmt: skip
    )
    prov = json.loads((Path(traces.path) / "provenance.json").read_text())
    assert (
        prov["num_episodes"] == 6 and prov["teacher_success"] == 1.0
    )  # the scripted teacher solves the toy env
    assert traces.teacher_flops == 0.0  # no model, no FLOPs
    assert {ex.task for ex in traces.examples} <= {"toy.click-button", "toy.login"}
    (bp,) = train_sft(SFTConfig(traces=traces.path, output_dir=str(tmp_path / "sft"), num_epochs=1, batch_size=4,
                                micro_batch_size=4, max_seq_len=256))  # fmt: skip
    reports = []
    cfg = RLConfig(env="toy", tasks=("click-button",), eval_tasks=("click-link",), init_checkpoint=bp.path,
                   sft_flops=bp.flops, batch_size=4, group_size=2, num_updates=1, eval_every=1, max_eval_goals=3,
                   max_steps=2, max_new_tokens=8, max_seq_len=256, output_dir=str(tmp_path / "rl"),
                   env_options={"num_distractors": 2})  # fmt: skip
    res = train_rl(cfg, lambda m, checkpoint=None: reports.append(m))
    assert [m["step"] for m in reports] == [0, 1]
    assert reports[-1]["flops"] > bp.flops and 0.0 <= res.scores["heldout_task_success"] <= 1.0
