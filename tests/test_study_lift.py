"""benchmarks/study_lift.py, the script behind issue 16's RL-lift numbers, on planted per-goal outcomes: the lift is
the LAST evaluation minus step 0 (never the best evaluation), paired by goal, its interval excludes 0 for a planted
lift and covers 0 for none; several --evals tables combine, a run given twice is refused, and the simultaneous
interval over the groups is wider than each 95% one."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "study_lift.py"


def _write(path: Path, runs: dict[str, dict[int, np.ndarray]]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run", "step", "split", "task", "seed", "success"])
        for run, steps in runs.items():
            for step, ok in steps.items():
                for i, v in enumerate(ok):
                    w.writerow([run, step, "heldout_goals", f"miniwob.t{i % 4}", i, int(v)])


def _planted(seed: int, n: int = 300) -> tuple[dict, dict]:
    """Group `up`: 0.30 at step 0, 0.75 at step 4 (the best evaluation), 0.45 at the last (step 8): a lift of
    about +0.15. Group `flat`: the last evaluation re-draws the same 0.4 rate."""
    rng = np.random.default_rng(seed)
    up, flat = {}, {}
    for r in range(3):
        base = rng.random(n) < 0.30
        up[f"up_{r:04x}"] = {0: base, 4: base | (rng.random(n) < 0.64), 8: base | (rng.random(n) < 0.215)}
        flat[f"flat_{r:04x}"] = {0: rng.random(n) < 0.4, 8: rng.random(n) < 0.4}
    return up, flat


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120, cwd=ROOT
    )


def test_lift_is_last_minus_first_with_intervals(tmp_path):
    up, flat = _planted(0)
    _write(tmp_path / "a.csv", up)
    _write(tmp_path / "b.csv", flat)
    out_csv = tmp_path / "lift.csv"
    p = _run(
        "--evals", str(tmp_path / "a.csv"), "--evals", str(tmp_path / "b.csv"),
        "--group", "^(.+)_[0-9a-f]+$", "--reps", "2000", "--csv", str(out_csv),
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert "2 groups: [simultaneous] intervals at 0.9750" in p.stdout
    rows = {
        r["arm"]: {k: float(v) for k, v in r.items() if k != "arm"} for r in csv.DictReader(out_csv.open())
    }
    # by hand: the paired mean of last minus first over the 3 runs and 300 goals
    want = np.mean([(s[8].astype(float) - s[0]).mean() for s in up.values()])
    assert abs(rows["up"]["lift"] - want) < 1e-4
    assert 0.10 < rows["up"]["lift"] < 0.20  # the last evaluation, not the best one (step 4: about +0.45)
    assert rows["up"]["lo"] > 0 and rows["up"]["simultaneous_lo"] > 0
    assert rows["flat"]["lo"] < 0 < rows["flat"]["hi"]
    for r in rows.values():
        assert r["simultaneous_lo"] < r["lo"] < r["lift"] < r["hi"] < r["simultaneous_hi"]
        assert r["runs"] == 3 and r["goals"] == 300


def test_a_run_in_two_tables_is_refused(tmp_path):
    up, _ = _planted(1, n=20)
    _write(tmp_path / "a.csv", up)
    p = _run("--evals", str(tmp_path / "a.csv"), "--evals", str(tmp_path / "a.csv"), "--reps", "10")
    assert p.returncode != 0
    assert "is in two --evals tables" in p.stderr
