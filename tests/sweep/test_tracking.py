"""Secrets never reach MLflow: secret-named keys and secret env values are redacted."""

from __future__ import annotations

from sweep.tracking import REDACTED, is_secret_name, redact, secret_values, trial_seed


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
    data = {"url": "https://x", "password": "abc", "nested": [{"msg": "login with hunter2-very-secret ok"}],
            "n": 3, "note": "key sk-123456"}  # fmt: skip
    out = redact(data, secrets=secrets)
    assert out == {"url": "https://x", "password": REDACTED, "nested": [{"msg": f"login with {REDACTED} ok"}],
                   "n": 3, "note": f"key {REDACTED}"}  # fmt: skip
    assert data["password"] == "abc"  # a copy


def test_trial_seed_is_stable_and_distinct():
    assert trial_seed(0, "abc") == trial_seed(0, "abc")
    assert len({trial_seed(0, f"t{i}") for i in range(100)} | {trial_seed(1, "t0")}) == 101
