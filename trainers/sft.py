"""SFT on teacher traces with a completion-only token loss, saving branch points at fixed FLOPs intervals.

Each branch point is a model directory (LoRA adapters merged) registered with the FLOPs spent to reach it:
the teacher's generation FLOPs (at the teacher's size) plus the student's training FLOPs so far.
`branch_points.json` in the output directory lists them.

A killed run resumes: `<output_dir>/resume.pt` (weights, LoRA adapters included, optimiser, scheduler, RNG, step,
FLOPs counter, branch points so far, the config it belongs to) is rewritten atomically at every branch point and
every `resume_every_steps` updates; the next `train_sft` with the same config continues from it and ends with the
same branch points and numbers as an uninterrupted run. A different config never resumes from it (it says so).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from trainers.common import (
    clip_and_step,
    collate,
    encode_example,
    make_optimizer,
    masked_nll,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from trainers.config import SFTConfig
from trainers.flops import FlopsCounter
from trainers.models import load_student, resolve_device
from trainers.teacher import TraceSet

__all__ = ["BranchPoint", "train_sft", "load_branch_points", "apply_lora"]

_RESUME = "resume.pt"

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BranchPoint:
    """An SFT checkpoint RL can start from."""

    path: str
    """Model directory (loadable with `load_student(path)`)."""
    flops: float
    """FLOPs spent to reach it: teacher generation + student training."""
    step: int
    """SFT updates done."""


def apply_lora(model, rank: int, seed: int):
    """Wrap the model with LoRA adapters on the attention and MLP projections (peft)."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    cfg = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, task_type="CAUSAL_LM",
                     target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])  # fmt: skip
    return get_peft_model(model, cfg)


def _schedule(optimizer, total: int, warmup_ratio: float):
    import torch

    warm = max(1, int(round(warmup_ratio * total)))

    def lr_lambda(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)


def _save_branch(
    model, tok, out: Path, step: int, flops: float, student_flops: float, lora: bool
) -> BranchPoint:
    to_save = copy.deepcopy(model).merge_and_unload() if lora else model
    path = out / f"branch_step{step:06d}"
    save_checkpoint(path, model=to_save, tokenizer=tok,
                    state={"step": step, "flops": flops, "student_flops": student_flops})  # fmt: skip
    return BranchPoint(str(path), flops, step)


def train_sft(cfg: SFTConfig, report: Callable[..., None] | None = None) -> list[BranchPoint]:
    """Fine-tune the student on a TraceSet; branch points every `checkpoint_every_flops` FLOPs and at the end.

    Args:
        cfg: the SFT configuration.
        report: `report(metrics, checkpoint)` after each branch point with `step`, `flops` (teacher + student),
            `sft_flops`, `train_loss` (mean token NLL since the last report), `tokens`.

    Returns:
        The branch points in order of FLOPs (also written to `<output_dir>/branch_points.json`).
    """
    import torch

    traces = TraceSet.load(cfg.traces)
    if not traces.examples:
        raise ValueError(
            f"{cfg.traces} has no SFT examples (no successful teacher episode): collect more traces"
        )
    device = resolve_device(cfg.device, cpu_threads=cfg.cpu_threads)
    torch.manual_seed(cfg.seed)
    model, tok = load_student(cfg.student, device=device)
    if cfg.lora:
        model = apply_lora(model, cfg.lora_rank, cfg.seed)
    model.train()
    data = [
        encode_example(tok, ex.messages, ex.completion, max_seq_len=cfg.max_seq_len) for ex in traces.examples
    ]
    counter = FlopsCounter(model)
    total = max(1, math.ceil(cfg.num_epochs * len(data) / cfg.batch_size))
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.engine == "trl":
        return _train_trl(cfg, report, model, tok, data, traces.teacher_flops, counter, out, total, device)
    optimizer = make_optimizer(model, learning_rate=cfg.learning_rate, weight_decay=cfg.weight_decay)
    scheduler = _schedule(optimizer, total, cfg.warmup_ratio)
    rng = np.random.default_rng(cfg.seed)
    order = np.concatenate(
        [rng.permutation(len(data)) for _ in range(math.ceil(total * cfg.batch_size / len(data)))]
    )
    branches: list[BranchPoint] = []
    next_flops = cfg.checkpoint_every_flops
    loss_sum, tok_sum, start = 0.0, 0, 1
    state = _load_resume(out, cfg) if cfg.resume else None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        counter.load_state_dict(state["counter"])
        branches = [BranchPoint(**b) for b in state["branches"]]
        next_flops, loss_sum, tok_sum, start = (
            state["next_flops"],
            state["loss_sum"],
            state["tok_sum"],
            state["step"] + 1,
        )
        logger.info("sft: resumed from %s at step %d of %d", out / _RESUME, state["step"], total)
    for step in range(start, total + 1):
        batch = [data[i] for i in order[(step - 1) * cfg.batch_size : step * cfg.batch_size]]
        num_tokens = sum(e.num_completion_tokens for e in batch)
        for j in range(0, len(batch), cfg.micro_batch_size):
            micro = batch[j : j + cfg.micro_batch_size]
            loss = masked_nll(model, *collate(micro, tok.pad_token_id, device=device), num_tokens=num_tokens)
            loss.backward()
            loss_sum += float(loss.detach()) * num_tokens
            counter.add_sequences([len(e.input_ids) for e in micro], trained=True)
        tok_sum += num_tokens
        clip_and_step(model, optimizer, max_grad_norm=cfg.max_grad_norm, scheduler=scheduler)
        flops = traces.teacher_flops + counter.flops
        due = _branch_due(cfg, step, flops, next_flops)
        if due or step == total:
            bp = _save_branch(model, tok, out, step, flops, counter.flops, cfg.lora)
            branches.append(bp)
            next_flops = _next_threshold(cfg, flops, next_flops)
            train_loss, loss_sum, tok_sum = loss_sum / max(tok_sum, 1), 0.0, 0
            _announce(report, bp, counter, train_loss)
        if (
            cfg.resume
            and step < total
            and (due or (cfg.resume_every_steps and step % cfg.resume_every_steps == 0))
        ):
            _save_resume(out, cfg, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                    "scheduler": scheduler.state_dict(), "rng": rng_state(),
                                    "counter": counter.state_dict(), "branches": [asdict(b) for b in branches],
                                    "next_flops": next_flops, "loss_sum": loss_sum, "tok_sum": tok_sum,
                                    "step": step})  # fmt: skip
    _write_branch_points(out, branches)
    (out / _RESUME).unlink(missing_ok=True)
    return branches


