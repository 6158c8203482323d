"""trainers: teacher traces, SFT, multi-turn GRPO, FLOPs accounting, evaluation, generation backends.

Entry points are plain functions over typed config dataclasses and a reporter callback; no Ray or MLflow.
Names are imported lazily (PEP 562) so that `import trainers` and the CLI stay light; torch / transformers
load only when a trainer runs.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "RLConfig",
    "SFTConfig",
    "TeacherConfig",
    "RLResult",
    "BranchPoint",
    "TraceSet",
    "SFTExample",
    "train_rl",
    "train_sft",
    "collect_teacher_traces",
    "flops_per_token",
    "FlopsCounter",
    "PRESETS",
    "load_student",
    "build_tiny_llama",
    "HFPolicy",
    "OpenAIPolicy",
    "VLLMPolicy",
]

_WHERE = {
    "RLConfig": "config",
    "SFTConfig": "config",
    "TeacherConfig": "config",
    "RLResult": "rl",
    "train_rl": "rl",
    "BranchPoint": "sft",
    "train_sft": "sft",
    "TraceSet": "teacher",
    "SFTExample": "teacher",
    "collect_teacher_traces": "teacher",
    "flops_per_token": "flops",
    "FlopsCounter": "flops",
    "PRESETS": "flops",
    "load_student": "models",
    "build_tiny_llama": "models",
    "HFPolicy": "backends",
    "OpenAIPolicy": "backends",
    "VLLMPolicy": "backends",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"trainers.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'trainers' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
