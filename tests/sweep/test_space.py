"""Search spaces: the packaged YAML round-trips to configs; bad files fail naming the field."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from sweep.space import SearchSpace, load_space, param_to_str

KNOWN = {
    "temperature": float,
    "curriculum": bool,
    "curriculum_target_return": float,
    "batch_size": int,
    "gamma": float,
    "sft_checkpoint": float,
}


def _space(params: dict, **top) -> SearchSpace:
    return SearchSpace.from_dict({"name": "t", "parameters": params, **top}, known=KNOWN)


def test_paper_space_has_the_study_names_and_values():
    space = load_space("paper")
    assert set(space.names) == {
        "temperature",
        "curriculum",
        "curriculum_target_return",
        "curriculum_temperature",
        "gamma",
        "grouped_advantage",
        "zero_adv_filter",
        "std_normalize",
        "batch_size",
        "learning_rate",
        "error_log",
        "importance_ratio",
        "sft_checkpoint",
    }
    assert space["gamma"].values == (0.5, 0.8, 0.9, 0.95, 0.98, 1.0)
    assert space["sft_checkpoint"].values == (0, 2.5e18, 7.6e18)  # YAML 1.1 reads 2.5e18 as a string: coerced
    assert space["curriculum_temperature"].parent == "curriculum"
    # 5 temps x (3*2 curriculum-on + 1 off) x 6 gammas x 2^6 booleans x 4 batches x 3 lrs x 3 branch points
    assert space.grid_size() == 5 * 7 * 6 * 2**5 * 4 * 3 * 3


@pytest.mark.parametrize("name", ["paper", "demo", "study-cpu"])
def test_space_round_trips_through_yaml(name, tmp_path):
    space = load_space(name)
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space.to_dict(), sort_keys=False))
    again = load_space(path)
    assert again == space
    assert again.content_hash() == space.content_hash()


def test_study_cpu_space_scales_the_papers_names_and_draws():
    """The packaged CPU-scale space: the study's 12 names, CPU-scale values, branch points filled, seeded draws."""
    from sweep.branch_points import BuiltBranchPoint, attach

    paper, cpu = load_space("paper"), load_space("study-cpu")
    assert cpu.names == paper.names and cpu["sft_checkpoint"].auto
    assert cpu["learning_rate"].values == (3e-5, 3e-4)
    assert cpu["batch_size"].values == (32, 64)
    varied = [p for p in cpu.parameters if len(p.values) > 1]
    assert all(len(p.values) == 2 for p in varied) and len(varied) == 9  # 10 coefficients per branch point
    assert cpu["sft_checkpoint"].balanced  # each branch point gets the same number of runs
    assert cpu["importance_ratio"].values == (False,)  # fixed at the recommended value (one PPO epoch)
    built = [BuiltBranchPoint("/sft/a", 1.5e13, 300), BuiltBranchPoint("/sft/b", 3.1e13, 600)]
    space, paths = attach(cpu, built)
    assert space["sft_checkpoint"].values == (0, 1.5e13, 3.1e13) and len(paths) == 3
    draws = [space.sample(np.random.default_rng(3)) for _ in range(2)]
    assert draws[0] == draws[1] and space.resolve(draws[0]) == draws[0]


def test_sample_respects_conditionals_and_seed():
    space = load_space("paper")
    a = [space.sample(np.random.default_rng(7)) for _ in range(3)]
    np.random.seed(123)  # global state must not matter
    b = [space.sample(np.random.default_rng(7)) for _ in range(3)]
    assert a == b
    rng = np.random.default_rng(0)
    for _ in range(200):
        cfg = space.sample(rng)
        assert space.resolve(cfg) == cfg
        active = cfg["curriculum"] is True
        assert (cfg["curriculum_target_return"] is not None) == active
        assert (cfg["curriculum_temperature"] is not None) == active


def test_grid_expands_conditionals_only_under_parent():
    space = _space(
        {
            "curriculum": {"values": [True, False]},
            "curriculum_target_return": {"values": [0.25, 0.5], "when": {"curriculum": True}},
        }
    )
    assert space.grid() == [
        {"curriculum": True, "curriculum_target_return": 0.25},
        {"curriculum": True, "curriculum_target_return": 0.5},
        {"curriculum": False, "curriculum_target_return": None},
    ]


def test_resolve_fills_inactive_and_params_are_strings():
    space = load_space("paper")
    cfg = space.sample(np.random.default_rng(1))
    cfg = {**cfg, "curriculum": False, "curriculum_target_return": None, "curriculum_temperature": None}
    strings = {k: param_to_str(v) for k, v in space.resolve(cfg).items()}
    assert strings["curriculum"] == "False" and strings["curriculum_target_return"] == ""
    assert strings["learning_rate"] in {"1e-06", "5e-06", "5e-07"}


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"temprature": {"values": [0.1]}}, "unknown hyperparameter 'temprature'"),
        ({"curriculum": {"values": [1, 0]}}, r"curriculum=1.*bool"),
        ({"batch_size": {"values": [64.5]}}, r"batch_size=64.5.*integer"),
        ({"gamma": {"values": []}}, "gamma.*non-empty list"),
        ({"gamma": {"values": [0.9, 0.9]}}, "duplicate"),
        ({"gamma": {"values": [0.9], "step": 1}}, r"gamma: unknown key\(s\) \['step'\]"),
        ({"curriculum_target_return": {"values": [0.5], "when": {"curriculum": True}}}, "not in the space"),
        (
            {
                "curriculum": {"values": [False]},
                "curriculum_target_return": {"values": [0.5], "when": {"curriculum": True}},
            },
            "never holds",
        ),
        ({"gamma": {"values": "auto"}}, "only for sft_checkpoint"),
    ],
)
def test_bad_space_names_the_field(params, match):
    with pytest.raises(ValueError, match=match):
        _space(params)


def test_bad_top_level_and_search():
    with pytest.raises(ValueError, match="unknown top-level key"):
        _space({"gamma": {"values": [0.9]}}, metrik="x")
    with pytest.raises(ValueError, match="search='bayes'"):
        _space({"gamma": {"values": [0.9]}}, search="bayes")


def test_resolve_rejects_values_outside_the_space():
    space = load_space("paper")
    cfg = space.sample(np.random.default_rng(3))
    with pytest.raises(ValueError, match="gamma=0.7 is not in the space"):
        space.resolve({**cfg, "gamma": 0.7})
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        space.resolve({**cfg, "lr": 1e-6})
    with pytest.raises(ValueError, match="'temperature' is active but has no value"):
        space.resolve({k: v for k, v in cfg.items() if k != "temperature"})
    assert (
        space.resolve(
            {**cfg, "curriculum": True, "curriculum_target_return": 0.5, "curriculum_temperature": 0.1}
        )["curriculum_temperature"]
        == 0.1
    )
    with pytest.raises(ValueError, match="curriculum=1 is not in the space"):  # 1 is not True
        space.resolve({**cfg, "curriculum": 1})


def test_auto_branch_points_need_filling():
    space = _space({"sft_checkpoint": {"values": "auto"}, "gamma": {"values": [0.9]}})
    with pytest.raises(ValueError, match="values: auto"):
        space.grid()
    filled = space.with_values("sft_checkpoint", [0, 1.5e15])
    assert [c["sft_checkpoint"] for c in filled.grid()] == [0, 1.5e15]


def test_unknown_space_file():
    with pytest.raises(FileNotFoundError, match="packaged name"):
        load_space("no-such-space")
