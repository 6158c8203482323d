"""The GRPO numerical core on hand-computed values: each knob changes the computation as specified."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from analysis.selection import rolling_mean, select_checkpoint
from trainers.common import warmup_lr
from trainers.grpo import CurriculumState, advantages, curriculum_weights, kept_episodes, policy_loss

# two goals x 4 rollouts; group 0: mean 0, population std 1; group 1: all failed (constant)
R = np.array([[1.0, -1.0, 1.0, -1.0], [-0.5, -0.5, -0.5, -0.5]])


def test_grouped_and_std_normalised():
    adv = advantages(R, grouped=True, std_normalize=True, eps=0.0 + 1e-12)
    np.testing.assert_allclose(adv[0], [1, -1, 1, -1], atol=1e-9)
    np.testing.assert_allclose(adv[1], [0, 0, 0, 0], atol=1e-9)


def test_grouped_without_std():
    r = np.array([[1.0, 0.0, 0.0, -1.0 * 0.9**2]])  # mean (1 - 0.81) / 4 = 0.0475
    np.testing.assert_allclose(advantages(r, grouped=True, std_normalize=False), r - 0.0475)


def test_raw_return_when_not_grouped():
    np.testing.assert_array_equal(advantages(R, grouped=False, std_normalize=False), R)
    # std normalisation alone divides the raw return by the group std (+eps)
    adv = advantages(R, grouped=False, std_normalize=True, eps=1e-4)
    np.testing.assert_allclose(adv[0], R[0] / 1.0001)
    np.testing.assert_allclose(adv[1], R[1] / 1e-4)


def test_env_error_episodes_leave_the_group():
    r = np.array([[1.0, np.nan, -1.0, -1.0]])  # mean of valid -1/3
    adv = advantages(r, grouped=True, std_normalize=False)
    np.testing.assert_allclose(adv[0, [0, 2, 3]], [4 / 3, -2 / 3, -2 / 3])
    assert np.isnan(adv[0, 1])
    assert kept_episodes(adv, zero_adv_filter=False).tolist() == [[True, False, True, True]]


def test_negative_weight_scales_only_negative_advantages():
    r = np.array([[1.0, -1.0, -1.0, -1.0], [1.0, np.nan, -1.0, 1.0]])
    full = advantages(r, grouped=True, std_normalize=True)
    for w in (0.0, 0.25):
        adv = advantages(r, grouped=True, std_normalize=True, negative_weight=w)
        np.testing.assert_array_equal(adv[full > 0], full[full > 0])  # positives untouched
        np.testing.assert_allclose(adv[full < 0], w * full[full < 0])
        assert np.isnan(adv[0 + 1, 1])  # an env-error episode stays out
    adv = advantages(r, grouped=True, std_normalize=True, negative_weight=0.0)
    # zero-advantage filtering then keeps only the above-mean episodes
    assert kept_episodes(adv, zero_adv_filter=True).tolist() == [
        [True, False, False, False],
        [True, False, False, True],
    ]


def test_zero_adv_filter():
    adv = advantages(R, grouped=True, std_normalize=True)
    assert kept_episodes(adv, zero_adv_filter=True).tolist() == [[True] * 4, [False] * 4]
    assert kept_episodes(adv, zero_adv_filter=False).all()


def _loss(lp, old, adv, mask, ratio, n):
    lp = torch.tensor(lp, requires_grad=True)
    loss, stats = policy_loss(
        lp,
        torch.tensor(old),
        torch.tensor(adv),
        torch.tensor(mask),
        importance_ratio=ratio,
        clip_eps=0.2,
        num_tokens=n,
    )
    loss.backward()
    return float(loss.detach()), lp.grad.numpy(), stats


def test_reinforce_loss_is_minus_adv_logprob_over_tokens():
    lp = [[-1.0, -2.0, -0.5]]
    loss, grad, _ = _loss(lp, lp, [2.0], [[0.0, 1.0, 1.0]], False, 4)  # the prompt token is masked out
    assert loss == pytest.approx(-2.0 * (-2.0 - 0.5) / 4)
    np.testing.assert_allclose(grad, [[0.0, -0.5, -0.5]])


def test_sequence_aggregation_weighs_every_completion_the_same():
    lp = torch.tensor([[-1.0, -2.0, -0.5, -0.5], [-3.0, -1.0, 0.0, 0.0]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0]])  # 4 and 2 completion tokens
    adv = torch.tensor([1.0, -2.0])
    seq, _ = policy_loss(
        lp,
        lp.detach(),
        adv,
        mask,
        importance_ratio=False,
        clip_eps=0.2,
        num_tokens=6,
        aggregation="sequence",
        num_sequences=4,
    )
    seq.backward()
    # per sequence: -A * mean logprob; summed over the micro-batch, divided by the batch's 4 sequences
    assert float(seq) == pytest.approx((-1.0 * (-4.0 / 4) + 2.0 * (-4.0 / 2)) / 4)
    np.testing.assert_allclose(lp.grad.numpy(), [[-1 / 16] * 4, [2 / 8, 2 / 8, 0.0, 0.0]])
    lp.grad = None
    tok, _ = policy_loss(lp, lp.detach(), adv, mask, importance_ratio=False, clip_eps=0.2, num_tokens=6)
    tok.backward()  # the study's token mean: every token 1/6, so the long completion pulls twice as hard
    np.testing.assert_allclose(lp.grad.numpy(), [[-1 / 6] * 4, [2 / 6, 2 / 6, 0.0, 0.0]], rtol=1e-6)
    with pytest.raises(ValueError, match="num_sequences"):
        policy_loss(
            lp, lp, adv, mask, importance_ratio=False, clip_eps=0.2, num_tokens=6, aggregation="sequence"
        )
    with pytest.raises(ValueError, match="aggregation"):
        policy_loss(lp, lp, adv, mask, importance_ratio=False, clip_eps=0.2, num_tokens=6, aggregation="seq")


def test_warmup_ramps_the_learning_rate_linearly():
    assert [warmup_lr(1e-3, u, 4) for u in range(6)] == pytest.approx(
        [2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3]
    )
    assert warmup_lr(1e-3, 0, 0) == 1e-3  # off: the study's constant rate


def test_ratio_one_gives_the_reinforce_gradient():
    lp = [[-1.0, -2.0]]
    _, g_ppo, st = _loss(lp, lp, [1.5], [[1.0, 1.0]], True, 2)
    _, g_rf, _ = _loss(lp, lp, [1.5], [[1.0, 1.0]], False, 2)
    np.testing.assert_allclose(g_ppo, g_rf, rtol=1e-6)
    assert st["clip_frac"] == 0.0 and st["ratio_mean"] == pytest.approx(1.0)


def test_ppo_clip_when_the_ratio_leaves_the_trust_region():
    # token 0: ratio e^0.5 = 1.65 > 1.2 with A > 0 -> clipped: objective 1.2 * A, zero gradient
    # token 1: ratio e^-0.5 = 0.61 < 0.8 with A > 0 -> unclipped branch is smaller: ratio * A, gradient ratio * A
    lp, old = [[0.0, -1.0]], [[-0.5, -0.5]]
    loss, grad, st = _loss(lp, old, [1.0], [[1.0, 1.0]], True, 2)
    r1 = math.exp(-0.5)
    assert loss == pytest.approx(-(1.2 + r1) / 2)
    np.testing.assert_allclose(grad, [[0.0, -r1 / 2]], rtol=1e-6)
    assert st["clip_frac"] == pytest.approx(0.5)
    # negative advantage: the high-ratio token is unclipped (pessimistic min) and keeps its gradient
    loss, grad, _ = _loss(lp, old, [-1.0], [[1.0, 1.0]], True, 2)
    r0 = math.exp(0.5)
    assert loss == pytest.approx((r0 + 0.8) / 2)
    np.testing.assert_allclose(grad, [[r0 / 2, 0.0]], rtol=1e-6)


def test_curriculum_prefers_tasks_near_the_target_with_variance():
    st = CurriculumState(alpha=1.0)
    st.update({"solved": [1.0] * 4, "hopeless": [-1.0] * 4, "learning": [1.0, -1.0, 1.0, -1.0]})
    tasks = ["solved", "hopeless", "learning", "unseen"]
    p = curriculum_weights(tasks, st, target_return=0.5, temperature=0.1)
    # scores: solved 0 - 0.5 = -0.5; hopeless 0 - 1.5 = -1.5; learning 1 - 0.5 = 0.5; unseen 1.0 (optimistic)
    z = np.exp(np.array([-0.5, -1.5, 0.5, 1.0]) / 0.1)
    np.testing.assert_allclose(p, z / z.sum())
    hot = curriculum_weights(tasks, st, target_return=0.5, temperature=100.0)
    assert hot.max() - hot.min() < 0.02  # high temperature -> near uniform
    assert (
        curriculum_weights(tasks, st, target_return=1.0, temperature=0.3)[0] > p[0]
    )  # target moves the mass
    with pytest.raises(ValueError, match="temperature"):
        curriculum_weights(tasks, st, target_return=0.5, temperature=0.0)


def test_curriculum_ema_and_state_round_trip():
    st = CurriculumState(alpha=0.5)
    st.update({"a": [1.0, -1.0]})
    st.update({"a": [1.0, 1.0]})
    assert st.mean["a"] == pytest.approx(0.5) and st.std("a") == pytest.approx(math.sqrt(1 - 0.25))
    assert CurriculumState.from_state_dict(st.state_dict()) == st


def test_checkpoint_selection_by_rolling_mean():
    scores = [0.1, 0.9, 0.2, 0.5, 0.6, 0.55]
    np.testing.assert_allclose(rolling_mean(scores)[:3], [0.1, 0.5, 0.4])
    # raw argmax is 1 (a spike); rolling means: .1 .5 .4 .533 .433 .55 -> index 5
    assert select_checkpoint(scores) == 5
    with pytest.raises(ValueError):
        select_checkpoint([])


def test_failed_steps_get_no_positive_advantage_when_not_credited(tiny):
    tiny_tok = tiny[1]
    from envs.protocol import Completion, Prompt, Step, Trajectory
    from trainers.grpo import build_batch

    msgs = ({"role": "user", "content": "Goal: click 3"},)

    def step(text: str, action: str | None, error: str = "") -> Step:
        return Step(Prompt(msgs), Completion(text), action, action_error=error)

    # a success that passed through a junk step and a refused click, and a failure with a junk step
    win = Trajectory(
        "t",
        0,
        "g",
        [step("th x", None), step('click("9")', 'click("9")', "hidden"), step('click("3")', 'click("3")')],
        success=True,
    )
    lose = Trajectory("t", 0, "g", [step("zz", None), step('click("4")', 'click("4")')])
    adv, keep = np.array([[1.0, -1.0]]), np.array([[True, True]])
    ex, advs, eps = build_batch([[win, lose]], adv, keep, tiny_tok, max_seq_len=64)
    assert advs == [1.0, 1.0, 1.0, -1.0, -1.0] and eps == [0, 0, 0, 1, 1]  # the study: every step shares it
    ex, advs, eps = build_batch([[win, lose]], adv, keep, tiny_tok, max_seq_len=64, credit_failed_steps=False)
    assert advs == [1.0, -1.0, -1.0] and eps == [0, 1, 1]  # only the success's good step is reinforced
    assert [e.num_completion_tokens > 0 for e in ex] == [True] * 3
