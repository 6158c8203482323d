"""Searchers: seeded random and Optuna TPE with conditionals, a complete grid, a FLOPs budget, state that survives."""

from __future__ import annotations

import pickle

import pytest
from ray.tune.search import ConcurrencyLimiter, Searcher

from sweep.search import BudgetSearcher, GridSearcher, IndexedSearcher, make_searcher
from sweep.space import SearchSpace, load_space
from sweep.tracking import SUGGESTION_INDEX

SMALL = SearchSpace.from_dict(
    {
        "name": "small",
        "parameters": {
            "curriculum": {"values": [True, False]},
            "curriculum_target_return": {"values": [0.25, 0.5], "when": {"curriculum": True}},
            "gamma": {"values": [0.9, 1.0]},
        },
    },
)


def _suggest(searcher: Searcher, n: int, prefix: str = "t") -> list:
    return [searcher.suggest(f"{prefix}{i}") for i in range(n)]


@pytest.mark.parametrize("kind", ["random", "tpe"])
def test_optuna_searchers_are_seeded_and_respect_conditionals(kind):
    space = load_space("paper")
    a = _suggest(make_searcher(space, kind=kind, seed=3), 12)
    b = _suggest(make_searcher(space, kind=kind, seed=3), 12)
    c = _suggest(make_searcher(space, kind=kind, seed=4), 12)
    assert a == b and a != c
    assert [cfg.pop(SUGGESTION_INDEX) for cfg in a] == list(range(12))
    for cfg in a:
        full = space.resolve(cfg)  # every value inside the space
        assert ("curriculum_temperature" in cfg) == (cfg["curriculum"] is True)
        assert full["curriculum_temperature"] is None or cfg["curriculum"] is True


def test_grid_searcher_covers_the_grid_once_then_finishes():
    searcher = GridSearcher(SMALL)
    got = _suggest(searcher, SMALL.grid_size())
    expected = [{k: v for k, v in c.items() if v is not None} for c in SMALL.grid()]
    assert got == expected and len(got) == 6
    assert searcher.suggest("extra") == Searcher.FINISHED
    assert searcher.suggest("t2") == expected[2]  # a re-asked trial gets its own config back


def test_grid_state_survives_save_restore(tmp_path):
    searcher = GridSearcher(SMALL)
    _suggest(searcher, 2)
    searcher.save(str(tmp_path / "s.pkl"))
    again = GridSearcher(SMALL)
    again.restore(str(tmp_path / "s.pkl"))
    assert again.suggest("t9") == searcher.suggest("t8")


def test_budget_searcher_stops_once_spent():
    inner = GridSearcher(SMALL)
    searcher = BudgetSearcher(inner, budget_flops=10.0, base_flops=4.0)
    assert isinstance(searcher.suggest("a"), dict)
    searcher.on_trial_result("a", {"rl_flops": 3.0, "flops": 7.0})
    assert searcher.spent_flops == 7.0
    assert isinstance(searcher.suggest("b"), dict)
    searcher.on_trial_complete("b", {"rl_flops": 3.0})
    assert searcher.suggest("c") == Searcher.FINISHED
    state = pickle.loads(pickle.dumps(searcher.get_state()))
    fresh = BudgetSearcher(GridSearcher(SMALL), budget_flops=1.0)
    fresh.set_state(state)
    assert fresh.spent_flops == 10.0
    with pytest.raises(ValueError, match="budget_flops=0"):
        BudgetSearcher(inner, budget_flops=0)


def test_make_searcher_wraps_concurrency_and_rejects_bad_values():
    s = make_searcher(SMALL, kind="grid", seed=0, max_concurrent=2, budget_flops=1e18)
    assert isinstance(s, IndexedSearcher) and isinstance(s.searcher, ConcurrencyLimiter)
    assert isinstance(s.searcher.searcher, BudgetSearcher)
    with pytest.raises(ValueError, match="search='bayes'"):
        make_searcher(SMALL, kind="bayes", seed=0)
    with pytest.raises(ValueError, match="max_concurrent=0"):
        make_searcher(SMALL, kind="random", seed=0, max_concurrent=0)


