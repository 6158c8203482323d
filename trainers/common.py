"""What SFT and RL share: chat prompt + completion tokenisation with a completion mask, batching, token
log-probabilities, the optimiser, and resumable checkpoints (model, optimiser, RNG, step, FLOPs counter).
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "Encoded",
    "encode_prompt",
    "encode_example",
    "collate",
    "token_logprobs",
    "make_optimizer",
    "save_checkpoint",
    "load_checkpoint",
    "rng_state",
    "set_rng_state",
    "seed_everything",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Encoded:
    """One tokenised (prompt, completion) pair."""

    input_ids: list[int]
    """Prompt ids followed by completion ids."""
    completion_mask: list[int]
    """1 on completion tokens (the loss's tokens), 0 on prompt tokens."""

    @property
    def num_completion_tokens(self) -> int:
        return sum(self.completion_mask)


def encode_prompt(tokenizer, messages: Sequence[dict[str, str]]) -> list[int]:
    """Prompt token ids: the student's chat template with the generation prompt (assistant header) appended."""
    text = tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def encode_example(
    tokenizer,
    messages: Sequence[dict[str, str]],
    completion: str | Sequence[int],
    *,
    max_seq_len: int,
    add_eos: bool = True,
) -> Encoded:
    """Tokenise one step: chat prompt, then the completion (text, or the ids the sampler produced) + eos.

    The prompt is cut from the left when the pair exceeds `max_seq_len` (the goal and the latest observation
    sit at its end in our prompts only if the env puts them there; envs keep prompts short instead). The
    completion is cut from the right only when it alone exceeds `max_seq_len - 1`.

    Returns:
        Encoded ids and the completion mask (the eos closing the completion is trained on).
    """
    prompt_ids = encode_prompt(tokenizer, messages)
    if isinstance(completion, str):
        comp_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
    else:
        comp_ids = list(completion)
    eos = tokenizer.eos_token_id
    if add_eos and (not comp_ids or comp_ids[-1] != eos):
        comp_ids = [*comp_ids, eos]
    comp_ids = comp_ids[: max_seq_len - 1]
    keep = max_seq_len - len(comp_ids)
    prompt_ids = prompt_ids[-keep:]
    return Encoded(prompt_ids + comp_ids, [0] * len(prompt_ids) + [1] * len(comp_ids))


def collate(examples: Sequence[Encoded], pad_id: int, *, device: str = "cpu"):
    """Right-padded tensors for training.

    Returns:
        (input_ids, attention_mask, completion_mask), each (B, T_max) torch tensors.
    """
    import torch

    t_max = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), t_max), pad_id, dtype=torch.long)
    attn = torch.zeros((len(examples), t_max), dtype=torch.long)
    comp = torch.zeros((len(examples), t_max), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e.input_ids)
        ids[i, :n] = torch.tensor(e.input_ids)
        attn[i, :n] = 1
        comp[i, :n] = torch.tensor(e.completion_mask)
    return ids.to(device), attn.to(device), comp.to(device)


def token_logprobs(model, input_ids, attention_mask, *, temperature: float = 1.0):
    """Log-probability of each token given the tokens before it, logits divided by `temperature`.

    Args:
        input_ids: (B, T) token ids.
        attention_mask: (B, T).
        temperature: > 0 (0 is treated as 1: greedy decoding has no sampling distribution to match).

    Returns:
        (B, T) log-probabilities; column 0 (no context) is 0.
    """
    import torch

    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1]  # (B, T-1, V)
    if temperature and temperature != 1.0:
        logits = logits / temperature
    lp = torch.log_softmax(logits.float(), dim=-1).gather(-1, input_ids[:, 1:, None]).squeeze(-1)  # (B, T-1)
    return torch.cat([torch.zeros_like(lp[:, :1]), lp], dim=1)


def masked_nll(model, input_ids, attention_mask, completion_mask, *, num_tokens: float):
    """Token cross-entropy over completion tokens only, summed and divided by `num_tokens` (the batch's count)."""
    lp = token_logprobs(model, input_ids, attention_mask)
    mask = completion_mask.to(lp.dtype)
    return -(lp * mask).sum() / max(float(num_tokens), 1.0)


def trainable_parameters(model) -> list:
    return [p for p in model.parameters() if p.requires_grad]


def make_optimizer(model, *, learning_rate: float, weight_decay: float = 0.0):
    """AdamW over the trainable parameters (LoRA adapters only when the model is a PEFT model)."""
    import torch

    return torch.optim.AdamW(trainable_parameters(model), lr=learning_rate, weight_decay=weight_decay)


def clip_and_step(model, optimizer, *, max_grad_norm: float, scheduler=None) -> float:
    """Clip gradients, step the optimiser (and scheduler), zero the gradients; returns the pre-clip norm."""
    import torch

    norm = torch.nn.utils.clip_grad_norm_(trainable_parameters(model), max_grad_norm)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return float(norm)


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's legacy and torch's global generators (HF generate samples from torch's)."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (third-party code may draw from it; ours takes Generators)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """The global RNG states (python, torch CPU and CUDA) as a picklable dict."""
    import torch

    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import torch

    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    path: str | Path, *, model, tokenizer, optimizer=None, scheduler=None, state: dict[str, Any]
) -> Path:
    """Write a complete resumable state atomically (a temp dir renamed into place).

    Layout: the HF model + tokenizer (loadable with `load_student(path)`), `optimizer.pt` (optimiser,
    scheduler and RNG states), `state.json` (step, FLOPs counters, anything JSON the loop needs).
    """
    import torch

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    to_save = model.merge_and_unload() if _is_peft(model) and state.get("merge_lora") else model
    to_save.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    torch.save(
        {
            "optimizer": optimizer.state_dict() if optimizer is not None else None,
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "rng": rng_state(),
        },
        tmp / "optimizer.pt",
    )
    (tmp / "state.json").write_text(json.dumps(state, indent=1, default=_json_default))
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)
    return path


def load_checkpoint(
    path: str | Path, *, optimizer=None, scheduler=None, restore_rng: bool = True
) -> dict[str, Any]:
    """Restore optimiser/scheduler/RNG states from a checkpoint written by `save_checkpoint`; returns state.json.

    The model weights are loaded by `load_student(path)` beforehand (the checkpoint is a model directory).
    """
    import torch

    path = Path(path)
    if not (path / "state.json").is_file():
        raise ValueError(
            f"{path} is not a checkpoint directory (no state.json): pass one that train_* reported"
        )
    blob = torch.load(path / "optimizer.pt", weights_only=False)
    if optimizer is not None and blob["optimizer"] is not None:
        optimizer.load_state_dict(blob["optimizer"])
    if scheduler is not None and blob["scheduler"] is not None:
        scheduler.load_state_dict(blob["scheduler"])
    if restore_rng:
        set_rng_state(blob["rng"])
    return json.loads((path / "state.json").read_text())


def _is_peft(model) -> bool:
    return hasattr(model, "merge_and_unload") and hasattr(model, "peft_config")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    return str(obj)
