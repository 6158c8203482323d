"""The env-family registry: one entry per family (host, settings, observations, splits) and the study's goal sets.

Each family is one `FamilySpec` in `FAMILY_SPECS`: its host class (an `envs.hosts.EnvHost`), the settings dataclass
that checks the host's options, the page views its host can show (the first is the family's default observation),
and its task splits (see SPLITS.md). Hosts and settings are named as `"module:Name"` and imported only when used,
so the registry stays light and BrowserGym loads only in the worker processes.

A goal is a `(task, seed)` pair; task names carry their family: `miniwob.<task>`, `workarena.<task>`,
`toy.<task>`. Splits (seeds are the goal index of the task):

- `miniwob.train`: 99 tasks x seeds 3-9; `miniwob.heldout_goals`: the same tasks x seeds 0-2;
  `miniwob.heldout_tasks`: 23 other tasks x seeds 0-9 (Appendix L of the study).
- `workarena.train`: 24 L1 tasks, `workarena.test`: 7 L1 tasks, seeds 0-9 each (a seed picks the task instance).
- `toy.train`: the toy training tasks x seeds 3-49; `toy.heldout_goals`: same tasks x seeds 0-2;
  `toy.heldout_tasks`: the held-out toy tasks x seeds 0-9.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from envs.choices import FAMILIES, Family, ObservationKind, check_choice
from envs.toy import TOY_HELDOUT_TASKS, TOY_TRAIN_TASKS

__all__ = [
    "MINIWOB_TRAIN_TASKS",
    "MINIWOB_TEST_TASKS",
    "WORKARENA_TRAIN_TASKS",
    "WORKARENA_TEST_TASKS",
    "FamilySpec",
    "FAMILY_SPECS",
    "SPLITS",
    "family_spec",
    "family_of",
    "goals",
    "parse_seeds",
    "all_tasks",
    "check_tasks",
]

MINIWOB_TRAIN_TASKS: tuple[str, ...] = tuple(
    [
        "ascending-numbers",
        "bisect-angle",
        "book-flight",
        "choose-date",
        "choose-date-easy",
        "choose-date-medium",
        "choose-date-nodelay",
        "choose-list",
        "circle-center",
        "click-button-sequence",
        "click-checkboxes-soft",
        "click-checkboxes-transfer",
        "click-collapsible-2",
        "click-collapsible-2-nodelay",
        "click-collapsible-nodelay",
        "click-color",
        "click-dialog",
        "click-dialog-2",
        "click-link",
        "click-menu",
        "click-menu-2",
        "click-scroll-list",
        "click-shape",
        "click-tab",
        "click-tab-2",
        "click-tab-2-hard",
        "click-tab-2-medium",
        "click-test",
        "click-test-2",
        "click-test-transfer",
        "click-widget",
        "copy-paste",
        "copy-paste-2",
        "count-shape",
        "count-sides",
        "daily-calendar",
        "drag-box",
        "drag-circle",
        "drag-cube",
        "drag-items",
        "drag-items-grid",
        "drag-shapes",
        "drag-shapes-2",
        "drag-sort-numbers",
        "draw-circle",
        "draw-line",
        "email-inbox",
        "email-inbox-delete",
        "email-inbox-forward",
        "email-inbox-forward-nl",
        "email-inbox-forward-nl-turk",
        "email-inbox-important",
        "email-inbox-noscroll",
        "email-inbox-reply",
        "email-inbox-star-reply",
        "enter-date",
        "enter-text",
        "enter-text-dynamic",
        "enter-time",
        "find-greatest",
        "find-word",
        "focus-text-2",
        "form-sequence",
        "form-sequence-2",
        "generate-number",
        "grid-coordinate",
        "guess-number",
        "highlight-text",
        "hot-cold",
        "identify-shape",
        "login-user",
        "login-user-popup",
        "multi-layouts",
        "multi-orderings",
        "navigate-tree",
        "odd-or-even",
        "order-food",
        "phone-book",
        "read-table",
        "read-table-2",
        "resize-textarea",
        "right-angle",
        "scroll-text",
        "scroll-text-2",
        "search-engine",
        "sign-agreement",
        "simple-algebra",
        "social-media",
        "social-media-all",
        "social-media-some",
        "text-editor",
        "text-transform",
        "tic-tac-toe",
        "use-autocomplete",
        "use-autocomplete-nodelay",
        "use-colorwheel",
        "use-colorwheel-2",
        "use-spinner",
        "visual-addition",
    ]
)
MINIWOB_TEST_TASKS: tuple[str, ...] = tuple(
    [
        "buy-ticket",
        "click-button",
        "click-option",
        "click-pie-nodelay",
        "drag-single-shape",
        "email-inbox-nl-turk",
        "enter-text-2",
        "find-midpoint",
        "focus-text",
        "simple-arithmetic",
        "stock-market",
        "use-slider-2",
        "click-checkboxes",
        "click-checkboxes-large",
        "click-collapsible",
        "click-pie",
        "click-shades",
        "click-tab-2-easy",
        "enter-password",
        "form-sequence-3",
        "highlight-text-2",
        "unicode-test",
        "use-slider",
    ]
)
WORKARENA_TEST_TASKS: tuple[str, ...] = (
    "create-user",
    "filter-incident-list",
    "sort-asset-list",
    "impersonation",
    "order-apple-watch",
    "order-developer-laptop",
    "single-chart-min-max-retrieval",
)
_WORKARENA_L1: tuple[str, ...] = (
    "single-chart-value-retrieval",
    "single-chart-min-max-retrieval",
    "multi-chart-value-retrieval",
    "multi-chart-min-max-retrieval",
    "create-change-request",
    "create-hardware-asset",
    "create-incident",
    "create-problem",
    "create-user",
    "knowledge-base-search",
    "filter-asset-list",
    "filter-change-request-list",
    "filter-hardware-list",
    "filter-incident-list",
    "filter-service-catalog-item-list",
    "filter-user-list",
    "sort-asset-list",
    "sort-change-request-list",
    "sort-hardware-list",
    "sort-incident-list",
    "sort-service-catalog-item-list",
    "sort-user-list",
    "all-menu",
    "impersonation",
    "order-apple-mac-book-pro15",
    "order-apple-watch",
    "order-developer-laptop",
    "order-development-laptop-p-c",
    "order-ipad-mini",
    "order-ipad-pro",
    "order-loaner-laptop",
    "order-sales-laptop",
    "order-standard-laptop",
)
WORKARENA_TRAIN_TASKS: tuple[str, ...] = tuple(
    t
    for t in _WORKARENA_L1
    if t not in WORKARENA_TEST_TASKS
    and t not in ("multi-chart-value-retrieval", "multi-chart-min-max-retrieval")
)

Split = tuple[tuple[str, ...], tuple[int, ...]]
"""(task names without the family prefix, seeds)."""


@dataclass(frozen=True)
class FamilySpec:
    """One env family: where its host lives, how its options are checked, what it shows, which goals it has."""

    family: Family
    host: str
    """`module:Class` of the family's `envs.hosts.EnvHost` (one per worker; built with the host options)."""
    settings: str
    """`module:Class` of the settings dataclass that checks the host options in the calling process (built with its
    `from_env(**options)` classmethod when it has one: credentials come from the environment)."""
    observations: tuple[ObservationKind, ...]
    """The page views the host shows; the first is the family's default observation."""
    tasks: tuple[str, ...]
    """Every task the host can play (bare names, training tasks first); the splits draw from them."""
    splits: Mapping[str, Split] = field(default_factory=dict)
    """Split name (without the family prefix) -> (tasks, seeds)."""
    in_process: bool = False
    """The hosts live in the calling process (their steps take microseconds), not one worker process each."""
    worker_index: bool = False
    """The host takes `worker_index=` (its position in the pool: WorkArena picks its instance from a pool file)."""
    requires: tuple[tuple[str, str], ...] = ()
    """(module, what to install) pairs checked before any worker starts."""

    @property
    def default_observation(self) -> ObservationKind:
        return self.observations[0]


