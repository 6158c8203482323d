"""The study's splits: sizes from SPLITS.md, no overlap between training and held-out goals."""

from __future__ import annotations

import pytest

from envs.registry import SPLITS, goals


def test_split_sizes_match_the_study() -> None:
    assert len(goals("miniwob.train")) == 99 * 7
    assert len(goals("miniwob.heldout_goals")) == 99 * 3
    assert len(goals("miniwob.heldout_tasks")) == 23 * 10
    assert len({t for t, _ in goals("workarena.train")}) == 24
    assert len({t for t, _ in goals("workarena.test")}) == 7


@pytest.mark.parametrize("family", ["miniwob", "toy", "workarena"])
def test_heldout_splits_never_overlap_training(family: str) -> None:
    train = set(goals(f"{family}.train"))
    for split in SPLITS:
        if split.startswith(family + ".") and split != f"{family}.train":
            assert not train & set(goals(split)), split
    if family != "workarena":
        train_tasks = {t for t, _ in train}
        assert not train_tasks & {t for t, _ in goals(f"{family}.heldout_tasks")}


def test_task_subsets_and_errors() -> None:
    assert goals("miniwob.heldout_goals", tasks=["click-test"]) == [
        ("miniwob.click-test", s) for s in range(3)
    ]
    with pytest.raises(ValueError, match="not in split"):
        goals("miniwob.train", tasks=["click-button"])  # a held-out task
    with pytest.raises(ValueError, match="unknown split"):
        goals("miniwob.test")
