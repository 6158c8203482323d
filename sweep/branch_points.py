"""SFT branch points: built once per content hash of (builder, teacher, student, data, SFT config), then shared.

A builder is a function `builder(options, cache_dir) -> list[BranchPoint-like]` (anything with `path`, `flops`,
`step`), e.g. teacher traces -> SFT with a checkpoint every k FLOPs. `ensure_branch_points` runs it at most once
per content hash (a file lock guards concurrent drivers) and records a manifest; every later sweep with the same
inputs reuses the checkpoints. `attach` turns them into the space's `sft_checkpoint` values.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sweep.space import BRANCH_POINT, SearchSpace, param_to_str

__all__ = [
    "BuiltBranchPoint",
    "attach",
    "content_hash",
    "ensure_branch_points",
    "given_branch_points",
    "sft_branch_points",
]

logger = logging.getLogger(__name__)
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class BuiltBranchPoint:
    """One SFT checkpoint usable as an RL starting point."""

    path: str
    """Checkpoint directory ('' = the base student, no SFT)."""
    flops: float
    """Compute spent up to this checkpoint: teacher generation + student SFT (FLOPs)."""
    step: int
    """SFT optimizer step of the checkpoint."""


def content_hash(builder: str, options: Mapping[str, Any]) -> str:
    """Hash of what determines the branch points: the builder and its inputs (`options['sft']` if present)."""
    inputs = options.get("sft", options)
    blob = json.dumps({"builder": builder, "inputs": inputs}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def ensure_branch_points(
    builder: str, options: Mapping[str, Any], *, cache_root: str | Path
) -> list[BuiltBranchPoint]:
    """The branch points for these inputs: read from the cache, or built now (once) and cached.

    Args:
        builder: import path `module:function` of the builder.
        options: the sweep's objective options (the builder reads its part).
        cache_root: directory of `<hash>/manifest.json` entries.
    """
    from sweep.objectives import import_object
    from trainers.common import atomic_write

    key = content_hash(builder, options)
    folder = Path(cache_root) / key
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second driver with the same inputs waits, then reuses
        manifest = folder / MANIFEST
        if manifest.exists():
            logger.info("SFT branch points %s: reusing %s", key, folder)
            return [BuiltBranchPoint(**b) for b in json.loads(manifest.read_text())["branch_points"]]
        logger.info("SFT branch points %s: building in %s", key, folder)
        built = [
            BuiltBranchPoint(path=str(b.path), flops=float(b.flops), step=int(b.step))
            for b in import_object(builder)(options, str(folder))
        ]
        blob = json.dumps({"builder": builder, "branch_points": [asdict(b) for b in built]}, indent=1)
        atomic_write(manifest, blob)  # a reader (or a kill) never sees half a manifest
    return built


def attach(space: SearchSpace, built: Sequence[BuiltBranchPoint]) -> tuple[SearchSpace, dict[str, str]]:
    """Fill `sft_checkpoint` with the built branch points; returns the space and value string -> path.

    `values: auto` becomes 0 (the base student) plus every built checkpoint's FLOPs. Explicit values must each be
    0 or within 5% of a built checkpoint's FLOPs (they are replaced by its exact FLOPs).
    """
    if BRANCH_POINT not in space.names:
        return space, {}
    points = {0.0: ""}
    for b in built:
        points[b.flops] = b.path
    param = space[BRANCH_POINT]
    if param.auto:
        values = sorted(points)
    else:
        values = []
        for v in param.values:
            match = min(points, key=lambda f, v=float(v): abs(f - v))
            if not math.isclose(match, float(v), rel_tol=0.05, abs_tol=1.0):
                raise ValueError(
                    f"{BRANCH_POINT}={v} matches no built branch point; built (FLOPs): {sorted(points)}. "
                    "Use `values: auto` or one of those"
                )
            values.append(match)
    values = [int(v) if v == 0 else v for v in values]
    return space.with_values(BRANCH_POINT, values), {param_to_str(v): points[float(v)] for v in values}


def sft_branch_points(options: Mapping[str, Any], cache_dir: str) -> list[Any]:
    """The trainers' pipeline as a builder: teacher traces -> SFT, a branch point every k FLOPs or steps.

    `options["sft"]` holds `teacher` (TeacherConfig fields) and `student` (SFTConfig fields except `traces`);
    both output directories go under `cache_dir`. Returns the trainers' `BranchPoint`s (path, flops, step), whose
    FLOPs include the teacher's generation.
    """
    from trainers.config import SFTConfig, TeacherConfig
    from trainers.sft import train_sft
    from trainers.teacher import collect_teacher_traces

    spec = options.get("sft") or {}
    unknown = sorted(set(spec) - {"teacher", "student"})
    if unknown:
        raise ValueError(f"options.sft: unknown key(s) {unknown}; give `teacher:` and `student:` mappings")
    teacher_fields = {
        k: tuple(v) if isinstance(v, list) else v for k, v in (spec.get("teacher") or {}).items()
    }
    teacher = TeacherConfig(**{**teacher_fields, "output_dir": str(Path(cache_dir) / "teacher")})
    traces = collect_teacher_traces(teacher)
    student = SFTConfig(
        **{
            **(spec.get("student") or {}),
            "traces": str(traces.path),
            "output_dir": str(Path(cache_dir) / "sft"),
        }
    )
    return list(train_sft(student))


def given_branch_points(options: Mapping[str, Any], cache_dir: str) -> list[BuiltBranchPoint]:
    """Branch points that exist already (SFT run elsewhere, by `agentsweep train sft` or another tool) as a builder.

    `options["branch_points"]` is a JSON file holding a list of `{path, flops, step}` (what `train_sft` writes as
    `branch_points.json`; a relative `path` there is relative to the file's folder) or that list itself (paths
    relative to the working directory). Paths are made absolute: trials run in other directories. Nothing is
    trained; `cache_dir` is unused. A missing checkpoint directory or a malformed entry raises a ValueError that
    names it.
    """
    spec = options.get("branch_points")
    if spec is None:
        raise ValueError(
            "options.branch_points is missing: give a branch_points.json path or a list of {path, flops, step}"
        )
    base = Path.cwd()
    if isinstance(spec, str | Path):
        base = Path(spec).resolve().parent
        try:
            spec = json.loads(Path(spec).read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"options.branch_points: cannot read {spec} as JSON ({exc})") from None
    if not isinstance(spec, list) or not spec:
        raise ValueError("options.branch_points must be a non-empty list of {path, flops, step}")
    out = []
    for i, entry in enumerate(spec):
        try:
            path = (base / str(entry["path"])).resolve()
            b = BuiltBranchPoint(path=str(path), flops=float(entry["flops"]), step=int(entry["step"]))
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"options.branch_points[{i}] = {entry!r} needs path, flops and step") from None
        if not Path(b.path).is_dir():
            raise ValueError(f"options.branch_points[{i}]: checkpoint directory {b.path} does not exist")
        if not b.flops > 0:
            raise ValueError(
                f"options.branch_points[{i}]: flops={b.flops} must be > 0 (0 is the base student)"
            )
        out.append(b)
    return out
