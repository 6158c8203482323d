"""Action parsing: one action, literal arguments, nothing executed."""

from __future__ import annotations

import random

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


@pytest.mark.parametrize(
    "text",
    [
        "scroll(" + "-" * 1000 + "1, 0)",  # RecursionError before: nested unary minus
        "noop(0x" + "f" * 3600 + ")",  # ValueError before: integer string conversion limit
        "click(" + "9" * 5000 + ")",
        "scroll(1e308, -1e308)",
        "scroll(1e999, 0)",
        "noop(" + "(" * 300 + "1" + ")" * 300 + ")",
        'fill("1", "' + "x" * 100_000 + '")',
        "```" * 20_000,
        'click("1\x00")',
        "click(\ud800)",
    ],
)
def test_hostile_completions_are_parse_errors_not_crashes(text: str) -> None:
    with pytest.raises(ParseError):
        parse_action(text)


def _fuzz_strings(rng: random.Random, n: int) -> list[str]:
    """Deep nesting, huge literals, unicode, NUL bytes and near misses of valid actions."""
    valid = [
        'click("12")',
        'fill("3", "hello")',
        "scroll(0, -200)",
        'select_option("7", ["a", "b"])',
        'click(bid="9", button="right")',
        "noop(500)",
        'press("5", "Enter")',
    ]
    alphabet = "()[]{},.\"'-+*=_x0123456789e \n\t\\`#;:"
    out: list[str] = []
    for k in range(n):
        kind = k % 6
        base = rng.choice(valid)
        if kind == 0:  # near miss: a few random edits of a valid action
            chars = list(base)
            for _ in range(rng.randint(1, 4)):
                pos = rng.randrange(len(chars) + 1)
                op = rng.randrange(3)
                if op == 0 and chars:
                    del chars[min(pos, len(chars) - 1)]
                elif op == 1:
                    chars.insert(pos, rng.choice(alphabet))
                elif chars:
                    chars[min(pos, len(chars) - 1)] = rng.choice(alphabet)
            out.append("".join(chars))
        elif kind == 1:  # deep nesting of brackets, parens, unary operators or calls
            depth = rng.choice([10, 100, 1000, 5000])
            opener, closer = rng.choice(
                [("(", ")"), ("[", "]"), ("-", ""), ("~", ""), ("not ", ""), ("f(", ")")]
            )
            out.append(f"{rng.choice(['scroll', 'noop', 'click'])}({opener * depth}1{closer * depth}, 0)")
        elif kind == 2:  # huge literals
            digits = rng.choice([100, 4000, 5000, 20_000])
            lit = rng.choice(
                [
                    "9" * digits,
                    "0x" + "f" * digits,
                    "1e" + "9" * min(digits, 400),
                    "1." + "5" * digits,
                    '"' + "a" * digits + '"',
                    "0b" + "1" * digits,
                    "1_" * (digits // 2) + "1",
                ]
            )
            out.append(f"{rng.choice(['scroll', 'noop', 'click', 'fill'])}({lit}, {lit})")
        elif kind == 3:  # unicode, including lone surrogates and control characters
            text = "".join(chr(rng.randrange(0x110000)) for _ in range(rng.randint(1, 40)))
            out.append(rng.choice([text, f'click("{text}")', f"click({text})", base + text]))
        elif kind == 4:  # NUL bytes and other control characters anywhere
            pos = rng.randrange(len(base) + 1)
            out.append(base[:pos] + rng.choice(["\x00", "\x00" * 10, "\x1b", "\r", "\u2028"]) + base[pos:])
        else:  # random junk from the syntax alphabet, sometimes fenced
            junk = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80)))
            out.append(rng.choice([junk, f"```python\n{junk}\n```", f"{junk}\n{base}", f"{base}({junk})"]))
    return out


def test_fuzzed_completions_give_actions_or_parse_errors_only() -> None:
    strings = _fuzz_strings(random.Random(20261201), 10_000)
    num_actions = 0
    for text in strings:
        try:
            action = parse_action(text)
        except ParseError:
            continue
        num_actions += 1
        assert parse_action(str(action)) == action  # an accepted action is canonical and re-parses
    assert len(strings) == 10_000 and 0 < num_actions < len(strings)
