"""The env choices, each declared once: the env family and the observation kind (stdlib only: the CLI imports it).

Every other module takes these `Literal`s and their tuples from here (BrowserGym declares its `ActionSubset` the
same way); `check_choice` is the one check with the one error message.
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = ["Family", "FAMILIES", "ObservationKind", "OBSERVATION_KINDS", "check_choice"]

Family = Literal["toy", "miniwob", "workarena"]
"""An env family: the text toy env, MiniWoB++ or WorkArena L1 (both through BrowserGym)."""
FAMILIES: tuple[Family, ...] = get_args(Family)

ObservationKind = Literal["html", "axtree", "compact"]
"""The page view in prompts: pruned HTML, the accessibility tree, or the compact element list."""
OBSERVATION_KINDS: tuple[ObservationKind, ...] = get_args(ObservationKind)


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    """Raise a ValueError naming the value and the choices unless `value` is one of `choices`."""
    if value not in choices:
        listed = ", ".join(choices[:-1]) + f" or {choices[-1]}" if len(choices) > 1 else choices[0]
        raise ValueError(f"{name}={value!r}: choose {listed}")
