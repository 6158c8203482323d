"""Worker messages: one typed result per operation, in order; a host's exception is that operation's env error."""

from __future__ import annotations

import pickle

from envs.actions import parse_action
from envs.messages import Act, Batch, Close, Closed, EnvFailed, Observed, Reset, Results, Started
from envs.toy import TOY_TASKS, ToyEnv, ToyHost
from envs.worker import execute


def test_a_batch_gives_one_typed_result_per_operation_in_order() -> None:
    host = ToyHost(num_distractors=1)
    solution = ToyEnv(num_distractors=1)
    solution.reset("toy.click-button", 4)
    (click,) = solution.solution()
    first = execute(host, Batch((Reset(0, "toy.click-button", 4), Reset(1, "toy.nope", 0))))
    assert isinstance(first.items[0], Started) and first.items[0].observation["task"] == "toy.click-button"
    assert first.items[1] == EnvFailed(
        "ValueError: unknown toy task 'toy.nope'; toy tasks: " + ", ".join(f"toy.{t}" for t in TOY_TASKS)
    )
    # closes and resets run first, then every action of the batch in one step_many; results keep the batch order
    second = execute(host, Batch((Act(0, parse_action(click)), Close(7), Act(9, parse_action('click("1")')))))
    observed, closed, failed = second.items
    assert isinstance(observed, Observed) and (observed.reward, observed.done, observed.action_error) == (
        1.0,
        True,
        "",
    )
    assert closed == Closed()
    assert isinstance(failed, EnvFailed) and failed.message.startswith(
        "KeyError"
    )  # no episode 9 on this host
    assert pickle.loads(pickle.dumps(second)) == second  # what crosses the pipe is plain data
    assert isinstance(second, Results)