FAMILY_SPECS: dict[Family, FamilySpec] = {
    spec.family: spec
    for spec in (
        FamilySpec(
            "miniwob",
            host="envs.browser:MiniWobHost",
            settings="envs.browser:MiniWobSettings",
            observations=("html", "axtree", "compact"),
            tasks=MINIWOB_TRAIN_TASKS + MINIWOB_TEST_TASKS,
            splits={
                "train": (MINIWOB_TRAIN_TASKS, tuple(range(3, 10))),
                "heldout_goals": (MINIWOB_TRAIN_TASKS, tuple(range(0, 3))),
                "heldout_tasks": (MINIWOB_TEST_TASKS, tuple(range(0, 10))),
            },
        ),
        FamilySpec(
            "workarena",
            host="envs.workarena:WorkArenaHost",
            settings="envs.workarena:WorkArenaSettings",
            observations=("axtree", "compact"),
            tasks=_WORKARENA_L1,
            splits={
                "train": (WORKARENA_TRAIN_TASKS, tuple(range(0, 10))),
                "test": (WORKARENA_TEST_TASKS, tuple(range(0, 10))),
            },
            worker_index=True,
            requires=(("browsergym.workarena", "`pip install browsergym-workarena` (the `web` extra)"),),
        ),
        FamilySpec(
            "toy",
            host="envs.toy:ToyHost",
            settings="envs.toy:ToySettings",
            observations=("compact",),
            tasks=TOY_TRAIN_TASKS + TOY_HELDOUT_TASKS,
            in_process=True,
            splits={
                "train": (TOY_TRAIN_TASKS, tuple(range(3, 50))),
                "heldout_goals": (TOY_TRAIN_TASKS, tuple(range(0, 3))),
                "heldout_tasks": (TOY_HELDOUT_TASKS, tuple(range(0, 10))),
            },
        ),
    )
}
"""Every env family's entry, the study's families first."""

