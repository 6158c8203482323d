"""The simulator's space is the study's space: checked against sweep/spaces/paper.yaml (read, not imported)."""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis.simulate import CONDITIONAL, SPACE, STRATA

yaml = pytest.importorskip("yaml")
PAPER = Path(__file__).resolve().parents[2] / "sweep" / "spaces" / "paper.yaml"


def _canon(value) -> str:
    if isinstance(value, bool):
        return str(value)
    return repr(float(value))


def test_simulate_space_matches_paper_yaml():
    params = yaml.safe_load(PAPER.read_text())["parameters"]
    branch = params.pop("sft_checkpoint")
    assert set(SPACE) == set(params)
    for name, spec in params.items():
        assert {_canon(v) for v in spec["values"]} == {
            _canon(v == "True" if v in ("True", "False") else v) for v in SPACE[name]
        }, name
        when = spec.get("when")
        assert (CONDITIONAL.get(name) is None) == (when is None), name
        if when:
            ((parent, on),) = when.items()
            assert CONDITIONAL[name] == (parent, str(on)), name
    assert {_canon(v) for v in branch["values"]} == {_canon(s) for s in STRATA}