def _branch_due(cfg: SFTConfig, step: int, flops: float, next_flops: float | None) -> bool:
    """A branch point is due: the FLOPs threshold is passed or the step is a multiple of checkpoint_every_steps."""
    return (next_flops is not None and flops >= next_flops) or (
        cfg.checkpoint_every_steps is not None and step % cfg.checkpoint_every_steps == 0
    )


def _next_threshold(cfg: SFTConfig, flops: float, next_flops: float | None) -> float | None:
    """The first multiple of checkpoint_every_flops above `flops` (None when checkpointing is by steps only)."""
    while next_flops is not None and flops >= next_flops:
        next_flops += cfg.checkpoint_every_flops
    return next_flops


def _announce(
    report: Callable[..., None] | None, bp: BranchPoint, counter: FlopsCounter, train_loss: float
) -> None:
    """Log a new branch point and pass its metrics to `report`."""
    metrics = {"step": float(bp.step), "flops": bp.flops, "sft_flops": counter.flops, "train_loss": train_loss,
               "tokens": float(counter.tokens)}  # fmt: skip
    logger.info("sft step %d: loss %.4f, %.3g FLOPs -> %s", bp.step, train_loss, bp.flops, bp.path)
    if report is not None:
        report(metrics, checkpoint=bp.path)


def _write_branch_points(out: Path, branches: list[BranchPoint]) -> None:
    (out / "branch_points.json").write_text(json.dumps([asdict(b) for b in branches], indent=1))