SPLITS: dict[str, tuple[Family, tuple[str, ...], tuple[int, ...]]] = {
    f"{spec.family}.{name}": (spec.family, tasks, seeds)
    for spec in FAMILY_SPECS.values()
    for name, (tasks, seeds) in spec.splits.items()
}
"""Split name (`miniwob.train`) -> (family, tasks, seeds), every family's splits."""


def family_spec(family: str) -> FamilySpec:
    """The registry entry of a family; a ValueError names the families."""
    check_choice("family", family, FAMILIES)
    return FAMILY_SPECS[family]  # type: ignore[index]


def family_of(task: str) -> Family:
    """`miniwob.click-test` -> `miniwob`; raises for an unknown family."""
    family = task.split(".", 1)[0]
    if "." not in task or family not in FAMILIES:
        raise ValueError(f"task {task!r} must be named <family>.<task> with family {', '.join(FAMILIES)}")
    return family  # type: ignore[return-value]


def all_tasks(family: str) -> tuple[str, ...]:
    """Every registered task of a family, full names, training tasks first."""
    return tuple(f"{family}.{t}" for t in family_spec(family).tasks)


def check_tasks(family: str, tasks: Iterable[str]) -> None:
    """Raise a ValueError naming the tasks that are not registered tasks of `family`."""
    unknown = sorted(set(tasks) - set(all_tasks(family)))
    if unknown:
        raise ValueError(f"unknown {family} task(s) {unknown[:5]}; `agentsweep envs list` shows the tasks")


def parse_seeds(spec: str) -> tuple[int, ...]:
    """Seeds written as comma-separated ranges, `'0-2,1000-1019'` -> (0, 1, 2, 1000, ..., 1019), in that order.

    Raises a ValueError that shows the expected form for anything else (an empty part, a reversed range, a
    negative or repeated seed).
    """
    out: list[int] = []
    for part in str(spec).split(","):
        lo, dash, hi = part.strip().partition("-")
        try:
            a, b = int(lo), int(hi) if dash else int(lo)
        except ValueError:
            raise ValueError(
                f"seeds {spec!r}: {part.strip()!r} is not a seed or a range; write e.g. '0-2,1000-1019'"
            ) from None
        if a < 0 or b < a:
            raise ValueError(f"seeds {spec!r}: range {part.strip()!r} must be low-high with 0 <= low <= high")
        out += range(a, b + 1)
    if len(set(out)) != len(out):
        raise ValueError(f"seeds {spec!r} name a seed twice")
    return tuple(out)


def goals(
    split: str, *, tasks: Sequence[str] | None = None, seeds: Sequence[int] | None = None
) -> list[tuple[str, int]]:
    """The goals of a named split, task-major in the registry's fixed order.

    Args:
        split: one of `SPLITS` (e.g. `miniwob.train`).
        tasks: restrict to these tasks (full `family.task` names or bare names); each must be in the split.
        seeds: play these seeds of the split's tasks instead of the split's own (e.g. more unseen seeds for
            held-out goals, where three per task cannot resolve a difference).

    Returns:
        [(task, seed), ...] with full task names.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    family, names, split_seeds = SPLITS[split]
    chosen = [f"{family}.{t}" for t in names]
    if tasks is not None:
        wanted = [t if t.startswith(family + ".") else f"{family}.{t}" for t in tasks]
        unknown = [t for t in wanted if t not in chosen]
        if unknown:
            raise ValueError(
                f"tasks {unknown} are not in split {split!r}; `agentsweep envs list` shows the splits"
            )
        chosen = [t for t in chosen if t in set(wanted)]
    return [(t, s) for t in chosen for s in (split_seeds if seeds is None else seeds)]
