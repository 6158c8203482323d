"""Trajectories as JSONL files: one episode a line (`Trajectory.to_json`), read back with `Trajectory.from_dict`."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from envs.protocol import Trajectory

__all__ = ["write_jsonl", "append_jsonl", "read_jsonl"]


def write_jsonl(trajectories: Iterable[Trajectory], path: str | Path) -> Path:
    """Write trajectories as JSONL (one episode a line), replacing the file; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for t in trajectories:
            f.write(t.to_json() + "\n")
    return path


def append_jsonl(trajectory: Trajectory, path: str | Path) -> None:
    """Append one trajectory to a JSONL file (the runner's episode log)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(trajectory.to_json() + "\n")


def read_jsonl(path: str | Path) -> list[Trajectory]:
    """Read trajectories written by `write_jsonl` or `append_jsonl`."""
    with Path(path).open(encoding="utf-8") as f:
        return [Trajectory.from_dict(json.loads(line)) for line in f if line.strip()]
