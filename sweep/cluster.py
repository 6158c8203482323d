"""Ray start-up for a sweep: join a cluster by address, or start a local Ray, leaving Ray's security as it is.

Ray 2.60 turns token authentication on for the clusters it starts (a token in ~/.ray/auth_token) and so does
`ensure_ray`: library code never switches it off. To join an authenticated cluster, make its token available on
the driver's machine (`RAY_AUTH_TOKEN`, `RAY_AUTH_TOKEN_PATH`, or ~/.ray/auth_token). Only tests and CI opt out,
by setting RAY_AUTH_MODE=disabled themselves.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["ensure_ray"]


def ensure_ray(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    num_gpus: float | None = None,
    resources: Mapping[str, float] | None = None,
    temp_dir: str | Path | None = None,
    dashboard: bool = False,
) -> bool:
    """Connect to Ray (an address) or start a local one; returns True when this call started it.

    The dashboard is off unless asked for, and then binds to 127.0.0.1. Uses an already-initialised Ray as is.
    """
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address:
        ray.init(address=address, include_dashboard=None, log_to_driver=False)
        return True
    kwargs: dict[str, Any] = {"include_dashboard": dashboard, "log_to_driver": False}
    if dashboard:
        kwargs["dashboard_host"] = "127.0.0.1"
    if temp_dir is not None:
        temp_dir = Path(temp_dir).resolve()
        # Ray's unix sockets live under the temp dir; their paths must stay under ~107 bytes
        kwargs["_temp_dir"] = (
            str(temp_dir) if len(str(temp_dir)) < 60 else tempfile.mkdtemp(prefix="agentsweep-ray-")
        )
    ray.init(num_cpus=num_cpus, num_gpus=num_gpus, resources=dict(resources or {}) or None, **kwargs)
    return True
