"""Teacher traces -> SFT with branch points at FLOPs intervals (full fine-tuning and LoRA)."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest

from envs.protocol import Completion
from trainers.config import SFTConfig, TeacherConfig
from trainers.flops import flops_per_token
from trainers.sft import RESUME_DIR, load_branch_points, train_sft
from trainers.teacher import TraceSet, collect_teacher_traces

sys.path.insert(0, str(Path(__file__).parent))
from toyrunner import LetterRunner, goals, target  # noqa: E402


class Oracle:
    """Answers right except on goals with seed 0 (so some teacher episodes fail); reports token counts."""

    def generate(self, prompts, *, temperature, max_new_tokens):
        return [
            Completion(
                text=f"{target(p.task, p.seed) if p.seed else 'z'} is the answer",
                num_prompt_tokens=20,
                num_completion_tokens=5,
            )
            for p in prompts
        ]


def sft_cfg(traces: TraceSet, out: Path, **fields) -> SFTConfig:
    """The tests' SFT runs on `traces`: updates of 5 examples at rate 3e-3, unless `fields` say otherwise."""
    return SFTConfig(
        **{
            "traces": traces.path,
            "output_dir": str(out),
            "learning_rate": 3e-3,
            "batch_size": 5,
            "micro_batch_size": 5,
            **fields,
        }
    )


LEARNING_RUN = {"num_epochs": 30, "checkpoint_every_flops": 5e10, "warmup_ratio": 0.0}
"""Long enough to learn the letters, branch points by FLOPs."""
RESUMED_RUN = {
    "num_epochs": 4,
    "checkpoint_every_steps": 4,
    "resume_every_steps": 3,
    "lora_rank": 4,
    "warmup_ratio": 0.2,
}
"""12 updates, a branch point every 4, the resume state every 3 (and at branch points)."""


def held_out_successes(branch) -> int:
    """Greedy one-step episodes a branch point solves among 8 held-out goals (seeds 6-9 of two tasks)."""
    from trainers.backends import HFPolicy
    from trainers.models import load_student

    model, tok = load_student(branch.path)
    trajs = LetterRunner(max_steps=1).run_episodes(
        HFPolicy(model, tok),
        goals(["letter-0", "letter-1"], range(6, 10)),
        temperature=0.0,
        max_new_tokens=4,
        error_log=False,
    )
    return sum(t.success for t in trajs)


@pytest.fixture
def traces(tmp_path) -> TraceSet:
    cfg = TeacherConfig(
        teacher="scripted", flops_model="llama-3.3-70b", max_steps=2, output_dir=str(tmp_path / "t")
    )
    g = goals(["letter-0", "letter-1", "letter-2"], range(0, 6))
    return collect_teacher_traces(cfg, runner=LetterRunner(max_steps=2), goals=g, policy=Oracle())


def test_only_successful_episodes_become_examples_but_all_tokens_count(traces):
    assert len(traces.examples) == 15  # 3 tasks x 5 successful seeds x 1 step
    assert all(ex.seed != 0 for ex in traces.examples)
    # 15 successful one-step episodes + 3 failed two-step episodes, 25 tokens each at the 70B teacher's size
    assert traces.teacher_flops == pytest.approx(
        (15 + 3 * 2) * 25 * flops_per_token("llama-3.3-70b", 25, False)
    )
    prov = json.loads((Path(traces.path) / "provenance.json").read_text())
    assert (
        prov["num_episodes"] == 18
        and prov["num_successful"] == 15
        and prov["tasks"] == ["letter-0", "letter-1", "letter-2"]
    )
    assert len((Path(traces.path) / "trajectories.jsonl").read_text().splitlines()) == 18
    again = TraceSet.load(traces.path)
    assert again.examples == traces.examples and again.teacher_flops == traces.teacher_flops


def test_killed_teacher_collection_plays_only_the_unfinished_tasks(traces, tmp_path):
    """A collection killed in its second task, played again with the same config, replays nothing it had
    finished and saves the dataset, FLOPs and episodes of the uninterrupted run (`traces`)."""

    class Killed(Exception):
        pass

    class Dying(Oracle):
        def __init__(self, die_on: str | None) -> None:
            self.die_on, self.tasks = die_on, []

        def generate(self, prompts, **kw):
            self.tasks += [p.task for p in prompts]
            if self.die_on in self.tasks:
                raise Killed
            return super().generate(prompts, **kw)

    cfg = TeacherConfig(
        teacher="scripted", flops_model="llama-3.3-70b", max_steps=2, output_dir=str(tmp_path / "t2")
    )
    g = goals(["letter-0", "letter-1", "letter-2"], range(0, 6))
    with pytest.raises(Killed):
        collect_teacher_traces(cfg, runner=LetterRunner(max_steps=2), goals=g, policy=Dying("letter-1"))
    assert [p.name for p in (tmp_path / "t2" / "parts").iterdir()] == ["letter-0.jsonl"]
    second = Dying(None)
    again = collect_teacher_traces(cfg, runner=LetterRunner(max_steps=2), goals=g, policy=second)
    assert set(second.tasks) == {"letter-1", "letter-2"}  # letter-0 was not played again
    assert again.examples == traces.examples and again.teacher_flops == pytest.approx(traces.teacher_flops)
    read = lambda t: (Path(t.path) / "trajectories.jsonl").read_text()  # noqa: E731
    assert read(again) == read(traces) and not (tmp_path / "t2" / "parts").exists()
    # a part written by another config is played again, not reused
    other = dataclasses.replace(cfg, max_steps=1)
    (tmp_path / "t2" / "parts").mkdir()
    (tmp_path / "t2" / "parts" / "letter-0.jsonl").write_text('{"config": "old", "goals": []}\n')
    third = Dying(None)
    collect_teacher_traces(other, runner=LetterRunner(max_steps=1), goals=g, policy=third)
    assert set(third.tasks) == {"letter-0", "letter-1", "letter-2"}


