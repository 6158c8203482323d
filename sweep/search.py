"""Ray Tune searchers over a `SearchSpace`: random (as in the study), TPE via Optuna, a grid, a FLOPs budget.

All are `ray.tune.search.Searcher`s, so Tune checkpoints their state with the experiment and `Tuner.restore`
brings the same searcher back (ray #30861): a resumed sweep keeps sampling where it stopped.
"""

from __future__ import annotations

import logging
from typing import Any

from ray.tune.search import ConcurrencyLimiter, Searcher

from sweep.objectives import rl_flops_of
from sweep.space import SEARCH_KINDS, SearchKind, SearchSpace
from sweep.tracking import SUGGESTION_INDEX

__all__ = [
    "BudgetSearcher",
    "GridSearcher",
    "IndexedSearcher",
    "OptunaSpace",
    "RandomSearcher",
    "make_searcher",
]

logger = logging.getLogger(__name__)


class OptunaSpace:
    """Optuna define-by-run function for a space (conditionals suggested only when active); picklable."""

    def __init__(self, space: SearchSpace):
        self.space = space

    def __call__(self, trial: Any) -> None:
        chosen: dict[str, Any] = {}
        for p in self.space.parameters:
            if self.space.is_active(p.name, chosen):
                chosen[p.name] = trial.suggest_categorical(p.name, list(p.values))
        return None  # Optuna's trial.params are the suggestion; inactive names are filled in by the trainable


class RandomSearcher(Searcher):
    """Random search as in the study: each active parameter drawn uniformly from its values, in space order, a
    conditional only when its parent has the `when` value; seeded by an `np.random.Generator`. A `balanced`
    parameter (`Parameter.balanced`) is drawn from shuffled blocks instead, each value once per block.

    Its saved state is the generator's and the running trials' configs, so it stays the same size however many
    trials ran. Tune saves the searcher with every experiment snapshot (once per trial for fast trials); Optuna's
    study under a RandomSampler keeps every trial though random search uses none of them (1.5 MB and 54 ms a
    save at 1,370 trials, benchmarks/RESULTS.md, sweep).
    """

    def __init__(self, space: SearchSpace, *, seed: int, metric: str | None = None, mode: str | None = None):
        import numpy as np

        super().__init__(metric=metric, mode=mode)
        self.space = space
        self._rng = np.random.default_rng(seed)
        self._live: dict[str, dict[str, Any]] = {}
        # balanced parameter -> the value indices left in its current block
        self._blocks: dict[str, list[int]] = {}

    def _draw(self, name: str, n: int) -> int:
        if not self.space[name].balanced:
            return int(self._rng.integers(n))
        block = self._blocks.get(name)
        if not block:
            block = self._blocks[name] = [int(i) for i in self._rng.permutation(n)]
        return block.pop()

    def suggest(self, trial_id: str) -> dict | str | None:
        if trial_id in self._live:  # a re-asked trial gets its own config back
            return dict(self._live[trial_id])
        config: dict[str, Any] = {}
        for p in self.space.parameters:
            if self.space.is_active(p.name, config):
                config[p.name] = p.values[self._draw(p.name, len(p.values))]
        self._live[trial_id] = config
        return dict(config)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self._live.pop(trial_id, None)

    def get_state(self) -> dict:
        return {
            "rng": self._rng.bit_generator.state,
            "live": {k: dict(v) for k, v in self._live.items()},
            "blocks": {k: list(v) for k, v in self._blocks.items()},
        }

    def set_state(self, state: dict) -> None:
        self._rng.bit_generator.state = state["rng"]
        self._live = {k: dict(v) for k, v in state["live"].items()}
        self._blocks = {k: list(v) for k, v in state.get("blocks", {}).items()}

    def save(self, checkpoint_path: str) -> None:
        import pickle

        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.get_state(), f)

    def restore(self, checkpoint_path: str) -> None:
        import pickle

        with open(checkpoint_path, "rb") as f:
            self.set_state(pickle.load(f))


