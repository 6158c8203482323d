"""A trial that leaks its worker's secret everywhere it can: samples, prints, logs, reports, its exception."""

from __future__ import annotations

import logging
import os
from pathlib import Path


def leaky(params, ctx, report) -> None:
    secret = os.environ["OPENAI_API_KEY"]
    Path(ctx.samples_dir).mkdir(parents=True, exist_ok=True)
    (Path(ctx.samples_dir) / "trajectories.jsonl").write_text(f'{{"completion": "my key is {secret}"}}\n')
    print(f"stdout: the key is {secret}")
    logging.getLogger("leaky").warning("log: the key is %s", secret)
    report({"step": 1, "flops": 1.0, "heldout_goal_success": 0.5, "note": f"key {secret}"})
    raise RuntimeError(f"the endpoint refused key {secret}")
