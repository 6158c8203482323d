"""Prompt building: truncation with the cut stated, history, error log, versioning."""

from __future__ import annotations

from envs.prompts import CHARS_PER_TOKEN, PROMPT_VERSION, build_prompt, truncate


def test_truncate_states_the_cut() -> None:
    text = "x" * 1000
    assert truncate(text, 1000) == text
    cut = truncate(text, 10)
    assert cut.startswith("x" * 10 * CHARS_PER_TOKEN)
    assert cut.endswith(f"[... truncated: {1000 - 10 * CHARS_PER_TOKEN} of 1000 characters cut]")


def test_prompt_parts_and_views() -> None:
    obs = {
        "task": "miniwob.click-test",
        "goal": "Click the button.",
        "html": '<button bid="4">Go</button>',
        "compact": '[4] button "Go"',
        "seed": 3,
    }
    p = build_prompt(obs, family="miniwob", history=['click("9")'], last_error="no element 9", error_log=True)
    user = p.messages[1]["content"]
    assert (
        'bid="4"' in user
        and 'Previous actions: click("9")' in user
        and "Last action error: no element 9" in user
    )
    assert "fill(bid, value)" in p.messages[0]["content"]
    assert p.task == "miniwob.click-test" and p.seed == 3
    assert p.observation["prompt_version"] == PROMPT_VERSION and p.observation["step"] == 1
    q = build_prompt(
        obs, family="miniwob", history=[], last_error="no element 9", error_log=False, observation="compact"
    )
    assert '[4] button "Go"' in q.messages[1]["content"] and "error" not in q.messages[1]["content"]
    assert q.observation["last_action_error"] == ""
