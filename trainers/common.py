"""What SFT and RL share: chat prompt + completion tokenisation with a completion mask, batching, token
log-probabilities, the optimiser and its learning-rate schedule, seeding, atomic file writes, and resumable
checkpoints (model, optimiser, RNG, step, FLOPs counter).

Checkpoints load with `torch.load(weights_only=True)`: they hold tensors and primitives only, so a checkpoint
carrying any other pickled object is refused instead of executed.
"""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
import random
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

__all__ = [
    "Encoded",
    "encode_prompt",
    "encode_example",
    "collate",
    "token_logprobs",
    "make_optimizer",
    "masked_nll",
    "clip_and_step",
    "set_learning_rate",
    "warmup_lr",
    "atomic_write",
    "save_checkpoint",
    "load_checkpoint",
    "recover_checkpoint",
    "rng_state",
    "set_rng_state",
    "seed_everything",
    "check_choice",
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


def clip_and_step(model, optimizer, *, max_grad_norm: float) -> float:
    """Clip gradients, step the optimiser, zero the gradients; returns the pre-clip norm."""
    import torch

    norm = torch.nn.utils.clip_grad_norm_(trainable_parameters(model), max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(norm)


def set_learning_rate(optimizer, lr: float) -> None:
    """Set every parameter group's learning rate (the schedule is `warmup_lr`, applied before each update)."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def warmup_lr(
    learning_rate: float, update: int, warmup_updates: int, *, total_updates: int | None = None
) -> float:
    """Learning rate of optimiser update `update` (0-based): a linear ramp from lr / W up to lr over the first
    W = `warmup_updates` updates (W = 0: none, the study's RL setting), then constant, or, with `total_updates`
    (SFT), a cosine decay from lr towards 0 at update `total_updates`."""
    if update < warmup_updates:
        return learning_rate * ((update + 1) / warmup_updates)
    if total_updates is None:
        return learning_rate
    done = (update - warmup_updates) / max(1, total_updates - warmup_updates)
    return learning_rate * (0.5 * (1.0 + math.cos(math.pi * min(1.0, done))))


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's legacy and torch's global generators (HF generate samples from torch's)."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (third-party code may draw from it; ours takes Generators)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """The global RNG states (python, torch CPU and CUDA): tuples, ints and tensors, loadable with weights_only."""
    import torch

    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import torch

    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_write(path: str | Path, data: str | bytes) -> Path:
    """Write a file so that a reader (or a kill at any point) sees the old content or the new, never a torn mix:
    a temp file in the same directory, written and fsynced, renamed over `path`, then the directory fsynced."""
    path = Path(path)
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def save_checkpoint(path: str | Path, *, model, tokenizer, optimizer=None, state: dict[str, Any]) -> Path:
    """Write a complete resumable state atomically: a reader (or a kill at any point) finds the old checkpoint
    or the new one at `path` (after `recover_checkpoint`), never a partial one.

    Layout: the HF model + tokenizer (loadable with `load_student(path)`; a PEFT model saves its adapters),
    `optimizer.pt` (optimiser and RNG states), `state.json` (step, FLOPs counters, anything JSON the loop needs).
    The new directory is written and fsynced beside `path`, the old one renamed aside, the new one renamed in,
    then the old one deleted.
    """
    import torch

    path = Path(path)
    recover_checkpoint(path)
    tmp, old = _swap_names(path)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    blob = {"optimizer": optimizer.state_dict() if optimizer is not None else None, "rng": rng_state()}
    torch.save(blob, tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps(state, indent=1, default=_json_default))
    for f in tmp.rglob("*"):
        if f.is_file():
            with f.open("rb") as fh:
                os.fsync(fh.fileno())
    _fsync_dir(tmp)
    if path.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.rename(path, old)
    os.rename(tmp, path)
    _fsync_dir(path.parent)
    shutil.rmtree(old, ignore_errors=True)
    return path


def recover_checkpoint(path: str | Path) -> bool:
    """Finish or undo a `save_checkpoint` that was killed midway; True when a complete checkpoint is at `path`.

    A kill after the old directory was renamed aside and before the new one was renamed in leaves only the old
    one: it is renamed back. A leftover temp directory (a kill while writing) is deleted.
    """
    path = Path(path)
    tmp, old = _swap_names(path)
    if not path.exists() and (old / "state.json").is_file():
        os.rename(old, path)
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
    return (path / "state.json").is_file()


def load_checkpoint(path: str | Path, *, optimizer=None, restore_rng: bool = True) -> dict[str, Any]:
    """Restore optimiser/RNG states from a checkpoint written by `save_checkpoint`; returns state.json.

    The model weights are loaded by `load_student(path)` beforehand (the checkpoint is a model directory).
    `optimizer.pt` is read with `torch.load(weights_only=True)`: only tensors and primitives are accepted.
    """
    import torch

    path = Path(path)
    if not recover_checkpoint(path):
        raise ValueError(
            f"{path} is not a checkpoint directory (no state.json): pass one that train_* reported"
        )
    try:
        blob = torch.load(path / "optimizer.pt", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ValueError(
            f"{path / 'optimizer.pt'} holds pickled objects other than tensors and primitives, which could run "
            f"code when loaded: refusing it. Resume only from checkpoints train_* wrote ({exc})"
        ) from exc
    if optimizer is not None and blob["optimizer"] is not None:
        optimizer.load_state_dict(blob["optimizer"])
    if restore_rng:
        set_rng_state(blob["rng"])
    return json.loads((path / "state.json").read_text())


def check_choice(name: str, value: Any, choices: Any) -> None:
    """Raise ValueError naming the choices unless `value` is one of the `Literal` type `choices`."""
    allowed = get_args(choices)
    if value not in allowed:
        *rest, last = map(repr, allowed)
        listed = f"{', '.join(rest)} or {last}" if rest else last
        raise ValueError(f"{name}={value!r} must be {listed}")


def _swap_names(path: Path) -> tuple[Path, Path]:
    """The temp directory a new checkpoint is written to and the name the old one is moved to meanwhile."""
    return path.with_name(f".{path.name}.tmp"), path.with_name(f".{path.name}.old")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    return str(obj)
