"""SFT through TRL's SFTTrainer (`engine="trl"`): same examples, masks, branch points and FLOPs as the native loop."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

from trainers.config import SFTConfig, TeacherConfig
from trainers.sft import load_branch_points, train_sft
from trainers.teacher import TraceSet, collect_teacher_traces

sys.path.insert(0, str(Path(__file__).parent))
from test_sft import LEARNING_RUN, RESUMED_RUN, Oracle, held_out_successes, sft_cfg  # noqa: E402
from toyrunner import LetterRunner, goals  # noqa: E402


@pytest.fixture
def traces(tmp_path) -> TraceSet:
    cfg = TeacherConfig(teacher="scripted", max_steps=2, output_dir=str(tmp_path / "t"))
    g = goals(["letter-0", "letter-1", "letter-2"], range(0, 6))
    return collect_teacher_traces(cfg, runner=LetterRunner(max_steps=2), goals=g, policy=Oracle())


def test_trl_engine_learns_with_the_native_branch_points_and_flops(traces, tmp_path):
    reports = []
    base = sft_cfg(traces, tmp_path / "native", **LEARNING_RUN)
    native = train_sft(base)
    cfg = dataclasses.replace(base, engine="trl", output_dir=str(tmp_path / "trl"))
    branches = train_sft(cfg, lambda m, checkpoint=None: reports.append((m, checkpoint)))
    assert branches == load_branch_points(cfg.output_dir) and not (tmp_path / "trl" / "trl").exists()
    # every example trained 30 times in both: the same tokens, so the same FLOPs at the end
    assert (
        branches[-1].flops == pytest.approx(native[-1].flops) and branches[-1].step == native[-1].step == 90
    )
    flops = [b.flops for b in branches]
    intervals = [int(f // 5e10) for f in flops[:-1]]
    assert len(branches) >= 3 and intervals == sorted(set(intervals)) and flops[0] > traces.teacher_flops
    assert [m["flops"] for m, _ in reports] == flops and [c for _, c in reports] == [b.path for b in branches]
    assert reports[-1][0]["train_loss"] < reports[0][0]["train_loss"] * 0.5
    assert held_out_successes(branches[-1]) >= 6  # the untrained student: ~1/4 by chance


@pytest.mark.parametrize("lora", [False, True])
def test_trl_engine_resumes_a_killed_run(traces, tmp_path, lora):
    import torch

    from trainers.models import load_student

    def cfg(out: str) -> SFTConfig:
        return sft_cfg(traces, tmp_path / out, engine="trl", lora=lora, **RESUMED_RUN)

    straight = train_sft(cfg("a"))
    assert [b.step for b in straight] == [4, 8, 12]

    class Killed(Exception):
        pass

    def kill_at_second_branch(metrics, checkpoint=None):
        if metrics["step"] == 8:
            raise Killed

    with pytest.raises(Killed):
        train_sft(cfg("b"), kill_at_second_branch)
    with pytest.raises(ValueError, match="different SFT config"):
        train_sft(dataclasses.replace(cfg("b"), learning_rate=1e-3))
    if lora:  # killed between HF's checkpoint write and ours: the older complete checkpoint (step 3) is used
        (tmp_path / "b" / "trl" / "checkpoint-6" / "agentsweep_sft.json").unlink()
    steps = []
    resumed = train_sft(cfg("b"), lambda m, checkpoint=None: steps.append(m["step"]))
    assert steps == ([4, 8, 12] if lora else [8, 12])  # continued from the step-3 or step-6 checkpoint
    assert [(b.step, b.flops) for b in resumed] == [(b.step, b.flops) for b in straight]
    for a, b in zip(straight, resumed, strict=True):
        ma, _ = load_student(a.path)
        mb, _ = load_student(b.path)
        for (name, p), q in zip(ma.named_parameters(), mb.parameters(), strict=True):
            assert torch.allclose(p, q, atol=1e-6), name
