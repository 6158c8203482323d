"""Loading and preparing the runs table: formats, exclusions, binning, clear errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.runs import bin_values, load_runs, prepare_runs


def _frame(n: int = 6) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "run_id": [f"r{i}" for i in range(n)],
            "status": ["FINISHED"] * n,
            "params.lr": [str(v) for v in np.geomspace(1e-7, 1e-5, n)],
            "params.gamma": ["0.9", "0.95"] * (n // 2),
            "metrics.success": np.linspace(0, 1, n),
        }
    )


def test_csv_and_parquet_round_trip_keep_params_as_strings(tmp_path):
    frame = _frame()
    frame.loc[0, "params.gamma"] = ""
    frame.to_csv(tmp_path / "runs.csv", index=False)
    frame.to_parquet(tmp_path / "runs.parquet")
    for name in ("runs.csv", "runs.parquet"):
        loaded = load_runs(tmp_path / name)
        assert loaded["params.gamma"].tolist()[:2] == ["", "0.95"]
        assert loaded["params.lr"].map(type).eq(str).all()


def test_continuous_hparams_are_quantile_binned_and_stated():
    prepared = prepare_runs(_frame(12), metric="metrics.success", bins=3, max_levels=5)
    assert set(prepared.binned) == {"params.lr"}
    assert prepared.frame["params.lr"].nunique() == 3
    assert prepared.frame["params.gamma"].nunique() == 2  # few levels: left alone


def test_bin_values_keeps_inactive_entries():
    values = pd.Series(["1", "2", "", "3", "4"])
    out = bin_values(values, 2)
    assert out[2] == "" and out[[0, 1, 3, 4]].nunique() == 2


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"metric": "metrics.nope"}, "metrics.nope"),
        ({"metric": "metrics.success", "stratum": "params.nope"}, "params.nope"),
        ({"metric": "metrics.success", "hparams": ["lr", "missing"]}, "missing"),
        ({"metric": "metrics.success", "mode": "up"}, "mode"),
    ],
)
def test_bad_input_names_the_column_and_fix(kwargs, match):
    with pytest.raises(ValueError, match=match):
        prepare_runs(_frame(), **kwargs)


def test_non_numeric_metric_and_single_run_are_refused():
    frame = _frame()
    frame["metrics.success"] = frame["metrics.success"].astype(object)
    frame.loc[2, "metrics.success"] = "oops"
    with pytest.raises(ValueError, match="non-numeric.*oops"):
        prepare_runs(frame, metric="metrics.success")
    one = _frame().head(2)
    one.loc[1, "status"] = "KILLED"
    with pytest.raises(ValueError, match="at least 2"):
        prepare_runs(one, metric="metrics.success")


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_runs(tmp_path / "none.csv")
    (tmp_path / "runs.xlsx").write_text("x")
    with pytest.raises(ValueError, match="csv or .parquet"):
        load_runs(tmp_path / "runs.xlsx")


def test_mlflow_experiment_input(tmp_path):
    mlflow = pytest.importorskip("mlflow")
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    mlflow.set_tracking_uri(uri)
    exp = mlflow.create_experiment("study", artifact_location=str(tmp_path / "art"))
    for i, (g, s) in enumerate([("0.9", 0.2), ("0.95", 0.6), ("0.9", 0.4)]):
        with mlflow.start_run(experiment_id=exp, run_name=f"r{i}"):
            mlflow.log_params({"gamma": g})
            mlflow.log_metric("heldout_goal_success", s)
    runs = load_runs("mlflow:study", tracking_uri=uri)
    prepared = prepare_runs(runs, metric="metrics.heldout_goal_success")
    assert sorted(prepared.frame["params.gamma"]) == ["0.9", "0.9", "0.95"]
    with pytest.raises(ValueError, match="no MLflow experiment"):
        load_runs("mlflow:nope", tracking_uri=uri)
