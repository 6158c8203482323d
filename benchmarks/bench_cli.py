"""Wall time of `agentsweep --help` (and each subcommand's --help) beside baselines, in one script.

    .venv/bin/python benchmarks/bench_cli.py [--repeats 7]

Baselines measured side by side: a bare interpreter (`python -c pass`) and what an eager CLI would pay
(importing torch, transformers, ray.tune and mlflow at start-up). Prints medians and ratios.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXE = Path(sys.executable).with_name("agentsweep")


def _median_wall_s(cmd: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from sweep.cli import LAZY_COMMANDS

    rows = [
        ("python -c pass (floor)", [sys.executable, "-c", "pass"]),
        ("agentsweep --help", [str(EXE), "--help"]),
    ]
    rows += [(f"agentsweep {name} --help", [str(EXE), name, "--help"]) for name in sorted(LAZY_COMMANDS)]
    eager = "import torch, transformers, ray.tune, mlflow"
    rows.append(("eager heavy imports (baseline)", [sys.executable, "-c", eager]))
    results = {label: _median_wall_s(cmd, args.repeats) for label, cmd in rows}
    base = results["eager heavy imports (baseline)"]
    print(f"{'command':40s} {'median wall s':>14s} {'vs eager':>10s}")
    for label, wall_s in results.items():
        print(f"{label:40s} {wall_s:14.3f} {wall_s / base:10.3f}")


if __name__ == "__main__":
    main()
