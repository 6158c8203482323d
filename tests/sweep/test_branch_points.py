"""SFT branch points: built once per content hash, shared by every trial, attached to the space."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from sweep.branch_points import (
    BuiltBranchPoint,
    attach,
    content_hash,
    ensure_branch_points,
    given_branch_points,
)
from sweep.space import SearchSpace, param_to_str

BUILDER = "tests.sweep.test_branch_points:fake_builder"


def fake_builder(options: dict, cache_dir: str) -> list:
    """Writes two checkpoint folders and counts its calls in options['sft']['calls']."""
    calls = Path(options["sft"]["calls"])
    calls.write_text(str(int(calls.read_text() or 0) + 1) if calls.exists() else "1")
    out = []
    for step, flops in ((10, 1.5e15), (20, 3.0e15)):
        path = Path(cache_dir) / f"branch_{step}"
        path.mkdir(parents=True, exist_ok=True)
        (path / "weights.txt").write_text(f"step {step}")
        out.append(SimpleNamespace(path=str(path), flops=flops, step=step))
    return out


def _space(values) -> SearchSpace:
    return SearchSpace.from_dict(
        {"name": "bp", "parameters": {"gamma": {"values": [0.9, 1.0]}, "sft_checkpoint": {"values": values}}}
    )


def test_built_once_per_content_hash(tmp_path):
    calls = tmp_path / "calls.txt"
    options = {"sft": {"student": "tiny", "calls": str(calls)}}
    first = ensure_branch_points(BUILDER, options, cache_root=tmp_path / "cache")
    again = ensure_branch_points(BUILDER, options, cache_root=tmp_path / "cache")
    assert (
        first
        == again
        == [
            BuiltBranchPoint(
                str(tmp_path / "cache" / content_hash(BUILDER, options) / "branch_10"), 1.5e15, 10
            ),
            again[0].__class__(again[1].path, 3.0e15, 20),
        ]
    )
    assert calls.read_text() == "1"
    other = {"sft": {"student": "smollm2", "calls": str(calls)}}
    assert content_hash(BUILDER, other) != content_hash(BUILDER, options)
    ensure_branch_points(BUILDER, other, cache_root=tmp_path / "cache")
    assert calls.read_text() == "2"
    manifest = json.loads((tmp_path / "cache" / content_hash(BUILDER, options) / "manifest.json").read_text())
    assert [b["step"] for b in manifest["branch_points"]] == [10, 20]


def test_attach_auto_and_explicit_values():
    built = [BuiltBranchPoint("/bp/a", 1.5e15, 10), BuiltBranchPoint("/bp/b", 3.0e15, 20)]
    space, paths = attach(_space("auto"), built)
    assert space["sft_checkpoint"].values == (0, 1.5e15, 3.0e15)
    assert paths == {"0": "", "1500000000000000.0": "/bp/a", "3000000000000000.0": "/bp/b"}
    space, paths = attach(_space([0, 1.49e15]), built)  # within 5%: snapped to the built FLOPs
    assert space["sft_checkpoint"].values == (0, 1.5e15) and paths["1500000000000000.0"] == "/bp/a"
    with pytest.raises(ValueError, match="sft_checkpoint=2000000000000000.0 matches no built branch point"):
        attach(_space([2.0e15]), built)


def test_trials_share_the_branch_points(ray_cluster, tmp_path):
    from mlflow.tracking import MlflowClient

    from sweep.driver import launch
    from sweep.tracking import find_child_runs

    calls = tmp_path / "calls.txt"
    options = {"num_evals": 2, "sft": {"student": "tiny", "calls": str(calls)}}
    space = _space("auto")
    result = launch(
        space,
        out_dir=tmp_path,
        objective="sweep.objectives:surrogate",
        branch_builder=BUILDER,
        options=options,
        search="grid",
    )
    s = result.settings
    assert result.num_finished == 6 and calls.read_text() == "1"  # 2 gammas x 3 branch points, one SFT build
    client = MlflowClient(tracking_uri=s.tracking_uri)
    seen = set()
    for run in find_child_runs(client, s.experiment_id, s.sweep_id):
        with tempfile.TemporaryDirectory() as dst:  # download_artifacts would leave a temp dir behind
            path = client.download_artifacts(run.info.run_id, "samples/summary.json", dst_path=dst)
            summary = json.loads(Path(path).read_text())
        bp = run.data.params["sft_checkpoint"]
        assert summary["branch_point"] == (s.branch_points[bp] or None)
        assert summary["branch_point_flops"] == float(bp)
        assert run.data.tags["agentsweep.branch_point_path"] == s.branch_points[bp]
        assert client.get_metric_history(run.info.run_id, "flops")[0].value > float(bp)
        seen.add(bp)
    assert seen == {"0", "1500000000000000.0", "3000000000000000.0"}
    assert s.base_flops == 3.0e15


def test_given_branch_points_read_a_manifest_or_a_list(tmp_path):
    for step in (10, 20):
        (tmp_path / f"ckpt_{step}").mkdir()
    listed = [{"path": str(tmp_path / f"ckpt_{s}"), "flops": s * 1e12, "step": s} for s in (10, 20)]
    manifest = tmp_path / "branch_points.json"
    manifest.write_text(json.dumps(listed))
    want = [BuiltBranchPoint(str(tmp_path / f"ckpt_{s}"), s * 1e12, s) for s in (10, 20)]
    assert given_branch_points({"branch_points": str(manifest)}, "unused") == want
    assert given_branch_points({"branch_points": listed}, "unused") == want
    relative = tmp_path / "relative.json"  # paths in a file are relative to its folder
    relative.write_text(json.dumps([{"path": "ckpt_10", "flops": 1e13, "step": 10}]))
    assert given_branch_points({"branch_points": str(relative)}, "unused") == want[:1]
    # through the cache and into the space, as `agentsweep launch --branch-builder` uses it
    built = ensure_branch_points(
        "sweep.branch_points:given_branch_points", {"branch_points": listed}, cache_root=tmp_path / "cache"
    )
    space, paths = attach(_space([2.0e13]), built)
    assert tuple(space["sft_checkpoint"].values) == (2.0e13,) and paths == {
        param_to_str(2.0e13): str(tmp_path / "ckpt_20")
    }


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        (None, "options.branch_points is missing"),
        ("/nonexistent/branch_points.json", "cannot read"),
        ([], "non-empty list"),
        ([{"path": "/x", "flops": 1e12}], "needs path, flops and step"),
        ([{"path": "/nonexistent/ckpt", "flops": 1e12, "step": 1}], "does not exist"),
    ],
)
def test_given_branch_points_say_what_is_wrong(spec, says):
    with pytest.raises(ValueError, match=says):
        given_branch_points({} if spec is None else {"branch_points": spec}, "unused")