def _train_trl(cfg: SFTConfig, report, model, tok, data, teacher_flops: float, counter: FlopsCounter, out: Path,
               total: int, device: str) -> list[BranchPoint]:  # fmt: skip
    """The same run with TRL's SFTTrainer: our tokenised examples and completion masks (TRL builds the labels,
    completion-only loss, token mean over each optimiser batch), HF's cosine schedule with linear warm-up, branch
    points and FLOPs from a callback and a forward hook (every trained sequence at its unpadded length)."""
    from datasets import Dataset
    from datasets.utils.logging import disable_progress_bar
    from transformers import PrinterCallback, TrainerCallback
    from trl import SFTConfig as TRLSFTConfig
    from trl import SFTTrainer

    disable_progress_bar()  # TRL's dataset preparation bars flood trial logs; progress is ours
    ds = Dataset.from_dict(
        {"input_ids": [e.input_ids for e in data], "completion_mask": [e.completion_mask for e in data]}
    )
    ckpt_dir = out / "trl"
    args = TRLSFTConfig(
        output_dir=str(ckpt_dir), per_device_train_batch_size=cfg.micro_batch_size,
        gradient_accumulation_steps=cfg.batch_size // cfg.micro_batch_size, max_steps=total,
        learning_rate=cfg.learning_rate, lr_scheduler_type="cosine", warmup_steps=max(1, round(cfg.warmup_ratio * total)),
        weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm, seed=cfg.seed, data_seed=cfg.seed,
        completion_only_loss=True, max_length=cfg.max_seq_len, packing=False, report_to="none", logging_steps=1,
        save_strategy="steps" if cfg.resume and cfg.resume_every_steps else "no",
        save_steps=cfg.resume_every_steps or total, save_total_limit=2, save_only_model=False, disable_tqdm=True,
        use_cpu=device == "cpu", dataloader_num_workers=0,
    )  # fmt: skip
    run = {"branches": [], "next_flops": cfg.checkpoint_every_flops, "losses": []}

    def count(module, a, kwargs):  # each training forward: its sequences at their unpadded lengths
        if module.training:
            mask = kwargs.get("attention_mask")
            ids = kwargs.get("input_ids")
            lengths = mask.sum(-1).tolist() if mask is not None else [ids.shape[-1]] * ids.shape[0]
            counter.add_sequences([int(n) for n in lengths], trained=True)

    class Branches(TrainerCallback):
        """Branch points at step end; each is announced at the step's log (HF logs after on_step_end), so its
        train loss covers the steps since the previous one, that step included."""

        def on_step_end(self, args, state, control, model=None, **kw):
            step, flops = state.global_step, teacher_flops + counter.flops
            if not (_branch_due(cfg, step, flops, run["next_flops"]) or step == total):
                return
            bp = _save_branch(model, tok, out, step, flops, counter.flops, cfg.lora)
            run["branches"].append(asdict(bp))
            run["next_flops"] = _next_threshold(cfg, flops, run["next_flops"])
            run["pending"] = bp

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                run["losses"].append(float(logs["loss"]))
            announce_pending()

        def on_save(self, args, state, control, **kw):
            """Our part of the HF checkpoint: FLOPs counter and branch points."""
            path = Path(args.output_dir) / f"checkpoint-{state.global_step}" / "agentsweep_sft.json"
            path.write_text(json.dumps({"config": _config_key(cfg), "counter": counter.state_dict(),
                                        **{k: v for k, v in run.items() if k != "pending"}}))  # fmt: skip

    def announce_pending() -> None:
        bp = run.pop("pending", None)
        if bp is not None:
            losses, run["losses"] = run["losses"], []
            _announce(report, bp, counter, float(np.mean(losses)) if losses else float("nan"))

    resume_from = _last_trl_checkpoint(ckpt_dir) if cfg.resume else None
    if resume_from is not None:
        saved = json.loads((Path(resume_from) / "agentsweep_sft.json").read_text())
        _check_same_config(saved["config"], cfg, resume_from, out)
        counter.load_state_dict(saved["counter"])
        run.update({k: saved[k] for k in ("branches", "next_flops", "losses")})
        logger.info("sft (trl): resuming from %s", resume_from)
    elif ckpt_dir.is_dir():
        shutil.rmtree(ckpt_dir)
    hook = model.register_forward_pre_hook(count, with_kwargs=True)
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=ds, processing_class=tok, callbacks=[Branches()]
    )
    trainer.remove_callback(PrinterCallback)  # a line per step; progress comes from our log and report
    try:
        trainer.train(resume_from_checkpoint=resume_from)
    finally:
        hook.remove()
    announce_pending()  # in case the last step was not logged
    branches = [BranchPoint(**b) for b in run["branches"]]
    _write_branch_points(out, branches)
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    return branches


def _last_trl_checkpoint(ckpt_dir: Path) -> str | None:
    """The newest HF checkpoint that also holds our state (a kill between the two writes leaves one without)."""
    done = [p for p in ckpt_dir.glob("checkpoint-*") if (p / "agentsweep_sft.json").is_file()]
    return str(max(done, key=lambda p: int(p.name.split("-")[-1]))) if done else None


def _config_key(cfg: SFTConfig) -> dict:
    """The fields that decide the numbers (resume settings and threads left out)."""
    return {
        k: v
        for k, v in asdict(cfg).items()
        if k not in ("resume", "resume_every_steps", "cpu_threads", "device")
    }


def _save_resume(out: Path, cfg: SFTConfig, state: dict) -> None:
    import torch

    tmp = out / f".{_RESUME}.tmp"
    torch.save({**state, "config": _config_key(cfg)}, tmp)
    tmp.replace(out / _RESUME)


def _load_resume(out: Path, cfg: SFTConfig) -> dict | None:
    import torch

    path = out / _RESUME
    if not path.is_file():
        return None
    state = torch.load(path, weights_only=False)
    _check_same_config(state.get("config"), cfg, path, out)
    return state


def _check_same_config(saved: dict | None, cfg: SFTConfig, where, out: Path) -> None:
    if saved != _config_key(cfg):
        raise ValueError(
            f"{where} belongs to a different SFT config: resume it with the same config, pass resume=False to "
            f"start over in {out}, or use another output_dir"
        )


def load_branch_points(output_dir: str | Path) -> list[BranchPoint]:
    """The branch points a finished `train_sft` registered in `output_dir`."""
    path = Path(output_dir) / "branch_points.json"
    if not path.is_file():
        raise ValueError(f"{path} not found: run train_sft with output_dir={output_dir}")
    return [BranchPoint(**d) for d in json.loads(path.read_text())]
