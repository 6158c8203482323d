"""Secrets never reach MLflow: secret-named keys and secret env values are redacted."""

from __future__ import annotations

from sweep.secrets import REDACTED, is_secret_name, redact, secret_values
from sweep.tracking import SUGGESTION_INDEX, seed_of_trial, trial_seed


def test_secret_names():
    for name in [
        "SNOW_INSTANCE_PWD",
        "OPENAI_API_KEY",
        "HF_TOKEN",
        "token",
        "db_password",
        "aws_secret_access_key",
    ]:
        assert is_secret_name(name), name
    for name in ["temperature", "SNOW_INSTANCE_URL", "batch_size", "tokens", "max_new_tokens", "api_key_env"]:
        assert not is_secret_name(name), name


def test_redact_keys_and_values():
    env = {"SNOW_INSTANCE_PWD": "hunter2-very-secret", "PATH": "/usr/bin", "MY_API_KEY": "sk-123456"}
    secrets = secret_values(env)
    assert secrets == ["hunter2-very-secret", "sk-123456"]
    data = {
        "url": "https://x",
        "password": "abc",
        "nested": [{"msg": "login with hunter2-very-secret ok"}],
        "n": 3,
        "note": "key sk-123456",
    }
    out = redact(data, secrets=secrets)
    assert out == {
        "url": "https://x",
        "password": REDACTED,
        "nested": [{"msg": f"login with {REDACTED} ok"}],
        "n": 3,
        "note": f"key {REDACTED}",
    }
    assert data["password"] == "abc"  # a copy


def test_trial_seed_is_stable_and_distinct():
    assert trial_seed(0, 3) == trial_seed(0, 3)
    assert len({trial_seed(0, i) for i in range(100)} | {trial_seed(1, 0)}) == 101
    assert seed_of_trial(0, {SUGGESTION_INDEX: 3, "gamma": 1.0}, "any-id") == trial_seed(0, 3)
    # a trial of a sweep started before suggestion indices keeps its trial-id seed
    assert seed_of_trial(0, {}, "abc") == seed_of_trial(0, {}, "abc") != seed_of_trial(0, {}, "abd")


def test_new_sqlite_store_is_created_in_wal_mode(tmp_path):
    import sqlite3

    from mlflow.tracking import MlflowClient

    from sweep.tracking import checkpoint_sqlite_store, prepare_sqlite_store

    uri = f"sqlite:///{tmp_path / 'sub' / 'mlruns.db'}"
    prepare_sqlite_store(uri)
    client = MlflowClient(tracking_uri=uri)
    run = client.create_run(client.create_experiment("e"))
    client.set_tag(run.info.run_id, "k", "v")
    checkpoint_sqlite_store(uri)
    con = sqlite3.connect(tmp_path / "sub" / "mlruns.db")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # the checkpoint folded the journal into the file: a copy of the file alone has the run
    copy = tmp_path / "copy.db"
    con.execute(f"VACUUM INTO '{copy}'")
    con.close()
    assert MlflowClient(tracking_uri=f"sqlite:///{copy}").get_run(run.info.run_id).data.tags["k"] == "v"

    old = tmp_path / "old.db"  # an existing store keeps its journal mode
    sqlite3.connect(old).execute("CREATE TABLE t (x)").connection.close()
    prepare_sqlite_store(f"sqlite:///{old}")
    assert sqlite3.connect(old).execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    prepare_sqlite_store("http://127.0.0.1:5000")  # other stores: nothing to do


def _store(tmp_path):
    """A sqlite MLflow store with an experiment and a parent run; returns (client, experiment id, parent run id,
    the paper space, a factory of TrialRunLoggers on that store)."""
    from mlflow.tracking import MlflowClient

    from sweep.space import load_space
    from sweep.tracking import prepare_sqlite_store
    from sweep.trial_logger import TrialRunLogger

    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    prepare_sqlite_store(uri)
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("e")
    parent = client.create_run(exp).info.run_id
    space = load_space("paper")

    def new_logger() -> TrialRunLogger:
        return TrialRunLogger(
            tracking_uri=uri,
            experiment_id=exp,
            parent_run_id=parent,
            sweep_id="s",
            space=space,
            tags={},
            base_seed=0,
            branch_points={},
            journal_path=tmp_path / "journal.jsonl",
        )

    return client, exp, parent, space, new_logger


def test_trial_logger_writes_queued_results_in_one_batch(tmp_path, monkeypatch):
    import threading
    from types import SimpleNamespace

    client, exp, parent, space, new_logger = _store(tmp_path)
    logger = new_logger()
    config = {p.name: p.values[0] for p in space.parameters}
    trial = SimpleNamespace(trial_id="t1", config=config, path=str(tmp_path / "t1"), error_file=None)
    release = threading.Event()
    start = logger._op_start
    monkeypatch.setattr(logger, "_op_start", lambda *a: (release.wait(10), start(*a)))
    batches = []
    log_batch = logger.client.log_batch
    monkeypatch.setattr(
        logger.client, "log_batch", lambda run_id, **kw: (batches.append(kw), log_batch(run_id, **kw))
    )
    logger.on_trial_start(0, [], trial)  # the writer blocks here while the results queue up
    for step in (1, 2, 3):
        logger.on_trial_result(0, [], trial, {"step": step, "flops": 10.0 * step, "training_iteration": step})
    logger.on_trial_complete(0, [], trial)
    release.set()
    logger.flush()
    (run,) = [r for r in client.search_runs([exp]) if r.info.run_id != parent]
    assert run.info.status == "FINISHED" and run.data.tags["mlflow.parentRunId"] == parent
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "flops")] == [
        (1, 10.0),
        (2, 20.0),
        (3, 30.0),
    ]
    assert [len(b.get("metrics", [])) for b in batches] == [0, 3]  # params, then the three results at once
    assert "training_iteration" not in run.data.metrics


def test_trial_logger_logs_a_step_reported_again_once(tmp_path):
    """A trial restarted from an earlier checkpoint reports its steps again: after a driver restart (a new
    logger on the same store) and after a retry in the same driver, each (key, step) stays logged once."""
    from types import SimpleNamespace

    client, exp, parent, space, new_logger = _store(tmp_path)

    config = {p.name: p.values[0] for p in space.parameters}
    trial = SimpleNamespace(trial_id="t1", config=config, path=str(tmp_path / "t1"), error_file=None)
    first = new_logger()
    first.on_trial_start(0, [], trial)
    first.on_trial_result(0, [], trial, {"step": 1, "flops": 10.0})
    first.flush()  # the driver is killed here

    second = new_logger()  # the resumed driver: the trial starts again from scratch
    second.on_trial_start(0, [], trial)
    for step in (1, 2):
        second.on_trial_result(0, [], trial, {"step": step, "flops": 11.0 * step, "loss": 1.0 / step})
    second.on_trial_recover(0, [], trial)  # a retry from the checkpoint of step 1
    for step in (2, 3):
        second.on_trial_result(0, [], trial, {"step": step, "flops": 12.0 * step, "loss": 1.0 / step})
    second.on_trial_complete(0, [], trial)
    second.flush()
    (run,) = [r for r in client.search_runs([exp]) if r.info.run_id != parent]
    history = {
        k: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, k)]
        for k in ("flops", "loss")
    }
    assert sorted(history["flops"]) == [(1, 10.0), (2, 22.0), (3, 36.0)]  # each step once, its first value
    assert sorted(history["loss"]) == [(1, 1.0), (2, 0.5), (3, 1.0 / 3)]
    assert run.info.status == "FINISHED"
