"""The registry: one entry per family (host, settings, observations, splits); the study's split sizes from
SPLITS.md, no overlap between training and held-out goals."""

from __future__ import annotations

import dataclasses

import pytest

from envs.choices import FAMILIES, OBSERVATION_KINDS
from envs.hosts import EnvHost, host_class, worker_options
from envs.prompts import build_prompt
from envs.registry import FAMILY_SPECS, SPLITS, family_spec, goals, parse_seeds
from envs.runner import open_runner
from envs.settings import RunnerConfig
from envs.toy import ToyHost


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


def test_seeds_override_a_splits_seeds() -> None:
    assert parse_seeds("0-2,1000-1002") == (0, 1, 2, 1000, 1001, 1002)
    assert parse_seeds("7") == (7,)
    assert goals("miniwob.heldout_goals", tasks=["click-test", "click-tab"], seeds=parse_seeds("0,1000")) == [
        ("miniwob.click-tab", 0),  # the registry's task order, then the given seeds' order
        ("miniwob.click-tab", 1000),
        ("miniwob.click-test", 0),
        ("miniwob.click-test", 1000),
    ]
    for bad, says in [
        ("", "not a seed"),
        ("3-", "not a seed"),
        ("5-2", "low-high"),
        ("1,0-1", "twice"),
        ("x", "e.g."),
    ]:
        with pytest.raises(ValueError, match=says):
            parse_seeds(bad)


class _HalfHost:
    """Resets and steps one at a time but has no `step_many`, `start`, `idle_tasks` or `shutdown`: not an `EnvHost`."""

    def __init__(self, **options) -> None:
        pass

    def reset(self, eid, task, seed):
        return {}

    def step(self, eid, action):
        return {}, 0.0, False, ""

    def close(self, eid) -> None:
        pass


def test_every_family_has_one_entry_whose_host_and_settings_resolve() -> None:
    assert set(FAMILY_SPECS) == set(FAMILIES)
    for family, spec in FAMILY_SPECS.items():
        assert spec.family == family and family_spec(family) is spec
        assert issubclass(host_class(spec), EnvHost)
        assert set(spec.observations) <= set(OBSERVATION_KINDS)
        for tasks, _ in spec.splits.values():
            assert set(tasks) <= set(spec.tasks)
    assert {s for s in SPLITS} == {f"{f}.{n}" for f, spec in FAMILY_SPECS.items() for n in spec.splits}
    assert isinstance(ToyHost(), EnvHost)
    with pytest.raises(ValueError, match="family='web': choose toy, miniwob or workarena"):
        family_spec("web")


def test_the_default_observation_comes_from_the_registry_entry(monkeypatch) -> None:
    from envs.browser import MiniWobSettings

    defaults = {f: RunnerConfig(family=f).observation_kind for f in FAMILIES}
    assert defaults == {"toy": "compact", "miniwob": "html", "workarena": "axtree"}
    assert MiniWobSettings().observation == defaults["miniwob"]
    obs = {"goal": "g", "html": "<p>html</p>", "axtree": "[1] axtree", "compact": "[1] compact"}
    text = build_prompt(obs, family="miniwob", history=[], last_error="", error_log=False).messages[1][
        "content"
    ]
    assert "<p>html</p>" in text
    # change the entry, and the runner, the host options and the prompt follow
    spec = dataclasses.replace(FAMILY_SPECS["miniwob"], observations=("compact", "html", "axtree"))
    monkeypatch.setitem(FAMILY_SPECS, "miniwob", spec)
    config = RunnerConfig(family="miniwob")
    assert config.observation_kind == "compact"
    assert worker_options(spec, {}, observation=config.observation_kind, worker_index=0) == {
        "observation": "compact"
    }
    text = build_prompt(obs, family="miniwob", history=[], last_error="", error_log=False).messages[1][
        "content"
    ]
    assert "[1] compact" in text and "<p>html</p>" not in text
    with pytest.raises(ValueError, match="observation of workarena='html': choose axtree or compact"):
        RunnerConfig(family="workarena", observation="html")


def test_a_host_without_the_protocol_is_refused_naming_what_it_lacks(monkeypatch) -> None:
    spec = dataclasses.replace(FAMILY_SPECS["toy"], host=f"{__name__}:_HalfHost")
    with pytest.raises(
        TypeError, match=r"_HalfHost is not an env host: it lacks start, step_many, idle_tasks, shutdown"
    ):
        host_class(spec)
    monkeypatch.setitem(FAMILY_SPECS, "toy", spec)
    with pytest.raises(TypeError, match="implement envs.hosts.EnvHost"):
        open_runner("toy")