def test_random_state_survives_save_restore_and_does_not_grow(tmp_path):
    from sweep.search import RandomSearcher

    space = load_space("paper")
    searcher = RandomSearcher(space, seed=5)
    sizes = []
    for n in (10, 1000):
        for i in range(n):
            searcher.suggest(f"{n}-{i}")
            searcher.on_trial_complete(f"{n}-{i}", {"heldout_goal_success": 0.5})
        searcher.save(str(tmp_path / f"{n}.pkl"))
        sizes.append((tmp_path / f"{n}.pkl").stat().st_size)
    # no history: about the same size after 10 and after 1,010 trials (the RNG's integers vary in length)
    assert abs(sizes[1] - sizes[0]) <= 8
    running = searcher.suggest("running")
    again = RandomSearcher(space, seed=0)
    again.restore(str(tmp_path / "1000.pkl"))
    assert again.suggest("running") == running  # a running trial keeps its config across a restore
    assert _suggest(again, 20, "next") == _suggest(searcher, 20, "next")
    seen = {name: set() for name in space.names}
    for cfg in _suggest(RandomSearcher(space, seed=1), 400):
        for name, value in cfg.items():
            seen[name].add(value)
            assert type(value).__module__ == "builtins"  # plain Python values, not numpy scalars
    assert all(
        seen[p.name] == set(p.values) for p in space.parameters
    )  # every value of every parameter drawn


def test_balanced_parameter_gets_equal_counts_in_seeded_blocks_and_survives_restore(tmp_path):
    """`balanced: true`: each value once per block of len(values) draws, in a seeded order; the rest independent."""
    from collections import Counter

    from sweep.search import RandomSearcher

    spec = {
        "name": "bal",
        "parameters": {
            "gamma": {"values": [0.9, 1.0]},
            "sft_checkpoint": {"values": [0, 1e13, 2e13, 3e13], "balanced": True},
        },
    }
    space = SearchSpace.from_dict(spec)
    assert space["sft_checkpoint"].balanced and not space["gamma"].balanced
    assert SearchSpace.from_dict(space.to_dict()) == space
    draws = _suggest(RandomSearcher(space, seed=0), 72)
    counts = Counter(cfg["sft_checkpoint"] for cfg in draws)
    assert sorted(counts.values()) == [18, 18, 18, 18]
    for b in range(18):  # every block of 4 holds each branch point once
        assert {cfg["sft_checkpoint"] for cfg in draws[4 * b : 4 * b + 4]} == {0, 1e13, 2e13, 3e13}
    orders = {tuple(cfg["sft_checkpoint"] for cfg in draws[4 * b : 4 * b + 4]) for b in range(18)}
    assert len(orders) > 3  # shuffled, not a fixed cycle
    assert draws == _suggest(RandomSearcher(space, seed=0), 72)
    assert draws != _suggest(RandomSearcher(space, seed=1), 72)
    unbalanced = SearchSpace.from_dict(
        {**spec, "parameters": {**spec["parameters"], "sft_checkpoint": {"values": [0, 1e13, 2e13, 3e13]}}}
    )
    plain = Counter(cfg["sft_checkpoint"] for cfg in _suggest(RandomSearcher(unbalanced, seed=0), 72))
    assert sorted(plain.values()) != [
        18,
        18,
        18,
        18,
    ]  # this seed's uniform draws are unequal: the flag matters
    searcher = RandomSearcher(space, seed=3)  # a restore mid-block continues the same block
    _suggest(searcher, 6, "a")
    searcher.save(str(tmp_path / "s.pkl"))
    again = RandomSearcher(space, seed=99)
    again.restore(str(tmp_path / "s.pkl"))
    assert _suggest(again, 10, "b") == _suggest(searcher, 10, "b")
    with pytest.raises(ValueError, match="balanced"):
        SearchSpace.from_dict({"name": "x", "parameters": {"gamma": {"values": [0.9], "balanced": "yes"}}})


def test_indexed_searcher_numbers_suggestions_in_order_and_keeps_counting_after_restore(tmp_path):
    limited = make_searcher(SMALL, kind="grid", seed=0, max_concurrent=2)
    first = _suggest(limited, 3, "x")  # the third waits for a free slot: no index used
    assert [c[SUGGESTION_INDEX] for c in first[:2]] == [0, 1] and first[2] is None
    limited.on_trial_complete("x0", {"heldout_goal_success": 0.5})
    assert limited.suggest("x2")[SUGGESTION_INDEX] == 2
    searcher = make_searcher(SMALL, kind="random", seed=0)
    _suggest(searcher, 2, "x")
    assert searcher.suggest("x1")[SUGGESTION_INDEX] == 1  # a re-asked trial keeps its index
    searcher.save(str(tmp_path / "s.pkl"))
    assert not (tmp_path / "s.pkl.inner").exists()
    again = make_searcher(SMALL, kind="random", seed=7)
    again.restore(str(tmp_path / "s.pkl"))  # the wrapped searcher's state comes back too
    assert _suggest(again, 3, "y") == _suggest(searcher, 3, "y")
    assert [c[SUGGESTION_INDEX] for c in _suggest(again, 2, "z")] == [5, 6]
