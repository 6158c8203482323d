"""The driver on a real local Ray and a sqlite MLflow: nested runs, retries, resources, budget, export."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from analysis.selection import select_checkpoint
from sweep.driver import launch, load_settings
from sweep.export import export_sweep
from sweep.space import load_space
from sweep.tracking import find_child_runs, sweep_status, trial_seed

SECRET = "hunter2-do-not-log-8431"


def _children(settings):
    client = MlflowClient(tracking_uri=settings.tracking_uri)
    return client, find_child_runs(client, settings.experiment_id, settings.sweep_id)


def test_sweep_logs_parent_and_nested_runs(ray_cluster, tmp_path, monkeypatch):
    monkeypatch.setenv("SNOW_INSTANCE_PWD", SECRET)
    result = launch(
        "paper",
        out_dir=tmp_path,
        objective="sweep.objectives:surrogate",
        num_trials=4,
        seed=11,
        options={"num_evals": 3, "note": f"the instance password is {SECRET}"},
    )
    s = result.settings
    assert (result.num_finished, result.num_failed, result.num_trials) == (4, 0, 4)
    client, runs = _children(s)
    parent = client.get_run(s.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["agentsweep.role"] == "sweep"
    assert len(runs) == 4 and {r.data.tags["mlflow.parentRunId"] for r in runs} == {s.parent_run_id}
    space = load_space("paper")
    for run in runs:
        params = run.data.params
        assert set(params) == set(space.names) and all(isinstance(v, str) for v in params.values())
        assert (params["curriculum_temperature"] == "") == (params["curriculum"] == "False")
        assert run.data.tags["agentsweep.branch_point"] == params["sft_checkpoint"]
        assert run.data.tags["agentsweep.seed"].isdigit() and run.data.tags["agentsweep.git_commit"]
        goal = client.get_metric_history(run.info.run_id, "heldout_goal_success")
        flops = client.get_metric_history(run.info.run_id, "flops")
        assert [m.step for m in goal] == [1, 2, 3] == [m.step for m in flops]
        assert [m.value for m in flops] == sorted(m.value for m in flops)
        assert flops[0].value >= float(params["sft_checkpoint"])
        files = {f.path for f in client.list_artifacts(run.info.run_id)} | {
            f.path for f in client.list_artifacts(run.info.run_id, "samples")
        }
        assert {"config.json", "samples/summary.json"} <= files
    # no secret in params, tags or artifacts: scan the whole store and the artifact tree
    db = Path(s.tracking_uri.removeprefix("sqlite:///"))
    stores = [p.read_bytes() for p in db.parent.glob(f"{db.name}*")]  # with the WAL journal, if one is left
    artifacts = [p.read_bytes() for p in (tmp_path / "mlartifacts").rglob("*") if p.is_file()]
    assert stores and artifacts and not any(SECRET.encode() in b for b in stores + artifacts)

    runs_path, curves_path = export_sweep(s.sweep_dir, tmp_path / "runs.parquet")
    table, curves = pd.read_parquet(runs_path), pd.read_parquet(curves_path)
    assert len(table) == 4 and set(table["status"]) == {"FINISHED"}
    assert {f"params.{n}" for n in space.names} <= set(table.columns)
    assert {"metrics.heldout_goal_success", "metrics.flops", "metrics.rl_flops"} <= set(table.columns)
    assert list(curves.columns[:3]) == ["run_id", "step", "flops"] and len(curves) == 12
    info = sweep_status(s.sweep_dir)
    assert info["trials_by_state"] == {"FINISHED": 4} and info["best"]["value"] == max(
        r.data.metrics["heldout_goal_success"] for r in runs
    )


def _seeds_by_suggestion(settings) -> list[tuple[int, int, int, tuple]]:
    """(suggestion index, seed tag, seed the objective got, params) of every trial, in suggestion order."""
    client, runs = _children(settings)
    out = []
    for run in runs:
        path = client.download_artifacts(run.info.run_id, "samples/summary.json", tempfile.mkdtemp())
        tags = run.data.tags
        got = json.loads(Path(path).read_text())["seed"]
        out.append(
            (
                int(tags["agentsweep.suggestion"]),
                int(tags["agentsweep.seed"]),
                got,
                tuple(sorted(run.data.params.items())),
            )
        )
    return sorted(out)


def test_trial_seeds_follow_the_sweep_seed_and_suggestion_order(ray_cluster, tmp_path):
    def sweep(name: str, seed: int):
        result = launch(
            "paper",
            out_dir=tmp_path / name,
            objective="sweep.objectives:surrogate",
            num_trials=3,
            seed=seed,
            options={"num_evals": 1},
        )
        return _seeds_by_suggestion(result.settings)

    a, b, c = sweep("a", 11), sweep("b", 11), sweep("c", 12)
    assert [row[0] for row in a] == [0, 1, 2]
    assert all(tag == got == trial_seed(11, i) for i, tag, got, _ in a)  # the objective got the tagged seed
    assert a == b  # same sweep seed: same seeds and configs in the same order, whatever Ray's trial ids
    assert [row[0] for row in c] == [0, 1, 2]
    assert not {row[1] for row in a} & {row[1] for row in c}


def test_select_checkpoint_uses_rolling_mean():
    curve = pd.DataFrame({"step": [1, 2, 3, 4, 5], "heldout_goal_success": [0.0, 0.9, 0.1, 0.5, 0.6]})
    # rolling means (window 3, partial at the start): 0, .45, .333, .5, .4 -> step 4, not the raw max at step 2
    assert select_checkpoint(curve["heldout_goal_success"]) == 3


def _tiny_space(tmp_path, params) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({"name": "tiny", "search": "grid", "parameters": params}, sort_keys=False))
    return path


def test_failing_trial_is_retried_then_marked_failed(ray_cluster, tmp_path):
    space = _tiny_space(tmp_path, {"learning_rate": {"values": [1.0e-6, 5.0e-6]}})
    result = launch(
        space,
        out_dir=tmp_path / "out",
        objective="sweep.objectives:surrogate",
        max_failures=1,
        options={"num_evals": 2, "fail_when": {"learning_rate": 5.0e-6}},
    )
    assert (result.num_finished, result.num_failed) == (1, 1)
    _, runs = _children(result.settings)
    by_lr = {r.data.params["learning_rate"]: r for r in runs}
    assert len(runs) == 2 and by_lr["1e-06"].info.status == "FINISHED"
    failed = by_lr["5e-06"]
    assert failed.info.status == "FAILED"
    assert failed.data.tags["agentsweep.retries"] == "1"  # retried once, one run (not two)
    assert "configured to fail" in failed.data.tags["agentsweep.error"]


def _summaries(client, runs) -> list[dict]:
    out = []
    for run in runs:
        with tempfile.TemporaryDirectory() as dst:  # download_artifacts would leave a temp dir behind
            path = client.download_artifacts(run.info.run_id, "samples/summary.json", dst_path=dst)
            summary = json.loads(Path(path).read_text())
        out.append({**summary, "start": run.info.start_time, "end": run.info.end_time})
    return out


def test_logical_gpu_and_custom_resources_are_honoured(ray_cluster, tmp_path):
    space = _tiny_space(tmp_path, {"gamma": {"values": [0.9, 1.0]}, "batch_size": {"values": [64, 256]}})
    half = launch(
        space,
        out_dir=tmp_path / "half",
        objective="sweep.objectives:surrogate",
        gpus_per_trial=0.5,
        custom_resources={"browser": 1},
        options={"num_evals": 2},
    )
    client, runs = _children(half.settings)
    assert half.num_finished == 4
    for summary in _summaries(client, runs):
        assert summary["resources"]["GPU"] == 0.5 and summary["resources"]["browser"] == 1.0
    whole = launch(
        space,
        out_dir=tmp_path / "whole",
        objective="sweep.objectives:surrogate",
        gpus_per_trial=1,
        options={"num_evals": 2, "sleep_s": 0.4},
    )
    client, runs = _children(whole.settings)
    spans = sorted((s["start"], s["end"]) for s in _summaries(client, runs))
    assert whole.num_finished == 4 and all(s["resources"]["GPU"] == 1.0 for s in _summaries(client, runs))
    # one logical GPU, one GPU per trial: trials never overlap
    assert all(prev_end <= start for (_, prev_end), (start, _) in zip(spans, spans[1:], strict=False))


def test_flops_budget_stops_new_trials(ray_cluster, tmp_path):
    space = _tiny_space(
        tmp_path, {"batch_size": {"values": [64]}, "gamma": {"values": [0.5, 0.8, 0.9, 0.95, 1.0]}}
    )
    # each trial: 2 evals x 64 episodes x 1e15 FLOPs = 1.28e17 RL FLOPs; budget 2.5e17 -> 2 trials, not 5
    result = launch(
        space,
        out_dir=tmp_path,
        objective="sweep.objectives:surrogate",
        budget_flops=2.5e17,
        search="random",
        max_concurrent=1,
        options={"num_evals": 2, "rl_flops_per_episode": 1e15},
    )
    assert result.num_finished == 2 and result.num_trials == 2
    assert sweep_status(result.settings.sweep_dir)["flops_spent"] == pytest.approx(2.56e17)


def test_asha_stops_weak_trials_early(ray_cluster, tmp_path):
    result = launch(
        "paper",
        out_dir=tmp_path,
        objective="sweep.objectives:surrogate",
        num_trials=8,
        seed=2,
        scheduler="asha",
        asha_max_step=9,
        asha_grace_step=1,
        asha_reduction_factor=3,
        max_concurrent=2,
        options={"num_evals": 9},
    )
    _, runs = _children(result.settings)
    steps = sorted(int(r.data.metrics["step"]) if "step" in r.data.metrics else -1 for r in runs)
    table, _ = __import__("sweep.export", fromlist=["runs_tables"]).runs_tables(result.settings.sweep_dir)
    evals = sorted(table["metrics.num_evals"])
    assert result.num_finished == 8 and evals[0] < 9 and evals[-1] == 9 and steps


def test_settings_round_trip_and_bad_settings(ray_cluster, tmp_path):
    with pytest.raises(ValueError, match="gpus_per_trial=1.5"):
        launch("paper", out_dir=tmp_path, num_trials=1, gpus_per_trial=1.5)
    with pytest.raises(ValueError, match="options.teacher.api_key looks like a secret"):
        launch("paper", out_dir=tmp_path, num_trials=1, options={"teacher": {"api_key": "x"}})
    with pytest.raises(FileNotFoundError, match="sweep directory"):
        load_settings(tmp_path / "nope")


def test_sweep_complete_rules(tmp_path):
    from sweep.fit import sweep_complete
    from sweep.settings import SweepSettings

    space = load_space("paper").to_dict()
    fixed = SweepSettings(sweep_id="x", sweep_dir=str(tmp_path), space=space, num_trials=10)
    assert sweep_complete(fixed, num_trials=10, num_unfinished=0, spent_flops=0.0)
    assert not sweep_complete(fixed, num_trials=7, num_unfinished=0, spent_flops=0.0)  # interrupted (Ctrl-C)
    assert not sweep_complete(fixed, num_trials=10, num_unfinished=1, spent_flops=0.0)
    budget = SweepSettings(sweep_id="x", sweep_dir=str(tmp_path), space=space, budget_flops=1e18)
    assert sweep_complete(budget, num_trials=3, num_unfinished=0, spent_flops=1.2e18)
    assert not sweep_complete(budget, num_trials=3, num_unfinished=0, spent_flops=0.5e18)
