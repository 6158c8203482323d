"""FLOPs formula: presets against hand-computed values, any HF config, the counter, the CLI."""

from __future__ import annotations

import json

import pytest

from trainers.flops import PRESETS, FlopsCounter, ModelShape, flops_per_token, model_shape


# Hand-computed with the study's formula (docs/architecture.md), e.g. SmolLM2-135M at 2048 tokens:
#   attention 12*30*576^2*(1 + 3/9 + 2048/576) = 583,925,760; mlp 18*30*576*1536 = 477,757,440;
#   embedding 6*49152*576 = 169,869,312; sum 1,231,552,512; trained x (1 + 3).
@pytest.mark.parametrize(
    ("model", "seq_len", "trained", "expected"),
    [
        ("smollm2-135m", 2048, False, 1_231_552_512),
        ("smollm2-135m", 2048, True, 4 * 1_231_552_512),
        # 12*32*4096^2*3.25 + 18*32*4096*14336 + 6*128256*4096
        ("llama-3.1-8b", 8192, False, 20_937_965_568 + 33_822_867_456 + 3_152_019_456),
        # (12*80*8192^2*3.125 + 18*80*8192*28672 + 6*128256*8192) * 4
        ("llama-3.3-70b", 16384, True, 4 * (201_326_592_000 + 338_228_674_560 + 6_304_038_912)),
        (
            "meta-llama/Llama-3.3-70B-Instruct",
            16384,
            True,
            4 * (201_326_592_000 + 338_228_674_560 + 6_304_038_912),
        ),
    ],
)
def test_presets_match_hand_computed(model, seq_len, trained, expected):
    assert flops_per_token(model, seq_len, trained) == pytest.approx(expected, rel=1e-12)


def test_qwen_presets_and_seq_len_term():
    q7 = PRESETS["qwen-2.5-7b"]
    assert (q7.num_layers, q7.hidden_size, q7.num_kv_heads, q7.vocab_size) == (28, 3584, 4, 152064)
    # the seq_len term adds 12*L*h per extra token of context
    delta = flops_per_token("qwen-2.5-72b", 4097, False) - flops_per_token("qwen-2.5-72b", 4096, False)
    assert delta == pytest.approx(12 * 80 * 8192)


def test_any_hf_config_and_directory(tmp_path):
    from transformers import LlamaConfig

    cfg = LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=100,
    )
    expected = 12 * 2 * 64**2 * (1 + 0.5 + 10 / 64) + 18 * 2 * 64 * 128 + 6 * 100 * 64
    assert flops_per_token(cfg, 10, False) == pytest.approx(expected)
    (tmp_path / "config.json").write_text(json.dumps(cfg.to_dict()))
    assert flops_per_token(str(tmp_path), 10, True) == pytest.approx(4 * expected)


def test_bad_inputs_name_the_fix():
    with pytest.raises(ValueError, match="preset"):
        model_shape("no-such-model")
    with pytest.raises(ValueError, match="seq_len"):
        flops_per_token("smollm2-135m", 0, False)
    with pytest.raises(ValueError, match="num_kv_heads"):
        ModelShape(2, 8, 8, 2, 4, 10)


def test_counter_accumulates_and_round_trips():
    c = FlopsCounter("smollm2-135m")
    c.add(10, 2048, trained=False)
    c.add_sequences([2048, 2048], trained=True, counted=[1, 2])
    assert c.tokens == 13
    assert c.flops == pytest.approx(10 * 1_231_552_512 + 3 * 4 * 1_231_552_512)
    d = FlopsCounter("smollm2-135m")
    d.load_state_dict(c.state_dict())
    assert (d.flops, d.tokens) == (c.flops, c.tokens)


def test_cli_prints_total():
    from click.testing import CliRunner

    from trainers.cli import flops

    res = CliRunner().invoke(
        flops, ["--model", "smollm2-135m", "--seq-len", "2048", "--tokens", "1000", "--trained"]
    )
    assert res.exit_code == 0, res.output
    assert f"{4 * 1_231_552_512 * 1000:.4e}" in res.output
    bad = CliRunner().invoke(flops, ["--model", "nope", "--seq-len", "2048", "--tokens", "1"])
    assert bad.exit_code != 0 and "preset" in bad.output
