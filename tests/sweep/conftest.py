"""One local Ray per test module (2 CPUs, one logical GPU, a custom `browser` resource), shut down after."""

from __future__ import annotations

import shutil
import tempfile

import pytest


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    temp_dir = tempfile.mkdtemp(prefix="as-ray-")
    ray.init(
        num_cpus=2, num_gpus=1, resources={"browser": 2}, include_dashboard=False, log_to_driver=False,
        _temp_dir=temp_dir,
    )  # fmt: skip
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
