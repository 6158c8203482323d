"""Action parsing: one action, literal arguments, nothing executed."""

from __future__ import annotations

import pytest

from envs.actions import Action, ParseError, parse_action


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ('click("12")', 'click("12")'),
        ("click('12')", 'click("12")'),
        ("click(12)", 'click("12")'),
        ('The OK button is 4.\nclick("4")', 'click("4")'),
        ('fill("3", "hello world")', 'fill("3", "hello world")'),
        ('```python\nfill("3", "x")\n```', 'fill("3", "x")'),
        ('select_option("7", ["a", "b"])', 'select_option("7", ["a", "b"])'),
        ("scroll(0, -200)", "scroll(0, -200)"),
        ('click(bid="9", button="right")', 'click("9", "right")'),
        ("noop()", "noop()"),
    ],
)
def test_valid_actions_parse_to_canonical_text(text: str, canonical: str) -> None:
    assert str(parse_action(text)) == canonical


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('click("1"); import os; os.system("touch /tmp/pwned")', "could not parse"),
        ('__import__("os").system("touch /tmp/pwned")', "not an action call"),
        ('click("1")\nimport os', "could not parse"),
        ("exec('print(1)')", "unknown action"),
        ('click(open("/etc/passwd").read())', "must be a literal"),
        ("click(x)", "must be a literal"),
        ('click("1") + click("2")', "not an action call"),
        ('fill("3")', "needs argument"),
        ('click("1", "2", "3")', "at most 2"),
        ('click("1", button="nose")', "button must be"),
        ('click(bid="1", bid="2")', "given twice"),
        ("", "empty answer"),
        ('page.click("1")', "not an action call"),
        ("noop(100000000)", "wait_ms must be between 0 and 5000"),
        ("noop(-1)", "wait_ms must be between"),
    ],
)
def test_malicious_or_malformed_completions_are_parse_errors(text: str, message: str, tmp_path) -> None:
    with pytest.raises(ParseError, match=message):
        parse_action(text)


def test_malicious_completion_executes_nothing(tmp_path) -> None:
    marker = tmp_path / "pwned"
    for text in (f'click("1"); open("{marker}", "w")', f'__import__("pathlib").Path("{marker}").touch()'):
        with pytest.raises(ParseError):
            parse_action(text)
    assert not marker.exists()


def test_code_is_built_from_literals_with_repr() -> None:
    action = parse_action('fill("3", "a\\") ; import os ; (\\"")')
    assert action == Action("fill", ("3", 'a") ; import os ; ("'))
    code = action.to_code()
    assert code == "fill('3', 'a\") ; import os ; (\"')"
    # the code string is one call whose arguments are exactly the validated literals
    assert parse_action(code) == action
