"""Fixtures of the trainers' tests: the tiny Llama (cached per session) and an isolated model cache."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _model_cache(tmp_path_factory, monkeypatch):
    # named students are materialised once per test session, never in the user's ~/.cache
    monkeypatch.setenv("AGENTSWEEP_CACHE", str(tmp_path_factory.getbasetemp() / "agentsweep-cache"))


@pytest.fixture(scope="session")
def tiny():
    from trainers.models import build_tiny_llama

    model, tok = build_tiny_llama(seed=0)
    tok.padding_side = "left"
    return model, tok


@pytest.fixture(autouse=True, scope="session")
def _quiet_transformers_one_thread():
    # one intra-op thread: tiny models gain nothing from more, and CI's 2 cores are shared
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    torch.set_num_threads(1)
