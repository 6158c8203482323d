"""The sweep driver: a search space and an objective -> a Ray Tune experiment logged to MLflow, resumable.

`launch` makes the sweep directory (`sweep.settings` describes its layout), builds the SFT branch points, opens
the MLflow parent run and fits (`sweep.fit`); `resume` continues a stopped sweep. One driver at a time: both
hold the directory's lock. MLflow holds one parent run per sweep and one nested child run per trial
(`sweep.tracking`, `sweep.trial_logger`), made to agree with Tune after every fit (`sweep.reconcile`).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sweep.settings import SETTINGS_FILE, SweepResult, SweepSettings, load_settings, sweep_lock
from sweep.space import SearchSpace, load_space

__all__ = ["SweepResult", "SweepSettings", "launch", "load_settings", "resume"]

logger = logging.getLogger(__name__)


def launch(
    space: SearchSpace | str | Path,
    *,
    out_dir: str | Path,
    options: Mapping[str, Any] | None = None,
    branch_builder: str | None = None,
    sweep_id: str | None = None,
    tracking_uri: str | None = None,
    progress: Any = None,
    ray_init: Mapping[str, Any] | None = None,
    **settings: Any,
) -> SweepResult:
    """Start a sweep and run it to the end (or until the process is stopped; then `resume`).

    Args:
        space: a `SearchSpace`, a packaged space name (`paper`, `demo`) or a YAML path.
        out_dir: where the sweep directory (and, by default, the sqlite MLflow store) go.
        options: fixed options for the objective (`ctx.options`); secrets in them are refused.
        branch_builder: import path of `builder(options, cache_dir) -> list[(flops, path)]` that builds the SFT
            branch points (see `sweep.branch_points`); None = no SFT stage (branch points are plain values).
        sweep_id: default `<space>-<UTC time>-<random>`.
        tracking_uri: MLflow URI; default sqlite `<out_dir>/mlruns.db`.
        progress: optional `fn(event, trial_id, status)` called as trials end.
        ray_init: extra `ensure_ray` arguments for a local Ray (num_cpus, num_gpus, resources, dashboard).
        **settings: the other `SweepSettings` fields (objective, num_trials, budget_flops, search, seed, ...).

    Raises:
        TrackingUnreachable: the tracking server does not answer (checked first, within about 10 s).
    """
    from sweep.secrets import redact_uri
    from sweep.tracking import default_tracking_uri, ensure_reachable, open_parent_run

    out_dir = Path(out_dir).resolve()
    tracking_uri = tracking_uri or default_tracking_uri(out_dir)
    ensure_reachable(tracking_uri)  # first: before the seconds of importing Ray
    from sweep import branch_points as bp_mod
    from sweep.fit import fit

    space = space if isinstance(space, SearchSpace) else load_space(space)
    options = _refuse_secrets(options or {})
    sweep_id = (
        sweep_id or f"{space.name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:6]}"
    )
    sweep_dir = out_dir / sweep_id
    if (sweep_dir / SETTINGS_FILE).exists():
        raise FileExistsError(
            f"{sweep_dir} already holds a sweep: `agentsweep resume {sweep_dir}` continues it"
        )
    sweep_dir.mkdir(parents=True, exist_ok=True)
    with sweep_lock(sweep_dir):
        branch_points: dict[str, str] = {}
        base_flops = 0.0
        if branch_builder is not None:
            built = bp_mod.ensure_branch_points(branch_builder, options, cache_root=out_dir / "branch_points")
            space, branch_points = bp_mod.attach(space, built)
            base_flops = max((b.flops for b in built), default=0.0)
        s = SweepSettings(
            sweep_id=sweep_id,
            sweep_dir=str(sweep_dir),
            space=space.to_dict(),
            options=options,
            tracking_uri=tracking_uri,
            branch_points=branch_points,
            base_flops=base_flops,
            **settings,
        )
        space.require_concrete()
        s = open_parent_run(s, out_dir)
        s.save()
        logger.info("sweep %s in %s (MLflow %s)", s.sweep_id, s.sweep_dir, redact_uri(s.tracking_uri))
        return fit(s, restore=False, progress=progress, ray_init=ray_init)


def _refuse_secrets(options: Mapping[str, Any]) -> dict[str, Any]:
    """Secrets travel as environment variables (SNOW_INSTANCE_PWD, OPENAI_API_KEY), never in saved options:
    a secret-named key or a URI with a password anywhere in them is refused; a value of one of this process's
    secret variables is replaced by `<redacted>` (trials read secrets from their own environment)."""
    from sweep.secrets import find_secret, redact, secret_values

    where = find_secret(options, "options")
    if where is not None:
        raise ValueError(
            f"{where} looks like a secret: options are saved in sweep.json; set it as an environment "
            "variable on the Ray nodes instead (agentsweep scrubs secret-named variables' values from its output)"
        )
    clean = redact(dict(options), secrets=secret_values())
    if clean != dict(options):
        logger.warning("options held the value of a secret environment variable: saved as <redacted>")
    return clean


def resume(
    sweep: str | Path, *, progress: Any = None, ray_init: Mapping[str, Any] | None = None
) -> SweepResult:
    """Continue a sweep after its driver stopped (Ctrl-C, SIGKILL, a lost node): same trials, same searcher.

    Raises:
        SweepLocked: another driver is running this sweep.
        TrackingUnreachable: the tracking server does not answer.
    """
    from sweep.tracking import ensure_reachable

    s = load_settings(sweep)
    ensure_reachable(s.tracking_uri)
    from sweep.fit import fit

    with sweep_lock(s.sweep_dir):
        if not (s.tune_path / "tuner.pkl").exists():
            logger.warning(
                "%s has no Tune experiment yet (killed before the first trial): starting it", s.sweep_dir
            )
            return fit(s, restore=False, progress=progress, ray_init=ray_init)
        return fit(s, restore=True, progress=progress, ray_init=ray_init)
