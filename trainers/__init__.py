"""trainers: teacher traces, SFT, multi-turn GRPO, FLOPs accounting, evaluation, generation backends.

Entry points are plain functions over typed config dataclasses and a reporter callback; no Ray or MLflow.
torch / transformers / trl are imported lazily where a light import path matters (the CLI).
"""

__all__: list[str] = []
