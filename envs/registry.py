"""Task registry: the study's splits as named goal sets (see SPLITS.md), for MiniWoB++, WorkArena L1 and the toy env.

A goal is a `(task, seed)` pair; task names carry their family: `miniwob.<task>`, `workarena.<task>`,
`toy.<task>`. Splits (seeds are the goal index of the task):

- `miniwob.train`: 99 tasks x seeds 3-9; `miniwob.heldout_goals`: the same tasks x seeds 0-2;
  `miniwob.heldout_tasks`: 23 other tasks x seeds 0-9 (Appendix L of the study).
- `workarena.train`: 24 L1 tasks, `workarena.test`: 7 L1 tasks, seeds 0-9 each (a seed picks the task instance).
- `toy.train`: the toy training tasks x seeds 3-49; `toy.heldout_goals`: same tasks x seeds 0-2;
  `toy.heldout_tasks`: the held-out toy tasks x seeds 0-9.
"""

from __future__ import annotations

from collections.abc import Sequence

from envs.toy import TOY_HELDOUT_TASKS, TOY_TRAIN_TASKS

__all__ = [
    "MINIWOB_TRAIN_TASKS",
    "MINIWOB_TEST_TASKS",
    "WORKARENA_TRAIN_TASKS",
    "WORKARENA_TEST_TASKS",
    "SPLITS",
    "family_of",
    "goals",
    "all_tasks",
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

# split name -> (family, tasks, seeds)
SPLITS: dict[str, tuple[str, tuple[str, ...], tuple[int, ...]]] = {
    "miniwob.train": ("miniwob", MINIWOB_TRAIN_TASKS, tuple(range(3, 10))),
    "miniwob.heldout_goals": ("miniwob", MINIWOB_TRAIN_TASKS, tuple(range(0, 3))),
    "miniwob.heldout_tasks": ("miniwob", MINIWOB_TEST_TASKS, tuple(range(0, 10))),
    "workarena.train": ("workarena", WORKARENA_TRAIN_TASKS, tuple(range(0, 10))),
    "workarena.test": ("workarena", WORKARENA_TEST_TASKS, tuple(range(0, 10))),
    "toy.train": ("toy", TOY_TRAIN_TASKS, tuple(range(3, 50))),
    "toy.heldout_goals": ("toy", TOY_TRAIN_TASKS, tuple(range(0, 3))),
    "toy.heldout_tasks": ("toy", TOY_HELDOUT_TASKS, tuple(range(0, 10))),
}


def family_of(task: str) -> str:
    """`miniwob.click-test` -> `miniwob`; raises for an unknown family."""
    family = task.split(".", 1)[0]
    if "." not in task or family not in ("miniwob", "workarena", "toy"):
        raise ValueError(f"task {task!r} must be named <family>.<task> with family miniwob, workarena or toy")
    return family


def all_tasks(family: str) -> tuple[str, ...]:
    """Every registered task of a family, full names, training tasks first."""
    names = {
        "miniwob": MINIWOB_TRAIN_TASKS + MINIWOB_TEST_TASKS,
        "workarena": _WORKARENA_L1,
        "toy": TOY_TRAIN_TASKS + TOY_HELDOUT_TASKS,
    }.get(family)
    if names is None:
        raise ValueError(f"unknown env family {family!r}; choose miniwob, workarena or toy")
    return tuple(f"{family}.{t}" for t in names)


def goals(split: str, *, tasks: Sequence[str] | None = None) -> list[tuple[str, int]]:
    """The goals of a named split, task-major in the registry's fixed order.

    Args:
        split: one of `SPLITS` (e.g. `miniwob.train`).
        tasks: restrict to these tasks (full `family.task` names or bare names); each must be in the split.

    Returns:
        [(task, seed), ...] with full task names.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    family, names, seeds = SPLITS[split]
    chosen = [f"{family}.{t}" for t in names]
    if tasks is not None:
        wanted = [t if t.startswith(family + ".") else f"{family}.{t}" for t in tasks]
        unknown = [t for t in wanted if t not in chosen]
        if unknown:
            raise ValueError(
                f"tasks {unknown} are not in split {split!r}; `agentsweep envs list` shows the splits"
            )
        chosen = [t for t in chosen if t in set(wanted)]
    return [(t, s) for t in chosen for s in seeds]
