"""Action parsing: one action per step from BrowserGym's bid action set, literal arguments only.

A completion is free text: optional reasoning lines, then the action on its last non-empty line
(a ```` ``` ```` fence around it is allowed). The action line is parsed with `ast` (never evaluated):
it must be exactly one call of a known action whose arguments are literals (str, int, float, bool, or a
list of str where the signature allows it). Anything else is a `ParseError` that the runner shows to the
agent as the step's error; the step still counts. Model text is never executed or passed through as code:
`Action.to_code()` builds BrowserGym code from the validated literals with `repr`.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["ACTIONS", "Action", "ParseError", "parse_action", "action_space_doc"]


@dataclass(frozen=True)
class _Spec:
    params: tuple[tuple[str, tuple[type, ...]], ...]
    """(name, allowed literal types) in order."""
    num_required: int
    doc: str


_STR, _NUM, _BOOL = (str,), (int, float), (bool,)
_STRS = (str, list)  # a str or a list of str

ACTIONS: dict[str, _Spec] = {
    "noop": _Spec((("wait_ms", _NUM),), 0, "noop(wait_ms=1000): do nothing and wait"),
    "click": _Spec((("bid", _STR), ("button", _STR)), 1, 'click(bid): click an element, e.g. click("12")'),
    "dblclick": _Spec((("bid", _STR), ("button", _STR)), 1, "dblclick(bid): double-click an element"),
    "hover": _Spec((("bid", _STR),), 1, "hover(bid): move the mouse over an element"),
    "fill": _Spec(
        (("bid", _STR), ("value", _STR)), 2, 'fill(bid, value): type text into a field, e.g. fill("5", "abc")'
    ),
    "clear": _Spec((("bid", _STR),), 1, "clear(bid): empty a field"),
    "focus": _Spec((("bid", _STR),), 1, "focus(bid): focus an element"),
    "check": _Spec((("bid", _STR),), 1, "check(bid): tick a checkbox"),
    "uncheck": _Spec((("bid", _STR),), 1, "uncheck(bid): untick a checkbox"),
    "select_option": _Spec(
        (("bid", _STR), ("options", _STRS)), 2, "select_option(bid, options): pick option(s)"
    ),
    "press": _Spec(
        (("bid", _STR), ("key_comb", _STR)), 2, 'press(bid, key_comb): press keys, e.g. press("5", "Enter")'
    ),
    "scroll": _Spec((("delta_x", _NUM), ("delta_y", _NUM)), 2, "scroll(delta_x, delta_y): scroll the page"),
    "drag_and_drop": _Spec((("from_bid", _STR), ("to_bid", _STR)), 2, "drag_and_drop(from_bid, to_bid)"),
    "keyboard_type": _Spec((("text", _STR),), 1, "keyboard_type(text): type at the focused element"),
    "keyboard_press": _Spec((("key", _STR),), 1, "keyboard_press(key): press a key"),
    "send_msg_to_user": _Spec((("text", _STR),), 1, "send_msg_to_user(text): answer in the chat"),
}

_BUTTONS = ("left", "middle", "right")
_MAX_ARG_CHARS = 1000
_MAX_LINE_CHARS = 4 * _MAX_ARG_CHARS
"""Longest action line parsed (a fill with a 1,000-character value fits); longer lines are refused unparsed."""
_MAX_TEXT_CHARS = 50_000
"""Longest completion looked at: hostile text must not cost a worker more than a bounded scan."""
_MAX_ABS_NUMBER = 10**9
"""Largest magnitude of a numeric argument (pixels of scroll, ms of wait); bids of more digits are refused."""
_MAX_WAIT_MS = 5000  # a model must not stall a worker (that would read as an env error)


class ParseError(ValueError):
    """The completion holds no single valid action; the message is what the agent sees."""


@dataclass(frozen=True)
class Action:
    """A validated action: a known name and literal arguments (positional, in signature order)."""

    name: str
    args: tuple[Any, ...]

    def __str__(self) -> str:
        """Canonical text, e.g. `click("12")` (JSON-quoted strings)."""
        return f"{self.name}({', '.join(json.dumps(a, ensure_ascii=False) for a in self.args)})"

    def to_code(self) -> str:
        """BrowserGym code for this action, built from the validated literals with `repr`."""
        return f"{self.name}({', '.join(repr(a) for a in self.args)})"

    def kwargs(self) -> dict[str, Any]:
        return {name: a for (name, _), a in zip(ACTIONS[self.name].params, self.args, strict=False)}


def action_space_doc(names: tuple[str, ...] | None = None) -> str:
    """One line per allowed action, for the prompt."""
    return "\n".join(ACTIONS[n].doc for n in (names or tuple(ACTIONS)))


def _literal(node: ast.expr, types: tuple[type, ...], where: str) -> Any:
    if isinstance(node, ast.Constant) and not isinstance(node.value, bytes | type(None) | complex):
        value = node.value
        if isinstance(value, bool) and bool not in types:
            raise ParseError(f"{where} must be {_type_names(types)}, got {value!r}")
        if (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and str in types
            and int not in types
            and abs(value) <= _MAX_ABS_NUMBER  # str() of a huge int raises; such a bid is refused below
        ):
            value = str(value)  # click(12) -> click("12"): bids are strings
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise ParseError(f"{where} must be {_type_names(types)}, got {value!r}")
        if isinstance(value, str) and len(value) > _MAX_ARG_CHARS:
            raise ParseError(f"{where} is longer than {_MAX_ARG_CHARS} characters")
        if isinstance(value, int | float) and not abs(value) <= _MAX_ABS_NUMBER:  # also refuses inf and nan
            raise ParseError(f"{where} must be a number between -{_MAX_ABS_NUMBER} and {_MAX_ABS_NUMBER}")
        return value
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, ast.USub)
        and isinstance(node.operand, ast.Constant)  # one minus sign, never a nest of them
        and int in types
    ):
        return -_literal(node.operand, _NUM, where)
    if isinstance(node, ast.List) and list in types:
        return [_literal(e, _STR, where) for e in node.elts]
    raise ParseError(f"{where} must be a literal {_type_names(types)}, got `{ast.unparse(node)[:60]}`")


def _type_names(types: tuple[type, ...]) -> str:
    return " or ".join("list of str" if t is list else t.__name__ for t in types)


def _action_line(text: str) -> str:
    body = text.strip()
    fence = re.findall(r"```(?:python)?\s*\n?(.*?)```", body, flags=re.S)
    if fence:
        body = fence[-1].strip()
    lines = [ln.strip() for ln in body.splitlines() if ln.strip()]
    if not lines:
        raise ParseError('empty answer: end your answer with one action, e.g. click("12")')
    return lines[-1]


def parse_action(text: str) -> Action:
    """Parse the action on the completion's last non-empty line.

    Hostile text cannot crash or stall the caller: the completion and the action line are capped
    (`_MAX_TEXT_CHARS`, `_MAX_LINE_CHARS`), numbers are bounded (`_MAX_ABS_NUMBER`), and any failure inside
    parsing (deep nesting, literals Python refuses to convert, NUL bytes, ...) is a `ParseError`.

    Args:
        text: the raw completion (reasoning lines, then one action).

    Returns:
        The validated `Action`.

    Raises:
        ParseError: with a message for the agent when the line is not exactly one allowed call with literal args.
    """
    if len(text) > _MAX_TEXT_CHARS:
        raise ParseError(f"answer of {len(text)} characters is too long: end a short answer with one action")
    line = _action_line(text)
    if len(line) > _MAX_LINE_CHARS:
        raise ParseError(f"action line of {len(line)} characters is longer than {_MAX_LINE_CHARS}")
    try:
        return _parse_line(line)
    except ParseError:
        raise
    except (Exception, RecursionError) as e:  # noqa: BLE001 - whatever the text does to ast is the agent's error
        raise ParseError(
            f'could not parse `{line[:80]}` ({type(e).__name__}): write exactly one action, e.g. click("12")'
        ) from None


def _parse_line(line: str) -> Action:
    try:
        tree = ast.parse(line, mode="eval")
    except SyntaxError:
        raise ParseError(
            f'could not parse `{line[:80]}`: write exactly one action, e.g. click("12")'
        ) from None
    call = tree.body
    if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
        raise ParseError(f'`{line[:80]}` is not an action call: write exactly one action, e.g. click("12")')
    name = call.func.id
    spec = ACTIONS.get(name)
    if spec is None:
        raise ParseError(f"unknown action {name!r}; allowed: {', '.join(ACTIONS)}")
    if len(call.args) > len(spec.params):
        raise ParseError(f"{name} takes at most {len(spec.params)} arguments, got {len(call.args)}")
    values: dict[str, Any] = {}
    for (pname, types), node in zip(spec.params, call.args, strict=False):
        values[pname] = _literal(node, types, f"{name}: argument {pname!r}")
    names = [p for p, _ in spec.params]
    for kw in call.keywords:
        if kw.arg is None or kw.arg not in names:
            raise ParseError(f"{name} has no argument {kw.arg!r}; arguments: {', '.join(names)}")
        if kw.arg in values:
            raise ParseError(f"{name}: argument {kw.arg!r} given twice")
        values[kw.arg] = _literal(kw.value, dict(spec.params)[kw.arg], f"{name}: argument {kw.arg!r}")
    missing = [p for p in names[: spec.num_required] if p not in values]
    if missing:
        raise ParseError(f"{name} needs argument(s) {', '.join(missing)}")
    if name == "noop" and not 0 <= values.get("wait_ms", 0) <= _MAX_WAIT_MS:
        raise ParseError(f"noop: wait_ms must be between 0 and {_MAX_WAIT_MS}, got {values['wait_ms']!r}")
    if "button" in values and values["button"] not in _BUTTONS:
        raise ParseError(f"{name}: button must be one of {_BUTTONS}, got {values['button']!r}")
    args: list[Any] = []
    for p in names:  # positional up to the last given argument, defaults never invented
        if p not in values:
            break
        args.append(values[p])
    if len(args) != len(values):
        raise ParseError(f"{name}: give arguments in order ({', '.join(names)})")
    return Action(name, tuple(args))
