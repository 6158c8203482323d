"""SFT on teacher traces with a completion-only token loss, saving branch points at fixed FLOPs intervals.

Each branch point is a model directory (LoRA adapters merged) registered with the FLOPs spent to reach it:
the teacher's generation FLOPs (at the teacher's size) plus the student's training FLOPs so far.
`branch_points.json` in the output directory lists them.

A killed run resumes: `<output_dir>/resume/` (a `trainers.common.save_checkpoint` directory, as RL's checkpoints:
weights or LoRA adapters, optimiser, RNG, step, FLOPs counter, branch points so far, the config it belongs to)
is rewritten atomically at every branch point and every `resume_every_steps` updates; the next `train_sft` with
the same config continues from it and ends with the same branch points and numbers as an uninterrupted run. A
different config never resumes from it (it says so).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trainers.common import (
    Encoded,
    atomic_write,
    clip_and_step,
    collate,
    encode_example,
    load_checkpoint,
    make_optimizer,
    masked_nll,
    recover_checkpoint,
    save_checkpoint,
    seed_everything,
    set_learning_rate,
    warmup_lr,
)
from trainers.config import SFTConfig
from trainers.flops import FlopsCounter
from trainers.models import load_student, resolve_device
from trainers.teacher import TraceSet

__all__ = ["BranchPoint", "RESUME_DIR", "train_sft", "load_branch_points", "apply_lora"]

RESUME_DIR = "resume"
"""Subdirectory of `output_dir` holding the native loop's resume checkpoint."""
_TRL_DIR = "trl"
"""Subdirectory of `output_dir` holding the TRL engine's HF Trainer checkpoints."""

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


@dataclass
class _Progress:
    """What the native loop carries from update to update (and its resume checkpoint holds besides the model,
    optimiser, RNG and FLOPs counter)."""

    step: int = 0
    branches: list[dict[str, Any]] = field(default_factory=list)
    next_flops: float | None = None
    loss_sum: float = 0.0
    tok_sum: int = 0


@dataclass(frozen=True)
class _Job:
    """One SFT run's inputs, shared by both engines."""

    cfg: SFTConfig
    report: Callable[..., None] | None
    model: Any
    tok: Any
    data: list[Encoded]
    teacher_flops: float
    counter: FlopsCounter
    out: Path
    total: int
    """Optimiser updates of the whole run."""
    device: str

    @property
    def warmup_steps(self) -> int:
        """Updates of the linear warm-up (at least one)."""
        return max(1, round(self.cfg.warmup_ratio * self.total))


def apply_lora(model, rank: int, seed: int):
    """Wrap the model with LoRA adapters on the attention and MLP projections (peft), initialised from `seed`."""
    from peft import LoraConfig, get_peft_model

    seed_everything(seed)
    cfg = LoraConfig(
        r=rank,
        lora_alpha=2 * rank,
        lora_dropout=0.0,
        task_type="CAUSAL_LM",
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    )
    return get_peft_model(model, cfg)


def _save_branch(job: _Job, model, step: int, flops: float) -> BranchPoint:
    to_save = copy.deepcopy(model).merge_and_unload() if job.cfg.lora else model
    path = job.out / f"branch_step{step:06d}"
    state = {"step": step, "flops": flops, "student_flops": job.counter.flops}
    save_checkpoint(path, model=to_save, tokenizer=job.tok, state=state)
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
    traces = TraceSet.load(cfg.traces)
    if not traces.examples:
        raise ValueError(
            f"{cfg.traces} has no SFT examples (no successful teacher episode): collect more traces"
        )
    device = resolve_device(cfg.device, cpu_threads=cfg.cpu_threads)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    resume_dir = _resume_dir(out, cfg) if cfg.engine == "native" else None
    seed_everything(cfg.seed)
    model, tok = _load_model(cfg, device, resume_dir)
    model.train()
    data = [
        encode_example(tok, ex.messages, ex.completion, max_seq_len=cfg.max_seq_len) for ex in traces.examples
    ]
    total = max(1, math.ceil(cfg.num_epochs * len(data) / cfg.batch_size))
    job = _Job(cfg, report, model, tok, data, traces.teacher_flops, FlopsCounter(model), out, total, device)
    branches = _train_trl(job) if cfg.engine == "trl" else _train_native(job, resume_dir)
    atomic_write(out / "branch_points.json", json.dumps([asdict(b) for b in branches], indent=1))
    for scratch in (RESUME_DIR, _TRL_DIR):  # the run's resume state, kept until the branch points are listed
        shutil.rmtree(out / scratch, ignore_errors=True)
    return branches


