"""The shipped pretrained student (`lookup-tiny`): loads by name, generates, and ships in a built wheel."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_lookup_tiny_loads_and_generates():
    import torch

    from trainers.models import STUDENTS, load_student, student_dir
    from trainers.pretrain import NUM_IDS

    assert "lookup-tiny" in STUDENTS
    assert student_dir("lookup-tiny").is_relative_to(ROOT / "trainers")  # read from the package, not a cache
    model, tok = load_student("lookup-tiny")
    assert 0.9e6 < sum(p.numel() for p in model.parameters()) < 1.1e6
    assert all(len(tok(str(i))["input_ids"]) == 1 for i in (0, 17, NUM_IDS - 1))  # bids are single tokens
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "Goal: click the link 'ok'. [12] link 'ok'"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    assert out.shape[1] > prompt["input_ids"].shape[1]
    assert isinstance(tok.decode(out[0, prompt["input_ids"].shape[1] :]), str)


@pytest.mark.timeout(180)
def test_lookup_tiny_found_from_an_installed_wheel(tmp_path):
    """A non-editable install (the wheel unpacked, as pip lays it out) finds the student inside itself."""
    src = tmp_path / "src"  # a copy, so the build's build/ and egg-info stay out of the checkout
    for name in ("analysis", "envs", "sweep", "trainers"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    wheel_dir = tmp_path / "wheel"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            wheel_dir,
            src,
        ],
        check=True,
        cwd=tmp_path,
        capture_output=True,
    )
    (wheel,) = wheel_dir.glob("agentsweep-*.whl")
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = (
        "import trainers.models as m; d = m.student_dir('lookup-tiny'); print(d); "
        "model, tok = m.load_student('lookup-tiny'); print(type(model).__name__)"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}  # only the unpacked wheel, not the checkout
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True, check=True
    )
    found, cls = proc.stdout.split()
    assert Path(found).is_relative_to(site) and cls == "LlamaForCausalLM"
