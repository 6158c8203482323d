"""The episode runner on the toy env: lockstep batching, success and steps (returns: trainers), error log, retries,
JSONL."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from envs.jsonl import read_jsonl, write_jsonl
from envs.protocol import Completion, Prompt
from envs.registry import goals
from envs.runner import open_runner
from envs.scripted import ScriptedPolicy
from envs.toy import ToyHost
from trainers.returns import episode_return


class CountingPolicy:
    """Wraps a policy; records the batch size of every generate call."""

    def __init__(self, inner, bad_first: bool = False) -> None:
        self.inner, self.batches, self.bad_first = inner, [], bad_first

    def generate(
        self, prompts: Sequence[Prompt], *, temperature: float, max_new_tokens: int
    ) -> list[Completion]:
        self.batches.append(len(prompts))
        if self.bad_first and len(self.batches) == 1:
            return [Completion(text='click("1"); import os') for _ in prompts]
        return self.inner.generate(prompts, temperature=temperature, max_new_tokens=max_new_tokens)


def _run(policy, goal_list, **kw):
    opts = dict(num_distractors=2, num_steps=3)
    opts.update(kw.pop("options", {}))
    with open_runner(
        "toy", workers=kw.pop("workers", 2), max_steps=kw.pop("max_steps", 10), **opts
    ) as runner:
        trajs = runner.run_episodes(
            policy, goal_list, temperature=1.0, max_new_tokens=32, error_log=kw.pop("error_log", True)
        )
    return trajs


def test_scripted_policy_solves_all_toy_splits_in_lockstep() -> None:
    goal_list = goals("toy.heldout_goals") + goals("toy.heldout_tasks")
    policy = CountingPolicy(ScriptedPolicy())
    trajs = _run(policy, goal_list, options={"episodes_per_worker": 100})
    assert [(t.task, t.seed) for t in trajs] == goal_list
    assert all(t.success and t.env_error == "" for t in trajs)
    longest = max(t.num_steps for t in trajs)
    assert len(policy.batches) == longest  # one generate call per round of steps
    assert policy.batches[0] == len(goal_list)
    for t in trajs:
        assert episode_return(t.success, t.num_steps, 0.9) == pytest.approx(0.9**t.num_steps)


def test_parse_errors_count_as_steps_and_reach_the_prompt_only_with_error_log() -> None:
    goal_list = goals("toy.heldout_goals", tasks=["click-button"])
    for error_log in (True, False):
        trajs = _run(CountingPolicy(ScriptedPolicy(), bad_first=True), goal_list, error_log=error_log)
        for t in trajs:
            assert t.success and t.num_steps == 2
            assert t.steps[0].action is None and t.steps[0].action_error.startswith("parse error")
            second = t.steps[1].prompt.messages[1]["content"]
            assert ("Last action error: parse error" in second) == error_log
            assert episode_return(t.success, t.num_steps, 0.9) == pytest.approx(0.9**2)


def test_step_limit_ends_failed_episodes_with_negative_return() -> None:
    class Noop:
        def generate(self, prompts, *, temperature, max_new_tokens):
            return [Completion(text="noop()") for _ in prompts]

    trajs = _run(Noop(), goals("toy.heldout_goals", tasks=["login"]), max_steps=4)
    assert all(not t.success and t.num_steps == 4 for t in trajs)
    assert all(episode_return(t.success, t.num_steps, 0.5) == -(0.5**4) for t in trajs)


def test_env_errors_are_retried_then_reported_not_counted_as_failures(monkeypatch) -> None:
    calls = {"n": 0}
    real_reset = ToyHost.reset

    def flaky_reset(self, eid, task, seed):
        calls["n"] += 1
        if seed == 0 or (seed == 1 and calls["n"] <= 3):
            raise TimeoutError("page did not load")
        return real_reset(self, eid, task, seed)

    monkeypatch.setattr(ToyHost, "reset", flaky_reset)
    trajs = _run(
        ScriptedPolicy(),
        [("toy.click-button", 0), ("toy.click-button", 1), ("toy.login", 2)],
        options={"max_attempts": 3},
    )
    dead, retried, clean = trajs
    assert dead.env_error == "TimeoutError: page did not load" and dead.attempts == 3 and dead.num_steps == 0
    assert retried.success and retried.env_error == "" and retried.attempts == 2
    assert clean.success and clean.attempts == 1


def test_unknown_tasks_and_bad_options_fail_early() -> None:
    with pytest.raises(ValueError, match="unknown toy task"):
        _run(ScriptedPolicy(), [("toy.nope", 0)])
    with pytest.raises(TypeError):
        open_runner("toy", colour="red")
    with pytest.raises(ValueError, match="max_steps=0"):
        open_runner("toy", max_steps=0)
    with pytest.raises(ValueError, match="gamma=0"):
        episode_return(True, 0, 0.0)  # the discount is the trainers' (envs report success and steps)


def test_jsonl_round_trip(tmp_path) -> None:
    trajs = _run(
        ScriptedPolicy(), goals("toy.heldout_tasks")[:4], options={"log_path": str(tmp_path / "log.jsonl")}
    )
    back = read_jsonl(write_jsonl(trajs, tmp_path / "t.jsonl"))
    assert [t.to_json() for t in back] == [t.to_json() for t in trajs]
    assert len(read_jsonl(tmp_path / "log.jsonl")) == 4


def test_worker_start_up_failure_is_raised_in_the_caller(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("AGENTSWEEP_CHROMIUM", str(tmp_path / "no-chromium"))
    with pytest.raises(RuntimeError, match="env worker failed to start: RuntimeError: chromium not found at"):
        open_runner("miniwob", workers=1, worker_timeout_s=120)


def test_resets_go_to_a_worker_with_an_idle_page_of_their_task_else_the_least_loaded() -> None:
    from envs.runner import _route

    idle = {0: ["miniwob.a", "miniwob.b"], 1: ["miniwob.c"], 2: []}
    # a worker holding the task wins over a less loaded one; its most recently used page of the task is taken
    assert _route("miniwob.c", [0, 1, 2], [0, 1, 0], idle, capacity=2) == 1 and idle[1] == []
    # no idle page of the task anywhere: the least loaded (lowest index on ties); it takes over its MRU page
    assert _route("miniwob.d", [0, 1, 2], [0, 0, 1], idle, capacity=2) == 0 and idle[0] == ["miniwob.a"]
    # a full worker is never chosen, a down one (not in `up`) neither; None when all are full
    assert _route("miniwob.a", [0, 1, 2], [2, 0, 1], idle, capacity=2) == 1 and idle[0] == ["miniwob.a"]
    assert _route("miniwob.a", [1, 2], [0, 1, 0], idle, capacity=2) == 2
    assert _route("miniwob.a", [0, 1], [2, 2, 0], idle, capacity=2) is None


def test_routing_keeps_the_queue_order_and_each_worker_below_its_capacity() -> None:
    """Toy hosts report no idle pages: episodes spread least-loaded first, batches as before."""
    policy = CountingPolicy(ScriptedPolicy())
    trajs = _run(policy, goals("toy.train")[:7], workers=2, options={"episodes_per_worker": 2})
    assert [(t.task, t.seed) for t in trajs] == [tuple(g) for g in goals("toy.train")[:7]]
    assert max(policy.batches) == 4 and all(t.success for t in trajs)
