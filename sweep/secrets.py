"""Secrets kept out of everything a sweep writes: logs, MLflow, sweep.json, Tune's state, trial samples, errors.

Secrets travel as environment variables (SNOW_INSTANCE_PWD, OPENAI_API_KEY, ...), never in saved options. What
leaves a process is scrubbed of the values of its own secret-named variables (`secret_values`); credentials in
URIs are replaced by `<redacted>` (`redact_uri`); a tracking URI saved that way is completed at resume from
`MLFLOW_TRACKING_URI` (`resolve_uri`).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "REDACTED",
    "RedactingFilter",
    "find_secret",
    "is_secret_name",
    "redact",
    "redact_uri",
    "resolve_uri",
    "secret_values",
]

REDACTED = "<redacted>"
_SECRET_NAME = re.compile(
    r"(PWD|PASSW|SECRET|API_?KEY|ACCESS_?KEY|CREDENTIAL|PRIVATE_?KEY|AUTHORI[SZ]ATION|COOKIE|(^|_)KEY$"
    r"|(^|_)TOKEN$|(^|_)AUTH$)",
    re.IGNORECASE,
)  # `max_new_tokens` and `tokens` are not secrets; HF_TOKEN, openai_key and authorization are
_URI_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]+)@")
_SECRET_QUERY = re.compile(r"(?P<key>[?&][^=&\s]+)=(?P<value>[^&#\s]*)")
_MIN_SECRET_LEN = 4  # shorter values would scrub ordinary text


def is_secret_name(name: str) -> bool:
    """Whether a key or variable name looks like it holds a secret (PWD, PASSWORD, TOKEN, API_KEY, SECRET...)."""
    if name.lower().endswith("_env"):  # names the variable that holds a secret (TeacherConfig.api_key_env)
        return False
    if name.upper() in ("PWD", "OLDPWD"):  # the shell's working directories
        return False
    return bool(_SECRET_NAME.search(name))


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of this process's (or `environ`'s) secret-named variables and the passwords in its URIs, longest
    first (so a secret that contains another is scrubbed whole)."""
    environ = os.environ if environ is None else environ
    found = {v for k, v in environ.items() if is_secret_name(k) and len(v) >= _MIN_SECRET_LEN}
    for v in environ.values():
        found.update(
            m.group("pw") for m in _URI_USERINFO.finditer(v) if len(m.group("pw")) >= _MIN_SECRET_LEN
        )
    return sorted(found, key=len, reverse=True)


def redact_uri(text: str) -> str:
    """`text` with the password of every `scheme://user:password@` and secret-named query values redacted."""
    out = _URI_USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", text)
    if "://" in out and "?" in out:
        out = _SECRET_QUERY.sub(
            lambda m: f"{m['key']}={REDACTED}" if is_secret_name(m["key"][1:]) else m[0], out
        )
    return out


def redact(obj: Any, *, secrets: Iterable[str] | None = None) -> Any:
    """A copy of `obj` (dicts, lists, strings) with secret-named keys, credentials in URIs and known secret
    values replaced by `<redacted>`.

    Args:
        obj: plain data (JSON-like).
        secrets: literal values to scrub from strings; default: `secret_values()` of the environment.
    """
    secrets = list(secret_values() if secrets is None else secrets)
    if isinstance(obj, Mapping):
        return {
            k: (REDACTED if isinstance(k, str) and is_secret_name(k) else redact(v, secrets=secrets))
            for k, v in obj.items()
        }
    if isinstance(obj, (list, tuple)):
        return [redact(v, secrets=secrets) for v in obj]
    if isinstance(obj, str):
        for s in secrets:
            obj = obj.replace(s, REDACTED)
        return redact_uri(obj)
    return obj


def find_secret(obj: Any, where: str) -> str | None:
    """Where in `obj` (mappings, lists, strings) a secret is written out: a secret-named key (`openai_key`,
    `authorization`, ...) or a URI with a password; None when there is none."""
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            hit = f"{where}.{key}" if is_secret_name(str(key)) else find_secret(value, f"{where}.{key}")
            if hit:
                return hit
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            hit = find_secret(value, f"{where}[{i}]")
            if hit:
                return hit
    elif isinstance(obj, str) and redact_uri(obj) != obj:
        return where
    return None


def resolve_uri(saved: str, environ: Mapping[str, str] | None = None) -> str:
    """The full URI behind a saved (redacted) one: `MLFLOW_TRACKING_URI` when it redacts to `saved`.

    Raises:
        ValueError: `saved` lost a password and the environment does not give it back.
    """
    if REDACTED not in saved:
        return saved
    environ = os.environ if environ is None else environ
    full = environ.get("MLFLOW_TRACKING_URI", "")
    if full and redact_uri(full) == saved:
        return full
    raise ValueError(
        f"the sweep's tracking URI is saved without its password ({saved}): export MLFLOW_TRACKING_URI with "
        "the full URI, or give the password the store's own way (MLFLOW_TRACKING_PASSWORD, PGPASSWORD)"
    )


class RedactingFilter(logging.Filter):
    """A logging filter that redacts each record's message (`redact`): URI passwords and `secrets` (default:
    this process's `secret_values()` when the filter is made). The CLI puts it on its log handler, so what
    libraries log (MLflow's "View run at <tracking URI>") is redacted too."""

    def __init__(self, secrets: Iterable[str] | None = None):
        super().__init__()
        self.secrets = list(secret_values() if secrets is None else secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage(), secrets=self.secrets), ()
        return True
