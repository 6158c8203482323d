"""Multi-turn GRPO on a tiny Llama and a tiny multi-turn text task: the reporter contract, checkpoint selection,
resume with the same numbers, and each swept knob changing the computation."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from analysis.selection import select_checkpoint
from trainers.config import RLConfig
from trainers.grpo import CurriculumState
from trainers.rl import EVALS_FILE, WALL_SPLIT_KEYS, sample_goals, train_rl

sys.path.insert(0, str(Path(__file__).parent))
from toyrunner import LetterRunner, goals  # noqa: E402

SPLITS = {
    "train": goals(["letter-0", "letter-1"], range(3, 10)),
    "heldout_goals": goals(["letter-0", "letter-1"], range(3)),
    "heldout_tasks": goals(["letter-2"], range(4)),
}
KEYS = {"step", "flops", "rl_flops", "heldout_goal_success", "heldout_task_success", "train_return", "tokens"}


class Recorder(LetterRunner):
    def __init__(self, max_steps: int = 2):
        super().__init__(max_steps)
        self.calls_log: list[dict] = []

    def run_episodes(self, policy, goals, **kw):
        trajs = super().run_episodes(policy, goals, **kw)
        self.calls_log.append({"goals": list(goals), "trajs": trajs, **kw})
        return trajs


def _cfg(tmp_path, **kw) -> RLConfig:
    base = dict(
        batch_size=8,
        group_size=4,
        num_updates=2,
        eval_every=1,
        learning_rate=1e-3,
        max_new_tokens=4,
        max_seq_len=64,
        temperature=1.0,
        output_dir=str(tmp_path / "rl"),
        sft_flops=1e12,
    )
    return RLConfig(**{**base, **kw})


def _run(cfg, runner=None):
    reports = []
    res = train_rl(
        cfg,
        lambda m, checkpoint=None: reports.append((m, checkpoint)),
        runner=runner or LetterRunner(),
        goal_splits=SPLITS,
    )
    return res, reports


def test_reporter_contract_and_checkpoint_selection(tmp_path):
    res, reports = _run(_cfg(tmp_path, num_updates=3))
    assert [m["step"] for m, _ in reports] == [0, 1, 2, 3]
    for m, ckpt in reports:
        assert set(m) >= KEYS and all(isinstance(v, float) for v in m.values())
        assert m["flops"] == pytest.approx(1e12 + m["rl_flops"])
        assert (Path(ckpt) / "state.json").is_file() or ckpt not in (res.checkpoint,)
    rl = [m["rl_flops"] for m, _ in reports]
    assert rl[0] == 0 and all(b > a for a, b in zip(rl, rl[1:], strict=False))
    best = select_checkpoint([m["heldout_goal_success"] for m, _ in reports])
    assert res.best_index == best and res.scores == reports[best][0] and res.checkpoint == reports[best][1]
    assert Path(res.checkpoint, "config.json").is_file()
    assert (tmp_path / "rl" / "trajectories.jsonl").is_file()
    # the wall split: nothing before the first update; then generation, env and update time, within the clock
    assert all(reports[0][0][k] == 0.0 for k in WALL_SPLIT_KEYS)
    for (prev, _), (m, _) in zip(reports, reports[1:], strict=False):
        assert m["rollout_gen_s"] > 0 and m["update_s"] > 0 and m["rollout_env_s"] >= 0
        split = sum(m[k] for k in WALL_SPLIT_KEYS) + m["eval_s"]
        assert split <= m["wall_s"] - prev["wall_s"] + 1e-6
    # per-goal outcomes of every evaluation, agreeing with the reported rates
    rows = [json.loads(line) for line in (tmp_path / "rl" / EVALS_FILE).read_text().splitlines()]
    for m, _ in reports:
        mine = [r for r in rows if r["step"] == m["step"] and r["split"] == "heldout_goals"]
        assert len(mine) == len(SPLITS["heldout_goals"])
        assert np.mean([r["success"] for r in mine]) == pytest.approx(m["heldout_goal_success"])


def test_per_goal_outcomes_are_mirrored_into_the_samples_dir(tmp_path):
    # a sweep trial's samples_dir reaches MLflow as artifacts: the per-goal outcomes go with it
    _run(_cfg(tmp_path, num_updates=2, samples_dir=str(tmp_path / "samples")))
    mirror = tmp_path / "samples" / EVALS_FILE
    assert mirror.read_text() == (tmp_path / "rl" / EVALS_FILE).read_text()
    assert {json.loads(line)["step"] for line in mirror.read_text().splitlines()} == {0, 1, 2}


def test_resume_reproduces_the_uninterrupted_run(tmp_path):
    full, full_reports = _run(
        _cfg(tmp_path / "a", num_updates=4, importance_ratio=True, ppo_epochs=2, curriculum=True)
    )

    class Killed(Exception):
        pass

    seen = []

    def dying(m, checkpoint=None):
        seen.append((m, checkpoint))
        if m["step"] == 2:
            raise Killed

    cfg = _cfg(tmp_path / "b", num_updates=4, importance_ratio=True, ppo_epochs=2, curriculum=True)
    with pytest.raises(Killed):
        train_rl(cfg, dying, runner=LetterRunner(), goal_splits=SPLITS)
    resumed, rest = _run(cfg.replace(resume_from=seen[-1][1]))
    volatile = {"wall_s", "eval_s", *WALL_SPLIT_KEYS}
    both = [m for m, _ in seen] + [m for m, _ in rest]
    assert [m["step"] for m in both] == [0, 1, 2, 3, 4]
    for a, b in zip([m for m, _ in full_reports], both, strict=True):
        assert {k: v for k, v in a.items() if k not in volatile} == pytest.approx(
            {k: v for k, v in b.items() if k not in volatile}, nan_ok=True
        )
    from trainers.models import load_student

    evals = lambda d: (d / "rl" / EVALS_FILE).read_text()  # noqa: E731 (the killed run's lines replaced)
    assert evals(tmp_path / "a") == evals(tmp_path / "b")
    wa, _ = load_student(full.checkpoint if full.best_index == 4 else full_reports[-1][1])
    wb, _ = load_student(rest[-1][1])
    for p, q in zip(wa.parameters(), wb.parameters(), strict=True):
        torch.testing.assert_close(p, q)


@pytest.mark.parametrize(("knob", "value"), [("temperature", 0.25), ("error_log", False), ("gamma", 0.5)])
def test_rollout_knobs_reach_the_runner(tmp_path, knob, value):
    from trainers.rl import group_returns

    rec = Recorder()
    _, reports = _run(_cfg(tmp_path, num_updates=1, **{knob: value}), rec)
    if knob != "gamma":  # the discount stays in trainers: the runner reports success and steps
        assert {c[knob] for c in rec.calls_log} == {value}
    train = next(c for c in rec.calls_log if len(c["goals"]) == 8)
    gamma = value if knob == "gamma" else 0.9
    returns = group_returns([train["trajs"]], gamma)[0]
    for t, r in zip(train["trajs"], returns, strict=True):
        assert r == pytest.approx((1 if t.success else -1) * gamma**t.num_steps)
        if knob == "error_log" and t.num_steps > 1:
            assert "Last action error" not in t.steps[1].prompt.messages[-1]["content"]
    assert reports[-1][0]["train_return"] == pytest.approx(returns.mean())  # the run's return used this gamma


def test_error_log_on_shows_the_error(tmp_path):
    rec = Recorder()
    _run(_cfg(tmp_path, num_updates=1, error_log=True), rec)
    second = [t.steps[1] for c in rec.calls_log for t in c["trajs"] if t.num_steps > 1]
    assert second and all(
        "Last action error: wrong answer" in s.prompt.messages[-1]["content"] for s in second
    )


def test_batch_size_is_episodes_per_update_in_groups(tmp_path):
    rec = Recorder()
    _run(_cfg(tmp_path, num_updates=1, batch_size=12, group_size=3), rec)
    train = [c for c in rec.calls_log if len(c["goals"]) == 12]
    assert len(train) == 1
    g = train[0]["goals"]
    assert all(g[i] == g[i - i % 3] for i in range(12))  # 4 goals x 3 rollouts each


class ThreeOfFour(LetterRunner):
    """Marks rollouts 0-2 of every 4 successful and the 4th failed, whatever the policy said (mixed groups)."""

    def run_episodes(self, policy, goals, **kw):
        trajs = super().run_episodes(policy, goals, **kw)
        for i, t in enumerate(trajs):
            t.success = i % 4 != 3  # the trainers' return follows (+1/-1 times gamma**steps)
        return trajs


def _one_update(tmp_path, runner=None, **kw):
    res, reports = _run(_cfg(tmp_path, num_updates=1, **kw), runner)
    from trainers.models import load_student

    base, _ = load_student("tiny-llama")
    after, _ = load_student(reports[-1][1])
    delta = sum(
        float((p - q).detach().abs().sum())
        for p, q in zip(base.parameters(), after.parameters(), strict=True)
    )
    return reports[-1][0], delta


def test_learning_rate_scales_the_update(tmp_path):
    # ThreeOfFour: mixed groups, so every update has a nonzero advantage whatever the untrained student says
    _, small = _one_update(tmp_path / "a", ThreeOfFour(), learning_rate=1e-5, group_size=4, batch_size=8)
    _, large = _one_update(tmp_path / "b", ThreeOfFour(), learning_rate=1e-3, group_size=4, batch_size=8)
    assert 30 < large / small < 300  # Adam: the step scales with the learning rate


def test_zero_adv_filter_drops_constant_groups(tmp_path):
    on, _ = _one_update(tmp_path / "a", zero_adv_filter=True, batch_size=16)
    off, _ = _one_update(tmp_path / "b", zero_adv_filter=False, batch_size=16)
    assert off["kept_frac"] == 1.0 and on["kept_frac"] < 1.0  # the untrained student fails whole groups
    assert on["tokens"] < off["tokens"]  # filtered episodes are not even forwarded


def test_negative_advantage_weight_zero_trains_only_above_mean_episodes(tmp_path):
    # ThreeOfFour: every group is 3 successes and 1 failure, so weight 0 keeps exactly the 3/4 that succeeded
    full, _ = _one_update(tmp_path / "a", ThreeOfFour(), group_size=4, batch_size=8)
    pos, _ = _one_update(
        tmp_path / "b", ThreeOfFour(), group_size=4, batch_size=8, negative_advantage_weight=0.0
    )
    assert full["kept_frac"] == 1.0 and pos["kept_frac"] == 0.75
    assert pos["tokens"] < full["tokens"] and pos["loss"] != full["loss"]
    with pytest.raises(ValueError, match=r"negative_advantage_weight=1.5 must be in \[0, 1\]"):
        RLConfig(negative_advantage_weight=1.5)


def test_importance_ratio_clips_on_later_ppo_epochs(tmp_path):
    same = {"ppo_epochs": 3, "learning_rate": 3e-2, "zero_adv_filter": False, "grouped_advantage": False}
    on, _ = _one_update(tmp_path / "a", importance_ratio=True, **same)
    off, _ = _one_update(tmp_path / "b", importance_ratio=False, **same)
    assert on["clip_frac"] > 0 and on["ratio_mean"] != 1.0
    assert off["clip_frac"] == 0 and off["ratio_mean"] == 1.0


def test_grouped_and_std_knobs_change_the_loss(tmp_path):
    losses = {}
    for grouped, std in [(True, True), (False, False), (True, False)]:
        m, _ = _one_update(
            tmp_path / f"{grouped}{std}", ThreeOfFour(), grouped_advantage=grouped, std_normalize=std
        )
        losses[grouped, std] = m["loss"]
    assert len({round(v, 6) for v in losses.values()}) == 3


def test_warmup_starts_the_first_update_at_a_fraction_of_the_rate(tmp_path):
    m, warm = _one_update(tmp_path / "a", ThreeOfFour(), learning_rate=1e-3, warmup_updates=4)
    _, quarter = _one_update(tmp_path / "b", ThreeOfFour(), learning_rate=2.5e-4)
    _, full = _one_update(tmp_path / "c", ThreeOfFour(), learning_rate=1e-3)
    assert m["lr"] == pytest.approx(2.5e-4)
    assert warm == pytest.approx(quarter, rel=1e-4) and full > 3 * warm


def _update_on(tiny, completions, advs, episodes=None, **kw):
    """One `update` of a copy of the tiny Llama on fixed completions with plain SGD at rate 1 (so the parameter
    change is minus the clipped gradient); returns (stats, parameter change)."""
    import copy

    from trainers.common import encode_example
    from trainers.flops import FlopsCounter
    from trainers.grpo import update

    base, tok = tiny
    model = copy.deepcopy(base)
    cfg = RLConfig(**{"batch_size": 4, "group_size": 2, "learning_rate": 1.0, **kw})
    msgs = [{"role": "user", "content": "Goal: click 3"}]
    examples = [encode_example(tok, msgs, c, max_seq_len=64) for c in completions]
    stats = update(
        model,
        torch.optim.SGD(model.parameters(), lr=1.0),
        examples,
        advs,
        cfg,
        pad_id=tok.pad_token_id,
        counter=FlopsCounter(model),
        episodes=episodes,
    )
    delta = [(p - q).detach() for p, q in zip(model.parameters(), base.parameters(), strict=True)]
    return stats, delta


def test_sequence_aggregation_weighs_completions_not_tokens(tiny):
    # a long successful completion and three short ones: the token mean gives the long one most of the weight
    comps = ['"\n"\n"\n"\n"\n"\n"\n"\nclick("3")', 'click("3")', 'click("4")', 'click("5")']
    advs = [1.5, -0.5, -0.5, -0.5]
    tok, _ = _update_on(tiny, comps, advs, loss_aggregation="token")
    seq, d1 = _update_on(tiny, comps, advs, loss_aggregation="sequence", micro_batch_size=1)
    _, d4 = _update_on(tiny, comps, advs, loss_aggregation="sequence", micro_batch_size=4)
    assert tok["loss"] != pytest.approx(seq["loss"], rel=1e-2)
    # the denominator is the whole batch's sequence count, not the micro-batch's: accumulation changes nothing
    for a, b in zip(d1, d4, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)


def test_episode_aggregation_weighs_episodes_not_steps(tiny):
    # a three-step success and a one-step failure: under `episode` each weighs the same, so three copies of the
    # success's step (weight 1/3 each) move the weights exactly as one copy does under `sequence`
    win, lose = 'click("3")', 'click("4")'
    _, ep = _update_on(
        tiny, [win, win, win, lose], [1.0, 1.0, 1.0, -1.0], [0, 0, 0, 1], loss_aggregation="episode"
    )
    _, seq = _update_on(tiny, [win, lose], [1.0, -1.0], loss_aggregation="sequence")
    _, steps = _update_on(tiny, [win, win, win, lose], [1.0, 1.0, 1.0, -1.0], loss_aggregation="sequence")
    for a, b in zip(ep, seq, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert any(not torch.allclose(a, b, rtol=1e-3, atol=1e-6) for a, b in zip(steps, seq, strict=True))
    # micro-batches change nothing; the episodes are required
    _, ep1 = _update_on(
        tiny,
        [win, win, win, lose],
        [1.0, 1.0, 1.0, -1.0],
        [0, 0, 0, 1],
        loss_aggregation="episode",
        micro_batch_size=1,
    )
    for a, b in zip(ep, ep1, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="episode"):
        _update_on(tiny, [win, lose], [1.0, -1.0], loss_aggregation="episode")


def test_curriculum_sampling_follows_the_weights():
    g = goals(["letter-0", "letter-1", "letter-2"], range(10))
    st = CurriculumState(alpha=1.0)
    st.update({"letter-0": [1.0] * 4, "letter-1": [1.0, -1.0] * 2, "letter-2": [-1.0] * 4})
    rng = np.random.default_rng(0)
    picked = sample_goals(g, 2000, rng, curriculum=st, target_return=0.5, temperature=0.3)
    share = {t: sum(x[0] == t for x in picked) / 2000 for t in ("letter-0", "letter-1", "letter-2")}
    z = np.exp(np.array([-0.5, 0.5, -1.5]) / 0.3)
    np.testing.assert_allclose(list(share.values()), z / z.sum(), atol=0.03)
    uniform = sample_goals(
        g, 3000, np.random.default_rng(0), curriculum=None, target_return=0.5, temperature=0.3
    )
    assert abs(sum(x[0] == "letter-2" for x in uniform) / 3000 - 1 / 3) < 0.03
    # same seed, same draw whatever the global RNG state
    np.random.seed(123)  # noqa: NPY002
    again = sample_goals(g, 2000, np.random.default_rng(0), curriculum=st, target_return=0.5, temperature=0.3)
    assert again == picked


def test_config_checks_name_the_fix():
    with pytest.raises(ValueError, match="use batch_size=64"):
        RLConfig(batch_size=63, group_size=8)
    with pytest.raises(ValueError, match="gamma"):
        RLConfig(gamma=0.0)
    with pytest.raises(ValueError, match="learning_rate"):
        RLConfig(learning_rate=-1.0)
    with pytest.raises(ValueError, match="'token', 'sequence' or 'episode'"):
        RLConfig(loss_aggregation="mean")
    with pytest.raises(ValueError, match="warmup_updates"):
        RLConfig(warmup_updates=-1)


def test_every_choice_field_is_checked_against_its_literal():
    from trainers.config import SFTConfig, TeacherConfig

    with pytest.raises(ValueError, match="RLConfig.backend='tpu' must be 'hf' or 'vllm'"):
        RLConfig(backend="tpu")
    with pytest.raises(ValueError, match="TeacherConfig.teacher='gpt' must be 'scripted', 'hf' or 'openai'"):
        TeacherConfig(teacher="gpt")
    with pytest.raises(ValueError, match="SFTConfig.engine='axolotl' must be 'native' or 'trl'"):
        SFTConfig(traces="x", engine="axolotl")


def test_swept_fields_are_the_paper_space():
    import yaml

    paper = yaml.safe_load((Path(__file__).parents[2] / "sweep" / "spaces" / "paper.yaml").read_text())
    names = list(RLConfig.__dataclass_fields__)
    swept = names[: names.index("sft_checkpoint") + 1]  # the config's first block: the study's space

    assert set(paper["parameters"]) == set(swept)
    assert set(paper["parameters"]) <= set(RLConfig.__dataclass_fields__)
    for name, spec in paper["parameters"].items():  # every value of the study's space is a valid config
        for v in spec["values"]:
            RLConfig(**{name: v})
