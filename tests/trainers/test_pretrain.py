"""The tiny student's pretraining stage: its tokenizer, its corpus, a resumable loop that records its FLOPs."""

from __future__ import annotations

import json

import pytest

from trainers.config import PretrainConfig
from trainers.pretrain import (
    NUM_IDS,
    SyntheticCorpus,
    build_lookup_tokenizer,
    generic_words,
    pretrain_student,
    single_token_words,
)


@pytest.fixture(scope="module")
def tok():
    return build_lookup_tokenizer(600)


def test_ids_are_single_tokens_and_words_tokenise_the_same_everywhere(tok):
    assert all(len(tok(str(i), add_special_tokens=False)["input_ids"]) == 1 for i in range(NUM_IDS))
    word = tok("Proin", add_special_tokens=False)["input_ids"]
    for context in ('"Proin"', " Proin", "link Proin\n", '[14] span "Proin"'):
        ids = tok(context, add_special_tokens=False)["input_ids"]
        assert any(ids[i : i + len(word)] == word for i in range(len(ids))), context
    assert tok.decode(tok('fill("5", "x")', add_special_tokens=False)["input_ids"]) == 'fill("5", "x")'


def test_corpus_is_deterministic_and_the_curriculum_starts_easy(tok):
    words = generic_words()
    short = single_token_words(tok, words)
    assert short and all(len(tok(w, add_special_tokens=False)["input_ids"]) == 1 for w in short)
    a, b = SyntheticCorpus(words, 3, short), SyntheticCorpus(words, 3, short)
    assert [a.doc() for _ in range(20)] == [b.doc() for _ in range(20)]
    easy = SyntheticCorpus(words, 4, short)
    easy.level = 0.0
    for _ in range(50):
        segs = easy.table_doc()
        table = segs[0][0]
        records = [ln for ln in table.splitlines() if ln and not ln.startswith("Look for")]
        assert len(records) == 2  # two records, no distractor
        assert any(w in table for w in short)


def _cfg(tmp_path, **over) -> PretrainConfig:
    base = dict(
        output_dir=str(tmp_path / "pre"),
        hidden_size=32,
        num_layers=2,
        num_heads=2,
        vocab_size=600,
        steps=6,
        batch_size=4,
        seq_len=64,
        warmup_steps=2,
        curriculum_steps=4,
        probe_every_steps=2,
        resume_every_steps=3,
        probe_docs=8,
        cpu_threads=1,
        device="cpu",
    )
    return PretrainConfig(**{**base, **over})


def test_pretraining_resumes_to_the_same_weights_and_counts_its_flops(tmp_path):
    import torch

    from trainers.flops import flops_per_token
    from trainers.models import load_student

    full = pretrain_student(_cfg(tmp_path / "a"))
    meta = json.loads((full.path / "pretrain.json").read_text())
    model, tokenizer = load_student(str(full.path))
    assert meta["pretrain_flops"] == pytest.approx(
        full.tokens * flops_per_token(model.config, 64, trained=True)
    )
    assert 0 < full.tokens <= 6 * 4 * 64 and [r["step"] for r in meta["log"]] == [2, 4, 6]
    assert set(full.probes) == {"lookup_query_first", "lookup_table_first", "lookup_easy", "copy"}
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert text.startswith("<|im_start|>user")

    class Killed(Exception):
        pass

    def kill_at_4(rec):
        if rec["step"] == 4:
            raise Killed

    cfg = _cfg(tmp_path / "b")
    with pytest.raises(Killed):
        pretrain_student(cfg, kill_at_4)  # the resume state of step 3 is on disk
    resumed = pretrain_student(cfg)
    assert resumed.tokens == full.tokens and resumed.flops == pytest.approx(full.flops)
    again, _ = load_student(str(resumed.path))
    for (name, p), q in zip(model.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(p, q), name

    with pytest.raises(ValueError, match="another PretrainConfig"):
        pretrain_student(_cfg(tmp_path / "b", steps=8, learning_rate=1e-3))


def test_config_errors_name_the_fix():
    with pytest.raises(ValueError, match="multiple of num_heads"):
        PretrainConfig(hidden_size=30, num_heads=4)
    with pytest.raises(ValueError, match="table_share"):
        PretrainConfig(table_share=1.5)
    with pytest.raises(ValueError, match="schedule"):
        PretrainConfig(schedule="linear")
