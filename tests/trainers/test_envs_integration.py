"""The trainers on envs' real toy env through `envio` (registry splits, episode runner, scripted teacher)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainers.config import RLConfig, SFTConfig, TeacherConfig
from trainers.rl import EVALS_FILE, train_rl
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
        )
    )
    prov = json.loads((Path(traces.path) / "provenance.json").read_text())
    assert (
        prov["num_episodes"] == 6 and prov["teacher_success"] == 1.0
    )  # the scripted teacher solves the toy env
    assert traces.teacher_flops == 0.0  # no model, no FLOPs
    assert {ex.task for ex in traces.examples} <= {"toy.click-button", "toy.login"}
    (bp,) = train_sft(
        SFTConfig(
            traces=traces.path,
            output_dir=str(tmp_path / "sft"),
            num_epochs=1,
            batch_size=4,
            micro_batch_size=4,
            max_seq_len=256,
        )
    )
    reports = []
    cfg = RLConfig(
        env="toy",
        tasks=("click-button",),
        eval_tasks=("click-link",),
        init_checkpoint=bp.path,
        sft_flops=bp.flops,
        batch_size=4,
        group_size=2,
        num_updates=1,
        eval_every=1,
        max_eval_goals=3,
        max_steps=2,
        max_new_tokens=8,
        max_seq_len=256,
        output_dir=str(tmp_path / "rl"),
        env_options={"num_distractors": 2},
    )
    res = train_rl(cfg, lambda m, checkpoint=None: reports.append(m))
    assert [m["step"] for m in reports] == [0, 1]
    assert reports[-1]["flops"] > bp.flops and 0.0 <= res.scores["heldout_task_success"] <= 1.0


def test_several_env_families_compose_splits_and_check_names():
    from trainers.envio import families, open_env_runner, split_goals

    assert families("toy+miniwob") == ["toy", "miniwob"]
    for bad in ("toy+", "toy+toy", ""):
        with pytest.raises(ValueError, match="joined by"):
            RLConfig(env=bad)
    goals = split_goals("toy+miniwob", "train", ("toy.click-button", "miniwob.click-test"))
    tasks = [t for t, _ in goals]
    assert tasks[0] == "toy.click-button" and tasks[-1] == "miniwob.click-test"
    assert set(tasks) == {"toy.click-button", "miniwob.click-test"}
    assert goals == split_goals("toy", "train", ("click-button",)) + split_goals(
        "miniwob", "train", ("click-test",)
    )
    held = split_goals("toy+miniwob", "heldout_tasks", ("toy.click-link",))  # miniwob contributes nothing
    assert {t for t, _ in held} == {"toy.click-link"}
    with pytest.raises(ValueError, match="family.task"):
        split_goals("toy+miniwob", "train", ("click-button",))
    with pytest.raises(ValueError, match="keyed by family"):
        open_env_runner("toy+miniwob", workers=1, max_steps=2, options={"num_distractors": 2})


@pytest.mark.browser
def test_teacher_plays_toy_and_miniwob_goals_in_one_run(tmp_path):
    pytest.importorskip("browsergym.miniwob")
    goals = [
        ("miniwob.click-test", 3),
        ("toy.click-button", 1001),
        ("miniwob.click-test", 4),
        ("toy.login", 1002),
    ]
    cfg = TeacherConfig(
        env="toy+miniwob",
        max_steps=4,
        output_dir=str(tmp_path / "teacher"),
        env_options={"toy": {"num_distractors": 2}, "miniwob": {"observation": "compact"}},
    )
    traces = collect_teacher_traces(cfg, goals=goals)
    rows = [json.loads(x) for x in (Path(traces.path) / "trajectories.jsonl").read_text().splitlines()]
    assert [(r["task"], r["seed"]) for r in rows] == goals  # the goals' order, across two worker pools
    assert all(r["success"] for r in rows)
    assert {ex.task for ex in traces.examples} == {"miniwob.click-test", "toy.click-button", "toy.login"}


def test_seed_overrides_choose_the_goals_trained_on_and_evaluated(tmp_path):
    cfg = RLConfig(
        env="toy",
        tasks=("click-button",),
        eval_task_split=None,
        train_seeds="100-103",
        eval_goal_seeds="0,500-501",
        batch_size=4,
        group_size=2,
        num_updates=2,
        eval_every=2,
        max_steps=2,
        max_new_tokens=8,
        max_seq_len=256,
        temperature=1.0,
        output_dir=str(tmp_path / "rl"),
    )
    train_rl(cfg)
    evals = [json.loads(line) for line in (tmp_path / "rl" / EVALS_FILE).read_text().splitlines()]
    assert {(r["step"], r["seed"]) for r in evals} == {(s, x) for s in (0, 2) for x in (0, 500, 501)}
    trained = [json.loads(line) for line in (tmp_path / "rl" / "trajectories.jsonl").read_text().splitlines()]
    assert trained and {r["seed"] for r in trained} <= {100, 101, 102, 103}
    with pytest.raises(ValueError, match="never be trained on"):
        train_rl(cfg.replace(eval_goal_seeds="0,4", train_seeds=None, output_dir=str(tmp_path / "b")))
