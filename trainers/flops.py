"""FLOPs accounting by the study's formula (NVIDIA's Llama benchmarking formula; docs/architecture.md states it).

Per token::

    attention = 12 * L * h**2 * (1 + kv_heads / heads + seq_len / h)
    mlp       = 18 * L * h * ffn
    embedding = 6 * vocab * h
    flops     = (attention + mlp + embedding) * (1 + backward_multiplier)

with backward_multiplier 3 for tokens trained on and 0 for tokens only generated or evaluated. The formula is
kept verbatim (constants included) so that our numbers are comparable with the study's branch points
(2.5e18, 7.6e18 SFT FLOPs).

Everything here is light (stdlib only): `agentsweep flops` imports this module without torch.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "ModelShape",
    "PRESETS",
    "BACKWARD_MULTIPLIER",
    "flops_per_token",
    "model_shape",
    "FlopsCounter",
    "gpu_metrics",
]

BACKWARD_MULTIPLIER = 3.0
"""FLOPs of a backward pass relative to a forward pass, for tokens trained on."""


@dataclass(frozen=True)
class ModelShape:
    """The numbers of a decoder-only transformer that the FLOPs formula needs."""

    num_layers: int
    """L: transformer blocks."""
    hidden_size: int
    """h: model width."""
    ffn_size: int
    """Intermediate (MLP) width."""
    num_heads: int
    """Attention (query) heads."""
    num_kv_heads: int
    """Key/value heads (GQA); equal to num_heads without GQA."""
    vocab_size: int
    """Vocabulary size."""

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"ModelShape.{name}={value!r} must be a positive integer")
        if self.num_kv_heads > self.num_heads:
            raise ValueError(f"num_kv_heads={self.num_kv_heads} exceeds num_heads={self.num_heads}")


# Shapes from each model's published config.json.
PRESETS: dict[str, ModelShape] = {
    "llama-3.1-8b": ModelShape(32, 4096, 14336, 32, 8, 128256),
    "llama-3.3-70b": ModelShape(80, 8192, 28672, 64, 8, 128256),
    "qwen-2.5-7b": ModelShape(28, 3584, 18944, 28, 4, 152064),
    "qwen-2.5-72b": ModelShape(80, 8192, 29568, 64, 8, 152064),
    "smollm2-135m": ModelShape(30, 576, 1536, 9, 3, 49152),
    "smollm2-360m": ModelShape(32, 960, 2560, 15, 5, 49152),
}
_ALIASES = {
    "meta-llama/llama-3.1-8b-instruct": "llama-3.1-8b",
    "meta-llama/llama-3.3-70b-instruct": "llama-3.3-70b",
    "qwen/qwen2.5-7b-instruct": "qwen-2.5-7b",
    "qwen/qwen2.5-72b-instruct": "qwen-2.5-72b",
    "huggingfacetb/smollm2-135m-instruct": "smollm2-135m",
    "huggingfacetb/smollm2-360m-instruct": "smollm2-360m",
}


def _shape_from_config(cfg: Any) -> ModelShape:
    """A ModelShape from an HF config object or a config.json dict."""
    get = cfg.get if isinstance(cfg, dict) else (lambda k, d=None: getattr(cfg, k, d))
    heads = get("num_attention_heads")
    kv = get("num_key_value_heads") or heads
    try:
        return ModelShape(
            num_layers=int(get("num_hidden_layers")),
            hidden_size=int(get("hidden_size")),
            ffn_size=int(get("intermediate_size")),
            num_heads=int(heads),
            num_kv_heads=int(kv),
            vocab_size=int(get("vocab_size")),
        )
    except TypeError as exc:
        raise ValueError(
            "config lacks a decoder field (num_hidden_layers, hidden_size, intermediate_size, "
            f"num_attention_heads, vocab_size): {exc}"
        ) from exc


def model_shape(model: str | ModelShape | Any) -> ModelShape:
    """Resolve a model to its shape.

    Args:
        model: a preset name (see `PRESETS`, case-insensitive, hub ids of the presets accepted), a directory or
            path of a `config.json`, an HF config object, an HF model (its `.config`), or a ModelShape.

    Returns:
        The ModelShape.
    """
    if isinstance(model, ModelShape):
        return model
    if isinstance(model, (str, Path)):
        key = str(model).lower()
        key = _ALIASES.get(key, key)
        if key in PRESETS:
            return PRESETS[key]
        path = Path(model)
        if path.is_dir():
            path = path / "config.json"
        if path.is_file():
            return _shape_from_config(json.loads(path.read_text()))
        raise ValueError(
            f"unknown model {model!r}: use a preset {sorted(PRESETS)}, a model directory or a config.json path"
        )
    if hasattr(model, "config") and not hasattr(model, "num_hidden_layers"):
        model = model.config
    return _shape_from_config(model)


def flops_per_token(model: str | ModelShape | Any, seq_len: int, trained: bool) -> float:
    """FLOPs for one token of a sequence of `seq_len` tokens.

    Args:
        model: anything `model_shape` accepts.
        seq_len: sequence (context) length in tokens, >= 1.
        trained: True for tokens trained on (forward + backward), False for generated/evaluated ones.

    Returns:
        (attention + mlp + embedding) * (1 + 3 if trained else 1).
    """
    if seq_len < 1:
        raise ValueError(f"seq_len={seq_len} must be >= 1")
    s = model_shape(model)
    L, h = s.num_layers, s.hidden_size  # noqa: N806 (the formula's names)
    attention = 12 * L * h * h * (1 + s.num_kv_heads / s.num_heads + seq_len / h)
    mlp = 18 * L * h * s.ffn_size
    embedding = 6 * s.vocab_size * h
    return float((attention + mlp + embedding) * (1 + (BACKWARD_MULTIPLIER if trained else 0.0)))


class FlopsCounter:
    """Cumulative FLOPs of one model, split into generated/evaluated and trained tokens. Thread-safe.

    Every generated, evaluated and trained token passes through `add`; `state_dict`/`load_state_dict` let a
    checkpoint carry the counter so a resumed run continues the same numbers.
    """

    def __init__(self, model: str | ModelShape | Any, *, flops: float = 0.0, tokens: int = 0) -> None:
        self.shape = model_shape(model)
        self.flops = float(flops)
        self.tokens = int(tokens)
        self._lock = threading.Lock()

    def add(self, num_tokens: int, seq_len: int, *, trained: bool) -> float:
        """Count `num_tokens` tokens of sequences `seq_len` long; returns the FLOPs added."""
        if num_tokens <= 0:
            return 0.0
        added = num_tokens * flops_per_token(self.shape, max(1, int(seq_len)), trained)
        with self._lock:
            self.flops += added
            self.tokens += int(num_tokens)
        return added

    def add_sequences(
        self, lengths: list[int] | tuple[int, ...], *, trained: bool, counted: list[int] | None = None
    ) -> float:
        """Count whole sequences: sequence i contributes `counted[i]` (default: all its) tokens at its length."""
        counted = list(lengths) if counted is None else counted
        return sum(self.add(c, n, trained=trained) for c, n in zip(counted, lengths, strict=True))

    def state_dict(self) -> dict[str, float]:
        return {"flops": self.flops, "tokens": self.tokens}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.flops = float(state["flops"])
        self.tokens = int(state["tokens"])


PEAK_FLOPS_PER_S = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12}
"""Dense bf16 peak FLOP/s by a fragment of the CUDA device name (for model FLOPs utilisation)."""


def gpu_metrics(flops: float, wall_s: float, *, gen_tokens: int = 0, gen_s: float = 0.0) -> dict[str, float]:
    """On a CUDA device: `mfu` (model FLOPs utilisation: flops / wall_s / the device's peak; NaN for an unknown
    device) and, when generation was timed, `gen_tokens_per_s`. Empty on CPU."""
    import torch

    if not torch.cuda.is_available() or wall_s <= 0:
        return {}
    name = torch.cuda.get_device_name()
    out = {"mfu": next((flops / wall_s / v for k, v in PEAK_FLOPS_PER_S.items() if k in name), float("nan"))}
    if gen_s > 0:
        out["gen_tokens_per_s"] = gen_tokens / gen_s
    return out