class GridSearcher(Searcher):
    """Every configuration of the space once, in a fixed order (conditionals expanded under their parent)."""

    def __init__(self, space: SearchSpace, *, metric: str | None = None, mode: str | None = None):
        super().__init__(metric=metric, mode=mode)
        self._configs = space.grid()
        self._next = 0
        self._by_trial: dict[str, int] = {}

    @property
    def total(self) -> int:
        return len(self._configs)

    def suggest(self, trial_id: str) -> dict | str | None:
        if trial_id in self._by_trial:
            return _drop_none(self._configs[self._by_trial[trial_id]])
        if self._next >= len(self._configs):
            return Searcher.FINISHED
        self._by_trial[trial_id] = self._next
        self._next += 1
        return _drop_none(self._configs[self._by_trial[trial_id]])

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        pass

    def get_state(self) -> dict:
        return {"next": self._next, "by_trial": dict(self._by_trial)}

    def set_state(self, state: dict) -> None:
        self._next, self._by_trial = state["next"], dict(state["by_trial"])

    def save(self, checkpoint_path: str) -> None:
        import pickle

        with open(checkpoint_path, "wb") as f:
            pickle.dump({"configs": self._configs, **self.get_state()}, f)

    def restore(self, checkpoint_path: str) -> None:
        import pickle

        with open(checkpoint_path, "rb") as f:
            state = pickle.load(f)
        self._configs = state["configs"]
        self.set_state(state)


class BudgetSearcher(Searcher):
    """Stops suggesting new trials once the compute spent reaches `budget_flops`; running trials finish.

    Spent = `base_flops` (the shared SFT branch points, counted once) + each trial's latest `rl_flops`
    (its RL compute; `flops` minus the branch point's SFT share).
    """

    def __init__(self, searcher: Searcher, *, budget_flops: float, base_flops: float = 0.0):
        if budget_flops <= 0:
            raise ValueError(f"budget_flops={budget_flops} must be > 0 (e.g. 1e18)")
        super().__init__(metric=searcher.metric, mode=searcher.mode)
        self.searcher = searcher
        self.budget_flops = float(budget_flops)
        self.base_flops = float(base_flops)
        self._rl_flops: dict[str, float] = {}

    @property
    def spent_flops(self) -> float:
        return self.base_flops + sum(self._rl_flops.values())

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    def suggest(self, trial_id: str) -> dict | str | None:
        if self.spent_flops >= self.budget_flops:
            logger.info(
                "FLOPs budget spent (%.3g of %.3g): no new trials", self.spent_flops, self.budget_flops
            )
            return Searcher.FINISHED
        return self.searcher.suggest(trial_id)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self._track(trial_id, result)
        self.searcher.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if result:
            self._track(trial_id, result)
        self.searcher.on_trial_complete(trial_id, result=result, error=error)

    def _track(self, trial_id: str, result: dict) -> None:
        if "rl_flops" in result or "flops" in result:
            self._rl_flops[trial_id] = rl_flops_of(result)

    def get_state(self) -> dict:
        return {
            "budget_flops": self.budget_flops,
            "base_flops": self.base_flops,
            "rl_flops": dict(self._rl_flops),
        }

    def set_state(self, state: dict) -> None:
        self.budget_flops, self.base_flops = state["budget_flops"], state["base_flops"]
        self._rl_flops = dict(state["rl_flops"])


