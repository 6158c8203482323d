"""analysis: runs table -> statistics -> report.

numpy / pandas / scipy / matplotlib only: no torch, ray or sibling packages; mlflow is imported lazily and
only to read `mlflow:EXPERIMENT` inputs.
"""

__all__: list[str] = []
