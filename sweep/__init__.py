"""sweep: search spaces, the Ray Tune driver, MLflow logging, resume and the root CLI.

Composes `trainers` (and through them `envs`); owns Ray and MLflow. Heavy imports stay inside functions.
"""

__all__: list[str] = []
