"""A text-only toy web env: a fake page of numbered elements, the browser envs' action syntax and parser.

No browser, microsecond steps, deterministic per (task, seed). The page is a list of elements, one a line:

    [3] button "apple"
    [4] textbox "name" value=""
    [5] checkbox "red" checked=false

Actions are parsed by `envs.actions.parse_action` exactly as for MiniWoB++ (`click("3")`, `fill("4", "cat")`,
`check("5")`, ...). Bids are random small integers drawn per seed, so a policy must read the page (`bids="random"`,
the default), or (`bids="stable"`) fixed per label, the same on every page, as on a site whose element ids do not
change between visits (MiniWoB++ bids for a fixed layout, ServiceNow's element ids): a policy can then learn which
bid each label has instead of looking it up on the page. Finding the bid next to a label on the page is an
in-context lookup that the small students here do not learn in minutes on CPU (benchmarks/RESULTS.md, trainers);
the stable layout keeps the choice among distractors and the multi-step plans but not that lookup.

Tasks (`toy.<name>`; training tasks first, then the held-out ones):

- `click-button`: "Click the button X." One step; clicking another button fails the episode.
- `click-sequence`: "Click the buttons X, Y in this order." `num_steps` clicks (default 2); a wrong click fails.
- `fill-text`: "Type W into the textbox L and press Submit." fill then click Submit; Submit with a wrong value fails.
- `check-boxes`: "Tick X, Y and press Submit." `num_steps - 1` boxes then Submit; a wrong set at Submit fails.
- `login`: "Log in as U with password P." fill user, fill password, click Login.
- held out, `click-link`: "Follow the link X." like click-button with links (unseen element type).
- held out, `fill-two`: "Type A into L1 and B into L2 and press Submit." (unseen composition of fill-text).

Difficulty: `num_distractors` extra elements per page (default 1: a random valid click succeeds half the time
on `click-button`), `num_steps` for the multi-step tasks (default 2). Actions that target no element, or that do
not fit the element (fill on a button), give an action error and change nothing; the episode goes on.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np

from envs.actions import Action
from envs.choices import check_choice
from envs.hosts import StepOutcome, step_each

__all__ = [
    "BidMode",
    "BID_MODES",
    "TOY_TASKS",
    "TOY_TRAIN_TASKS",
    "TOY_HELDOUT_TASKS",
    "ToyEnv",
    "ToyElement",
    "ToySettings",
    "ToyHost",
    "sample_corpus",
]

TOY_TRAIN_TASKS = ("click-button", "click-sequence", "fill-text", "check-boxes", "login")
TOY_HELDOUT_TASKS = ("click-link", "fill-two")
TOY_TASKS = TOY_TRAIN_TASKS + TOY_HELDOUT_TASKS

_WORDS = (
    "apple",
    "berry",
    "cloud",
    "delta",
    "eagle",
    "flute",
    "grape",
    "honey",
    "igloo",
    "jelly",
    "koala",
    "lemon",
    "mango",
    "noble",
    "olive",
    "pearl",
    "quail",
    "river",
    "stone",
    "tiger",
    "ultra",
    "vivid",
    "whale",
    "zebra",
)
_FIELDS = ("name", "city", "email", "note", "code")
_FIXED_LABELS = ("submit", "username", "password", "login")
BidMode = Literal["random", "stable"]
"""Toy bids: drawn per seed (`random`), or one fixed bid per label on every page (`stable`)."""
BID_MODES: tuple[BidMode, ...] = get_args(BidMode)
# bids="stable": one bid per label for every page, a fixed permutation (never changes: it defines the toy site)
_LABELS = _WORDS + _FIELDS + _FIXED_LABELS
_STABLE_BIDS = {
    label: str(int(bid))
    for label, bid in zip(
        _LABELS, np.random.default_rng(20261130).permutation(np.arange(1, 100)), strict=False
    )
}
_ACTIONS = ("click", "fill", "check", "uncheck")


@dataclass
class ToyElement:
    bid: str
    kind: str  # button | link | textbox | checkbox
    label: str
    value: str = ""
    checked: bool = False

    def line(self) -> str:
        if self.kind == "textbox":
            return f'[{self.bid}] textbox "{self.label}" value="{self.value}"'
        if self.kind == "checkbox":
            return f'[{self.bid}] checkbox "{self.label}" checked={str(self.checked).lower()}'
        return f'[{self.bid}] {self.kind} "{self.label}"'


@dataclass
class ToyEnv:
    """One toy episode. `reset` draws the page and goal from (task, seed); `step` applies one parsed action."""

    num_distractors: int = 1
    num_steps: int = 2
    bids: BidMode = "random"
    task: str = ""
    seed: int = 0
    goal: str = ""
    elements: list[ToyElement] = field(default_factory=list)
    _plan: list[tuple[str, str]] = field(default_factory=list)  # what must happen, in order: (kind, detail)
    _clicked: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.num_distractors < 0:
            raise ValueError(f"num_distractors={self.num_distractors} must be >= 0")
        if self.num_steps < 1:
            raise ValueError(f"num_steps={self.num_steps} must be >= 1")
        check_choice("bids", self.bids, BID_MODES)

    def reset(self, task: str, seed: int) -> dict:
        name = task.removeprefix("toy.")
        if name not in TOY_TASKS:
            raise ValueError(
                f"unknown toy task {task!r}; toy tasks: {', '.join('toy.' + t for t in TOY_TASKS)}"
            )
        self.task, self.seed = f"toy.{name}", int(seed)
        rng = np.random.default_rng(
            [zlib.crc32(name.encode()), int(seed), self.num_distractors, self.num_steps]
        )
        self.elements, self._clicked = [], []
        getattr(self, "_setup_" + name.replace("-", "_"))(rng)
        rng.shuffle(self.elements)
        bids = rng.choice(np.arange(1, 10 + 3 * len(self.elements)), size=len(self.elements), replace=False)
        for el, bid in zip(self.elements, bids, strict=True):
            el.bid = _STABLE_BIDS[el.label] if self.bids == "stable" else str(int(bid))
        return self.observation()

    def observation(self) -> dict:
        page = "\n".join(e.line() for e in self.elements)
        return {
            "task": self.task,
            "goal": self.goal,
            "page": page,
            "url": f"toy://{self.task}",
            "elements": [
                {"bid": e.bid, "tag": e.kind, "text": e.label, "value": e.value, "checked": e.checked}
                for e in self.elements
            ],
        }

    # ---- task set-ups: each draws words, builds elements and the goal text
    def _words(self, rng: np.random.Generator, n: int) -> list[str]:
        return [str(w) for w in rng.choice(_WORDS, size=n, replace=False)]

    def _add(self, kind: str, *labels: str) -> None:
        self.elements.extend(ToyElement("", kind, lb) for lb in labels)

    def _setup_click_button(self, rng: np.random.Generator, kind: str = "button") -> None:
        words = self._words(rng, 1 + self.num_distractors)
        self._add(kind, *words)
        self._plan = [("click", words[0])]
        self.goal = (
            f'Click the {kind} "{words[0]}".' if kind == "button" else f'Follow the link "{words[0]}".'
        )

    def _setup_click_link(self, rng: np.random.Generator) -> None:
        self._setup_click_button(rng, kind="link")

    def _setup_click_sequence(self, rng: np.random.Generator) -> None:
        words = self._words(rng, self.num_steps + self.num_distractors)
        self._add("button", *words)
        self._plan = [("click", w) for w in words[: self.num_steps]]
        self.goal = (
            "Click the buttons " + ", ".join(f'"{w}"' for w in words[: self.num_steps]) + " in this order."
        )

    def _setup_fill_text(self, rng: np.random.Generator, num_fields: int = 1) -> None:
        fields = [str(f) for f in rng.choice(_FIELDS, size=num_fields + self.num_distractors, replace=False)]
        words = self._words(rng, num_fields)
        self._add("textbox", *fields)
        self._add("button", "submit")
        self._plan = [("fill", f"{f}={w}") for f, w in zip(fields, words, strict=False)] + [
            ("click", "submit")
        ]
        parts = [f'"{w}" into "{f}"' for f, w in zip(fields, words, strict=False)]
        self.goal = "Type " + " and ".join(parts) + ' and press "submit".'

    def _setup_fill_two(self, rng: np.random.Generator) -> None:
        self._setup_fill_text(rng, num_fields=2)

    def _setup_check_boxes(self, rng: np.random.Generator) -> None:
        n = max(1, self.num_steps - 1)
        words = self._words(rng, n + self.num_distractors)
        self._add("checkbox", *words)
        self._add("button", "submit")
        self._plan = [("check", w) for w in words[:n]] + [("click", "submit")]
        self.goal = "Tick " + ", ".join(f'"{w}"' for w in words[:n]) + ' and press "submit".'

    def _setup_login(self, rng: np.random.Generator) -> None:
        user, pwd = self._words(rng, 2)
        self._add("textbox", "username", "password")
        self._add("button", "login", *self._words(rng, self.num_distractors + 2)[2:])
        self._plan = [("fill", f"username={user}"), ("fill", f"password={pwd}"), ("click", "login")]
        self.goal = f'Log in as "{user}" with password "{pwd}".'

    # ---- stepping
    def solution(self) -> list[str]:
        """The canonical actions that solve the current episode (used by the scripted policy and tests)."""
        by_label = {e.label: e for e in self.elements}
        out = []
        for kind, detail in self._plan:
            if kind == "fill":
                label, value = detail.split("=", 1)
                out.append(f'fill("{by_label[label].bid}", "{value}")')
            else:
                out.append(f'{kind}("{by_label[detail].bid}")')
        return out

    def step(self, action: Action) -> tuple[dict, float, bool, str]:
        """Apply one parsed action. Returns (observation, reward, done, action_error)."""
        el = next((e for e in self.elements if e.bid == action.args[0]), None) if action.args else None
        if action.name not in _ACTIONS:
            return self.observation(), 0.0, False, f"{action.name} has no effect on this page"
        if el is None:
            return self.observation(), 0.0, False, f"no element with bid {action.args[0]!r}"
        if action.name == "fill":
            if el.kind != "textbox":
                return self.observation(), 0.0, False, f"element {el.bid} is a {el.kind}, not a textbox"
            el.value = action.args[1]
            return self.observation(), 0.0, False, ""
        if action.name in ("check", "uncheck"):
            if el.kind != "checkbox":
                return self.observation(), 0.0, False, f"element {el.bid} is a {el.kind}, not a checkbox"
            el.checked = action.name == "check"
            return self.observation(), 0.0, False, ""
        if el.kind == "checkbox":  # click toggles a checkbox
            el.checked = not el.checked
            return self.observation(), 0.0, False, ""
        if el.kind == "textbox":
            return self.observation(), 0.0, False, ""
        return self._click(el)

    def _click(self, el: ToyElement) -> tuple[dict, float, bool, str]:
        clicks = [d for k, d in self._plan if k == "click"]
        if el.label == "submit" or el.label == "login":
            ok = all(self._satisfied(k, d) for k, d in self._plan if k != "click")
            return self.observation(), (1.0 if ok else -1.0), True, ""
        self._clicked.append(el.label)
        if self._clicked != clicks[: len(self._clicked)]:
            return self.observation(), -1.0, True, ""
        done = self._clicked == clicks
        return self.observation(), (1.0 if done else 0.0), done, ""

    def _satisfied(self, kind: str, detail: str) -> bool:
        by_label = {e.label: e for e in self.elements}
        if kind == "fill":
            label, value = detail.split("=", 1)
            return by_label[label].value == value
        if kind == "check":
            return by_label[detail].checked and all(
                not e.checked
                for e in self.elements
                if e.kind == "checkbox" and ("check", e.label) not in self._plan
            )
        return True


@dataclass(frozen=True)
class ToySettings:
    """Options of the toy host (pass them to `open_runner("toy", ...)`)."""

    num_distractors: int = 1
    """Extra elements per page."""
    num_steps: int = 2
    """Length of the multi-step tasks (clicks in a sequence, boxes to tick + 1)."""
    bids: BidMode = "random"
    """`random` bids per seed, or `stable` bids fixed per label."""

    def __post_init__(self) -> None:
        ToyEnv(num_distractors=self.num_distractors, num_steps=self.num_steps, bids=self.bids)  # validates


class ToyHost:
    """Holds the live toy episodes of one worker (an `envs.hosts.EnvHost`)."""

    def __init__(self, **options: object) -> None:
        self.settings = ToySettings(**options)  # type: ignore[arg-type]
        self._envs: dict[int, ToyEnv] = {}

    def start(self) -> None:
        """Nothing to launch."""

    def reset(self, eid: int, task: str, seed: int) -> dict:
        s = self.settings
        env = ToyEnv(num_distractors=s.num_distractors, num_steps=s.num_steps, bids=s.bids)
        obs = env.reset(task, seed)
        self._envs[eid] = env
        return obs

    def step(self, eid: int, action: Action) -> tuple[dict, float, bool, str]:
        return self._envs[eid].step(action)

    def step_many(self, items: Sequence[tuple[int, Action]]) -> list[StepOutcome | Exception]:
        return step_each(self.step, items)

    def close(self, eid: int) -> None:
        self._envs.pop(eid, None)

    def idle_tasks(self) -> tuple[str, ...]:
        """() : a toy reset costs microseconds whatever ran before."""
        return ()

    def shutdown(self) -> None:
        self._envs.clear()


def sample_corpus(*, num_seeds: int, num_distractors: int, num_steps: int) -> list[str]:
    """Text of toy episodes' first steps: per task and seed, the prompt's messages and the scripted answer.

    For training a tokenizer on what toy agents read and write (trainers' tiny tokenizer).

    Args:
        num_seeds: seeds 0..num_seeds-1 of every toy task.
        num_distractors, num_steps: the toy difficulty (`ToySettings`).

    Returns:
        [system, user, "<reasoning>\n<action>", ...], three strings per (task, seed), task-major.
    """
    from envs.prompts import build_prompt
    from envs.scripted import solve_toy

    lines: list[str] = []
    for task in TOY_TASKS:
        env = ToyEnv(num_distractors=num_distractors, num_steps=num_steps)
        for seed in range(num_seeds):
            obs = env.reset(f"toy.{task}", seed)
            prompt = build_prompt(obs, family="toy", history=[], last_error="", error_log=False)
            reasoning, action = solve_toy(prompt.observation)
            lines += [m["content"] for m in prompt.messages] + [f"{reasoning}\n{action}"]
    return lines