def _load_model(cfg: SFTConfig, device: str, resume_dir: Path | None):
    """The student (LoRA-wrapped when asked), or the model of the resume checkpoint."""
    if resume_dir is None:
        model, tok = load_student(cfg.student, device=device)
        return (apply_lora(model, cfg.lora_rank, cfg.seed) if cfg.lora else model), tok
    if not cfg.lora:
        return load_student(str(resume_dir), device=device)
    from peft import PeftModel

    base, tok = load_student(cfg.student, device=device)
    return PeftModel.from_pretrained(base, str(resume_dir), is_trainable=True), tok


def _train_native(job: _Job, resume_dir: Path | None) -> list[BranchPoint]:
    """The project's loop (shared with RL: tokenisation, loss, optimiser, warm-up, checkpoints)."""
    cfg, model, counter = job.cfg, job.model, job.counter
    optimizer = make_optimizer(model, learning_rate=cfg.learning_rate, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(cfg.seed)
    epochs = math.ceil(job.total * cfg.batch_size / len(job.data))
    order = np.concatenate([rng.permutation(len(job.data)) for _ in range(epochs)])
    run = _Progress(next_flops=cfg.checkpoint_every_flops)
    if resume_dir is not None:
        saved = load_checkpoint(resume_dir, optimizer=optimizer)
        counter.load_state_dict(saved["counter"])
        run = _Progress(**saved["run"])
        logger.info("sft: resumed from %s at step %d of %d", resume_dir, run.step, job.total)
    while run.step < job.total:
        run.step += 1
        step = run.step
        set_learning_rate(
            optimizer, warmup_lr(cfg.learning_rate, step - 1, job.warmup_steps, total_updates=job.total)
        )
        batch = [job.data[i] for i in order[(step - 1) * cfg.batch_size : step * cfg.batch_size]]
        num_tokens = sum(e.num_completion_tokens for e in batch)
        for j in range(0, len(batch), cfg.micro_batch_size):
            micro = batch[j : j + cfg.micro_batch_size]
            ids, attn, comp = collate(micro, job.tok.pad_token_id, device=job.device)
            loss = masked_nll(model, ids, attn, comp, num_tokens=num_tokens)
            loss.backward()
            run.loss_sum += float(loss.detach()) * num_tokens
            counter.add_sequences([len(e.input_ids) for e in micro], trained=True)
        run.tok_sum += num_tokens
        clip_and_step(model, optimizer, max_grad_norm=cfg.max_grad_norm)
        flops = job.teacher_flops + counter.flops
        due = _branch_due(cfg, step, flops, run.next_flops)
        if due or step == job.total:
            bp = _save_branch(job, model, step, flops)
            run.branches.append(asdict(bp))
            run.next_flops = _next_threshold(cfg, flops, run.next_flops)
            train_loss = run.loss_sum / max(run.tok_sum, 1)
            run.loss_sum, run.tok_sum = 0.0, 0
            _announce(job.report, bp, counter, train_loss)
        every = cfg.resume_every_steps
        if cfg.resume and step < job.total and (due or (every and step % every == 0)):
            state = {"config": _config_key(cfg), "counter": counter.state_dict(), "run": asdict(run)}
            save_checkpoint(
                job.out / RESUME_DIR, model=model, tokenizer=job.tok, optimizer=optimizer, state=state
            )
    return [BranchPoint(**b) for b in run.branches]


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
    metrics = {
        "step": float(bp.step),
        "flops": bp.flops,
        "sft_flops": counter.flops,
        "train_loss": train_loss,
        "tokens": float(counter.tokens),
    }
    logger.info("sft step %d: loss %.4f, %.3g FLOPs -> %s", bp.step, train_loss, bp.flops, bp.path)
    if report is not None:
        report(metrics, checkpoint=bp.path)


def _train_trl(job: _Job) -> list[BranchPoint]:
    """The same run with TRL's SFTTrainer: our tokenised examples and completion masks (TRL builds the labels,
    completion-only loss, token mean over each optimiser batch), HF's cosine schedule with linear warm-up, branch
    points and FLOPs from a callback and a forward hook (every trained sequence at its unpadded length)."""
    from datasets import Dataset
    from datasets.utils.logging import disable_progress_bar
    from transformers import PrinterCallback, TrainerCallback
    from trl import SFTConfig as TRLSFTConfig
    from trl import SFTTrainer

    cfg, counter, total = job.cfg, job.counter, job.total
    disable_progress_bar()  # TRL's dataset preparation bars flood trial logs; progress is ours
    ds = Dataset.from_dict(
        {
            "input_ids": [e.input_ids for e in job.data],
            "completion_mask": [e.completion_mask for e in job.data],
        }
    )
    ckpt_dir = job.out / _TRL_DIR
    args = TRLSFTConfig(
        output_dir=str(ckpt_dir),
        per_device_train_batch_size=cfg.micro_batch_size,
        gradient_accumulation_steps=cfg.batch_size // cfg.micro_batch_size,
        max_steps=total,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=job.warmup_steps,
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        seed=cfg.seed,
        data_seed=cfg.seed,
        completion_only_loss=True,
        max_length=cfg.max_seq_len,
        packing=False,
        report_to="none",
        logging_steps=1,
        save_strategy="steps" if cfg.resume and cfg.resume_every_steps else "no",
        save_steps=cfg.resume_every_steps or total,
        save_total_limit=2,
        save_only_model=False,
        disable_tqdm=True,
        use_cpu=job.device == "cpu",
        dataloader_num_workers=0,
    )
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
            step, flops = state.global_step, job.teacher_flops + counter.flops
            if not (_branch_due(cfg, step, flops, run["next_flops"]) or step == total):
                return
            bp = _save_branch(job, model, step, flops)
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
            ours = {k: v for k, v in run.items() if k != "pending"}
            atomic_write(
                path, json.dumps({"config": _config_key(cfg), "counter": counter.state_dict(), **ours})
            )

    def announce_pending() -> None:
        bp = run.pop("pending", None)
        if bp is not None:
            losses, run["losses"] = run["losses"], []
            _announce(job.report, bp, counter, float(np.mean(losses)) if losses else float("nan"))

    resume_from = _last_trl_checkpoint(ckpt_dir) if cfg.resume else None
    if resume_from is not None:
        saved = json.loads((Path(resume_from) / "agentsweep_sft.json").read_text())
        _check_same_config(saved["config"], cfg, resume_from, job.out)
        counter.load_state_dict(saved["counter"])
        run.update({k: saved[k] for k in ("branches", "next_flops", "losses")})
        logger.info("sft (trl): resuming from %s", resume_from)
    elif ckpt_dir.is_dir():
        shutil.rmtree(ckpt_dir)
    hook = job.model.register_forward_pre_hook(count, with_kwargs=True)
    trainer = SFTTrainer(
        model=job.model, args=args, train_dataset=ds, processing_class=job.tok, callbacks=[Branches()]
    )
    trainer.remove_callback(PrinterCallback)  # a line per step; progress comes from our log and report
    try:
        trainer.train(resume_from_checkpoint=resume_from)
    finally:
        hook.remove()
    announce_pending()  # in case the last step was not logged
    return [BranchPoint(**b) for b in run["branches"]]


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


def _resume_dir(out: Path, cfg: SFTConfig) -> Path | None:
    """The native loop's resume checkpoint in `out` when `cfg.resume` and a killed run of this config left one."""
    path = out / RESUME_DIR
    if not (cfg.resume and recover_checkpoint(path)):
        return None
    _check_same_config(json.loads((path / "state.json").read_text()).get("config"), cfg, path, out)
    return path


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
