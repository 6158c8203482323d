"""Hyperparameter values as labels: the inactive marker and the order values are shown and compared in."""

from __future__ import annotations

__all__ = ["INACTIVE", "value_sort_key"]

INACTIVE = ""
"""The value of a conditional hyperparameter on runs where it is inactive."""


def value_sort_key(value: str) -> tuple[int, float, str]:
    """Sort key for hyperparameter values: numbers in numeric order (64 < 256 < 1024), then strings."""
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)
