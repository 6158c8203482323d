"""The trial adapter: a Ray Tune function trainable that runs one objective (`sweep.objectives`) per trial.

It resolves the trial's params, builds the `TrialContext`, resumes from Tune's checkpoint, and keeps the worker's
own secrets (the values of its secret-named environment variables) out of everything that leaves the trial:
reported values, the samples copied to the trial folder, the error Tune records, and what the objective prints
or logs through Python while it runs.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import tempfile
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sweep.secrets import REDACTED, RedactingFilter, redact, secret_values
from sweep.settings import SweepSettings
from sweep.space import BRANCH_POINT, param_to_str

__all__ = ["TrialError", "build_trainable"]


class TrialError(RuntimeError):
    """A trial's objective failed; the message is its traceback with the worker's secrets scrubbed."""


def build_trainable(settings: SweepSettings) -> Any:
    """The trainable Tune runs for every trial, with the sweep's per-trial resources."""
    from ray import tune

    trainable = tune.with_parameters(_trainable, settings_json=settings.to_json())
    return tune.with_resources(trainable, settings.resources())


def _trainable(config: dict[str, Any], settings_json: str) -> None:
    """The Tune function trainable: resolves params, builds the TrialContext, runs the objective."""
    from ray import tune

    settings = SweepSettings(**json.loads(settings_json))
    space = settings.search_space
    params = space.resolve({k: v for k, v in config.items() if k in space.names})
    context = tune.get_context()
    # Tune runs a trial in its own working dir; without that (RAY_CHDIR_TO_TRIAL_DIR=0) a temporary one
    in_trial_dir = Path(os.getcwd()).name == context.get_trial_name()
    with (
        contextlib.nullcontext(os.getcwd())
        if in_trial_dir
        else tempfile.TemporaryDirectory(prefix="agentsweep-trial-")
    ) as work:
        _run_objective(settings, params, context, Path(work), config)


def _run_objective(
    settings: SweepSettings, params: dict[str, Any], context: Any, work: Path, config: dict[str, Any]
) -> None:
    """Run the objective in `work` (resuming from Tune's checkpoint if any); its samples go to the trial folder.
    The trial's seed comes from the sweep seed and its suggestion index in `config` (`sweep.tracking.seed_of_trial`)."""
    from ray import tune

    from sweep.objectives import TrialContext, import_object
    from sweep.tracking import seed_of_trial

    trial_id = context.get_trial_id()
    bp = param_to_str(params.get(BRANCH_POINT))
    ctx_kwargs = dict(
        trial_id=trial_id,
        seed=seed_of_trial(settings.seed, config, trial_id),
        trial_dir=str(work),
        samples_dir=str(work / "samples"),
        branch_point=settings.branch_points.get(bp) or None,
        branch_point_flops=float(params.get(BRANCH_POINT) or 0.0) if BRANCH_POINT in params else 0.0,
        options=settings.options,
        resources=_assigned_resources(),
    )
    objective = import_object(settings.objective)
    secrets = secret_values()

    def report(metrics: dict[str, float], checkpoint: str | None = None) -> None:
        ckpt = tune.Checkpoint.from_directory(checkpoint) if checkpoint else None
        tune.report(redact(dict(metrics), secrets=secrets), checkpoint=ckpt)

    checkpoint = tune.get_checkpoint()
    try:
        with _scrubbed_output(secrets):
            if checkpoint is None:
                objective(params, TrialContext(**ctx_kwargs), report)
            else:
                with checkpoint.as_directory() as resume_from:
                    objective(params, TrialContext(resume_from=resume_from, **ctx_kwargs), report)
    except Exception as exc:  # noqa: BLE001 (re-raised with the secrets scrubbed, the chain cut)
        text = "".join(traceback.format_exception(exc))
        raise TrialError(redact(text, secrets=secrets)) from None
    finally:  # a failed attempt's samples are kept too, scrubbed, where the MLflow callback picks them up
        _copy_scrubbed(work / "samples", settings.tune_path / context.get_trial_name() / "samples", secrets)


def _copy_scrubbed(src: Path, dst: Path, secrets: list[str]) -> None:
    """Scrub the samples where the objective wrote them (Ray keeps trial working dirs), then copy them."""
    if not src.is_dir():
        return
    for f in sorted(p for p in src.rglob("*") if p.is_file()):
        data = f.read_bytes()
        for s in secrets:
            data = data.replace(s.encode(), REDACTED.encode())
        f.write_bytes(data)
        out = dst / f.relative_to(src)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)


class _ScrubbingStream(io.TextIOBase):
    """A text stream that writes to `inner` with the secrets replaced."""

    def __init__(self, inner: Any, secrets: list[str]):
        self.inner, self.secrets = inner, secrets

    def write(self, text: str) -> int:
        self.inner.write(redact(text, secrets=self.secrets))
        return len(text)

    def flush(self) -> None:
        self.inner.flush()


@contextlib.contextmanager
def _scrubbed_output(secrets: list[str]) -> Iterator[None]:
    """While the objective runs, Python-level prints and log records of this worker are scrubbed."""
    if not secrets:
        yield
        return
    import sys

    handlers = [h for h in logging.getLogger().handlers]
    scrub = RedactingFilter(secrets)
    for h in handlers:
        h.addFilter(scrub)
    try:
        with (
            contextlib.redirect_stdout(_ScrubbingStream(sys.stdout, secrets)),
            contextlib.redirect_stderr(_ScrubbingStream(sys.stderr, secrets)),
        ):
            yield
    finally:
        for h in handlers:
            h.removeFilter(scrub)


def _assigned_resources() -> dict[str, float]:
    import ray

    try:
        return {k: float(v) for k, v in ray.get_runtime_context().get_assigned_resources().items()}
    except Exception:  # noqa: BLE001 (outside a Ray worker: nothing assigned)
        return {}