class IndexedSearcher(Searcher):
    """The outermost searcher of a sweep: adds `SUGGESTION_INDEX` (0, 1, 2, ... in the order suggestions reach
    Tune) to every configuration, so a trial's seed (`sweep.tracking.seed_of_trial`) does not depend on Ray's
    random trial ids. Tune keeps the index in the trial's config (a resumed or retried trial keeps it); the next
    index is saved with the wrapped searcher's state, so a resumed sweep goes on counting."""

    def __init__(self, searcher: Searcher):
        super().__init__(metric=searcher.metric, mode=searcher.mode)
        self.searcher = searcher
        self._next = 0
        self._given: dict[str, int] = {}  # running trials' indices (a re-asked trial gets its own back)

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        return self.searcher.set_max_concurrency(max_concurrent)

    def suggest(self, trial_id: str) -> dict | str | None:
        config = self.searcher.suggest(trial_id)
        if not isinstance(config, dict):  # None (wait) or FINISHED
            return config
        if trial_id not in self._given:
            self._given[trial_id] = self._next
            self._next += 1
        return {**config, SUGGESTION_INDEX: self._given[trial_id]}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.searcher.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self._given.pop(trial_id, None)
        self.searcher.on_trial_complete(trial_id, result=result, error=error)

    def get_state(self) -> dict:
        return {"next": self._next, "given": dict(self._given)}

    def set_state(self, state: dict) -> None:
        self._next, self._given = state["next"], dict(state["given"])

    def save(self, checkpoint_path: str) -> None:
        """The wrapped searcher's file, with this searcher's state around it (one file, as Tune expects)."""
        import os
        import pickle

        inner = f"{checkpoint_path}.inner"
        try:
            self.searcher.save(inner)
            with open(inner, "rb") as f:
                inner_bytes = f.read()
        except NotImplementedError:
            inner_bytes = None
        finally:
            if os.path.exists(inner):
                os.remove(inner)
        with open(checkpoint_path, "wb") as f:
            pickle.dump({"indexed": self.get_state(), "inner": inner_bytes}, f)

    def restore(self, checkpoint_path: str) -> None:
        import os
        import pickle

        with open(checkpoint_path, "rb") as f:
            state = pickle.load(f)
        self.set_state(state["indexed"])
        if state["inner"] is not None:
            inner = f"{checkpoint_path}.inner"
            with open(inner, "wb") as f:
                f.write(state["inner"])
            try:
                self.searcher.restore(inner)
            finally:
                os.remove(inner)


def make_searcher(
    space: SearchSpace,
    *,
    kind: SearchKind,
    seed: int,
    max_concurrent: int | None = None,
    budget_flops: float | None = None,
    base_flops: float = 0.0,
) -> Searcher:
    """The searcher for a sweep: `random` (the study, `RandomSearcher`), `tpe` (Optuna's TPE sampler) or `grid`,
    wrapped in an `IndexedSearcher` (every suggestion carries its index, which seeds the trial).

    Args:
        space: a concrete space (no `values: auto` left).
        kind: random | tpe | grid.
        seed: seeds the sampler; the same seed gives the same sequence of configurations.
        max_concurrent: at most this many trials running (a ConcurrencyLimiter); None = as resources allow.
        budget_flops: stop suggesting once this much compute is spent (see `BudgetSearcher`).
        base_flops: compute already spent on the shared SFT branch points.
    """
    if kind == "grid":
        searcher: Searcher = GridSearcher(space, metric=space.metric, mode=space.mode)
    elif kind == "random":
        searcher = RandomSearcher(space, seed=seed, metric=space.metric, mode=space.mode)
    elif kind == "tpe":
        balanced = [p.name for p in space.parameters if p.balanced]
        if balanced:  # TPE chooses every value by its model: there are no blocks to draw from
            logger.warning(
                "%s: `balanced: true` is honoured by random search only; TPE draws them as it likes", balanced
            )
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=10)
        searcher = OptunaSearch(
            space=OptunaSpace(space), metric=space.metric, mode=space.mode, sampler=sampler
        )
    else:
        raise ValueError(f"search={kind!r}; use one of {list(SEARCH_KINDS)}")
    if budget_flops is not None:
        searcher = BudgetSearcher(searcher, budget_flops=budget_flops, base_flops=base_flops)
    if max_concurrent is not None:
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent={max_concurrent} must be >= 1 (or None for no limit)")
        searcher = ConcurrencyLimiter(searcher, max_concurrent=max_concurrent)
    return IndexedSearcher(searcher)


def _drop_none(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if v is not None}
