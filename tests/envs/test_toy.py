"""The toy env: deterministic pages, the browser envs' action syntax, tunable difficulty."""

from __future__ import annotations

import numpy as np
import pytest

from envs.actions import parse_action
from envs.registry import goals
from envs.runner import open_runner
from envs.scripted import ScriptedPolicy
from envs.toy import TOY_TASKS, ToyEnv


@pytest.mark.parametrize("task", TOY_TASKS)
def test_solution_solves_every_task(task: str) -> None:
    for seed in range(5):
        env = ToyEnv(num_distractors=2, num_steps=3)
        env.reset(f"toy.{task}", seed)
        plan = env.solution()
        for k, text in enumerate(plan):
            _, reward, done, error = env.step(parse_action(text))
            assert error == ""
            assert done == (k == len(plan) - 1)
        assert reward == 1.0


def test_reset_is_deterministic_per_seed_and_differs_across_seeds() -> None:
    a, b, c = ToyEnv(), ToyEnv(), ToyEnv()
    assert a.reset("toy.login", 4) == b.reset("toy.login", 4)
    assert a.reset("toy.login", 4) != c.reset("toy.login", 5)


def test_wrong_click_fails_and_bad_targets_are_action_errors() -> None:
    env = ToyEnv(num_distractors=1)
    obs = env.reset("toy.click-button", 0)
    target = env.solution()[0]
    wrong = next(e["bid"] for e in obs["elements"] if f'"{e["bid"]}"' not in target)
    _, reward, done, error = env.step(parse_action('click("999")'))
    assert (reward, done) == (0.0, False) and "no element with bid '999'" in error
    _, reward, done, error = env.step(parse_action(f'fill("{wrong}", "x")'))
    assert "not a textbox" in error and not done
    _, reward, done, _ = env.step(parse_action(f'click("{wrong}")'))
    assert (reward, done) == (-1.0, True)


def test_difficulty_knobs_change_the_page() -> None:
    easy, hard = ToyEnv(num_distractors=0, num_steps=2), ToyEnv(num_distractors=5, num_steps=4)
    assert len(easy.reset("toy.click-sequence", 1)["elements"]) == 2
    assert len(hard.reset("toy.click-sequence", 1)["elements"]) == 9
    assert len(hard.solution()) == 4
    with pytest.raises(ValueError, match="num_distractors=-1"):
        ToyEnv(num_distractors=-1)


def test_random_valid_clicks_succeed_by_chance_at_low_difficulty() -> None:
    rng = np.random.default_rng(0)
    wins = 0
    for seed in range(400):
        env = ToyEnv(num_distractors=1)
        obs = env.reset("toy.click-button", seed)
        bid = rng.choice([e["bid"] for e in obs["elements"]])
        wins += env.step(parse_action(f'click("{bid}")'))[1] > 0
    assert 0.4 < wins / 400 < 0.6  # 1 target among 2 buttons


def test_toy_prompts_are_short() -> None:
    with open_runner("toy", num_distractors=1, max_steps=3) as runner:
        trajs = runner.run_episodes(
            ScriptedPolicy(),
            goals("toy.train")[::7],
            temperature=1.0,
            max_new_tokens=16,
            error_log=True,
        )
    sizes = [sum(len(m["content"]) for m in s.prompt.messages) for t in trajs for s in t.steps]
    assert max(sizes) < 450, max(sizes)


def test_stable_bids_are_fixed_per_label_and_random_bids_are_not() -> None:
    def bids_of(mode: str) -> dict[str, set[str]]:
        seen: dict[str, set[str]] = {}
        for task in TOY_TASKS:
            for seed in range(30):
                env = ToyEnv(num_distractors=3, bids=mode)
                for e in env.reset(f"toy.{task}", seed)["elements"]:
                    seen.setdefault(e["text"], set()).add(e["bid"])
        return seen

    stable, random = bids_of("stable"), bids_of("random")
    assert all(len(b) == 1 for b in stable.values())  # one bid per label, every task and seed
    assert len({next(iter(b)) for b in stable.values()}) == len(stable)  # distinct labels, distinct bids
    assert all(len(b) > 1 for label, b in random.items() if label in ("apple", "submit", "username"))
    # same page and goal as the random layout of the same seed, only the bids differ; the plan still solves it
    a, b = ToyEnv(bids="stable"), ToyEnv(bids="random")
    oa, ob = a.reset("toy.login", 3), b.reset("toy.login", 3)
    assert oa["goal"] == ob["goal"]
    assert [e["text"] for e in oa["elements"]] == [e["text"] for e in ob["elements"]]
    for text in a.solution():
        reward = a.step(parse_action(text))[1]
    assert reward == 1.0
    with pytest.raises(ValueError, match="bids='fixed'"):
        ToyEnv(bids="fixed")
    with open_runner("toy", bids="stable", max_steps=3) as runner:
        (traj,) = runner.run_episodes(
            ScriptedPolicy(), [("toy.click-button", 1)], temperature=1.0, max_new_tokens=16, error_log=True
        )
    assert traj.success and all(
        e["bid"] == next(iter(stable[e["text"]])) for e in traj.steps[0].prompt.observation["elements"]
    )