def test_sft_learns_and_registers_branch_points_by_flops(traces, tmp_path):
    reports = []
    cfg = sft_cfg(traces, tmp_path / "sft", **LEARNING_RUN)
    branches = train_sft(cfg, lambda m, checkpoint=None: reports.append((m, checkpoint)))
    assert 3 <= len(branches) <= 12 and branches == load_branch_points(cfg.output_dir)
    flops = [b.flops for b in branches]
    assert flops == sorted(flops) and flops[0] > traces.teacher_flops  # teacher share + student training
    intervals = [
        int(f // 5e10) for f in flops[:-1]
    ]  # each branch point (but the final one) crosses a new multiple
    assert intervals == sorted(set(intervals))
    assert [m["flops"] for m, _ in reports] == flops and [c for _, c in reports] == [b.path for b in branches]
    assert reports[-1][0]["train_loss"] < reports[0][0]["train_loss"] * 0.5
    # the last branch point answers the held-out seed's letter (SFT learned the task)
    assert held_out_successes(branches[-1]) >= 6  # the untrained student: ~1/4 by chance


def test_lora_trains_adapters_and_saves_merged_model(traces, tmp_path):
    cfg = SFTConfig(
        traces=traces.path,
        output_dir=str(tmp_path / "lora"),
        lora=True,
        lora_rank=4,
        learning_rate=1e-2,
        batch_size=5,
        micro_batch_size=5,
        num_epochs=2,
    )
    (bp,) = train_sft(cfg)
    assert (Path(bp.path) / "config.json").is_file() and not (Path(bp.path) / "adapter_config.json").exists()
    from trainers.models import load_student

    base, _ = load_student("tiny-llama")
    tuned, _ = load_student(bp.path)
    diff = sum(
        float((p - q).detach().abs().sum())
        for p, q in zip(base.parameters(), tuned.parameters(), strict=True)
    )
    assert diff > 0


def test_config_errors_name_the_fix(tmp_path):
    with pytest.raises(ValueError, match="micro_batch_size"):
        SFTConfig(traces="x", batch_size=6, micro_batch_size=4)
    with pytest.raises(ValueError, match="base_url"):
        TeacherConfig(teacher="openai")
    with pytest.raises(ValueError, match="examples.jsonl"):
        train_sft(SFTConfig(traces=str(tmp_path)))


@pytest.mark.parametrize("lora", [False, True])
def test_killed_sft_resumes_to_the_uninterrupted_numbers(traces, tmp_path, lora):
    import torch

    from trainers.models import load_student

    def cfg(out: str) -> SFTConfig:
        return sft_cfg(traces, tmp_path / out, lora=lora, **RESUMED_RUN)

    straight = train_sft(cfg("a"))
    assert len(straight) == 3 and not (tmp_path / "a" / RESUME_DIR).exists()  # 12 updates, branch every 4

    class Killed(Exception):
        pass

    def kill_at_second_branch(metrics, checkpoint=None):
        if metrics["step"] == 8:
            raise Killed  # after the step-6 resume save, before the step-8 one: steps 7-8 are redone

    with pytest.raises(Killed):
        train_sft(cfg("b"), kill_at_second_branch)
    assert (tmp_path / "b" / RESUME_DIR / "state.json").is_file()
    with pytest.raises(ValueError, match="different SFT config"):
        train_sft(dataclasses.replace(cfg("b"), learning_rate=1e-3))
    steps = []
    resumed = train_sft(cfg("b"), lambda m, checkpoint=None: steps.append(m["step"]))
    assert steps == [8, 12]  # it continued from the step-6 state: the step-4 branch point was not redone
    assert [(b.step, b.flops) for b in resumed] == [(b.step, b.flops) for b in straight]
    for a, b in zip(straight, resumed, strict=True):
        ma, _ = load_student(a.path)
        mb, _ = load_student(b.path)
        for (name, p), q in zip(ma.named_parameters(), mb.parameters(), strict=True):
            assert torch.equal(p, q), name
    assert not (tmp_path / "b" / RESUME_DIR).exists()
