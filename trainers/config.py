"""Typed configurations of the trainers: frozen dataclasses, one docstring line per field.

The first twelve fields of `RLConfig` are the study's swept hyperparameters, named exactly as in
`sweep/spaces/paper.yaml` (and the runs table's `params.<name>` columns), followed by `sft_checkpoint`, the branch
point label (SFT FLOPs). Every choice is a `Literal` field, checked against its own choices. Cross-field checks
live in `__post_init__` and name the fix.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Literal

from trainers.common import check_choice
from trainers.envio import families
from trainers.grpo import LossAggregation

__all__ = [
    "RLConfig",
    "SFTConfig",
    "TeacherConfig",
    "PretrainConfig",
    "Backend",
    "Teacher",
    "SFTEngine",
    "LRSchedule",
]

Backend = Literal["hf", "vllm"]
"""Generation backend of RL rollouts."""
Teacher = Literal["scripted", "hf", "openai"]
"""Where teacher completions come from."""
SFTEngine = Literal["native", "trl"]
"""SFT training loop."""
LRSchedule = Literal["constant", "cosine"]
"""Learning-rate schedule after the warm-up."""


def _positive(obj: object, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if value is not None and value <= 0:
            raise ValueError(f"{type(obj).__name__}.{name}={value!r} must be > 0")


def _check_choices(obj: object) -> None:
    """Every `Literal` field of the dataclass holds one of its choices."""
    hints = typing.get_type_hints(type(obj))
    for f in fields(obj):
        if typing.get_origin(hints[f.name]) is Literal:
            check_choice(f"{type(obj).__name__}.{f.name}", getattr(obj, f.name), hints[f.name])


@dataclass(frozen=True)
class RLConfig:
    """Multi-turn GRPO from one branch point. Defaults: the study's best configuration, a tiny CPU budget."""

    # --- the study's swept hyperparameters (paper.yaml) ---
    temperature: float = 0.25
    """Decoding temperature of rollouts (also scales the logits of the loss's log-probabilities)."""
    curriculum: bool = False
    """Sample training tasks by variance-aware Boltzmann weights (see `trainers.grpo.curriculum_weights`)."""
    curriculum_target_return: float = 0.5
    """Return the curriculum centres on, in [-1, 1] (used only when curriculum is on)."""
    curriculum_temperature: float = 0.1
    """Boltzmann temperature of the curriculum, > 0 (used only when curriculum is on)."""
    gamma: float = 0.9
    """Discount per agent step of the +-1 episode return, in (0, 1]."""
    grouped_advantage: bool = True
    """Subtract the group's mean return (off: the advantage is the raw return)."""
    zero_adv_filter: bool = True
    """Drop episodes whose advantage is exactly zero from the loss (and its token count)."""
    std_normalize: bool = True
    """Divide the advantage by the group's return std (plus `adv_eps`)."""
    batch_size: int = 512
    """Episodes per optimiser update (reached with gradient accumulation); a multiple of group_size."""
    learning_rate: float = 1e-6
    """AdamW learning rate of the RL updates."""
    error_log: bool = True
    """Show the last action's error in the next prompt (passed to the env runner)."""
    importance_ratio: bool = False
    """PPO-clipped importance ratio pi/pi_old (off: REINFORCE with the group baseline)."""
    sft_checkpoint: float = 0.0
    """Branch point label: SFT FLOPs spent before RL (0 = the base student). Logged, not used to compute."""

    # --- what is trained, where it starts ---
    student: str = "tiny-llama"
    """Student model: a named student (`tiny-llama`, `lookup-tiny`, `smollm2-135m`) or a model directory."""
    init_checkpoint: str | None = None
    """Branch point directory to start from (overrides the student's weights); None: the student itself."""
    sft_flops: float = 0.0
    """FLOPs spent to reach init_checkpoint (teacher + SFT); added to the reported cumulative `flops`."""

    # --- environment and data ---
    env: str = "toy"
    """Environment family (an `envs` family: `toy`, `miniwob`, ...) or several joined by `+` (`toy+miniwob`)."""
    tasks: tuple[str, ...] | None = None
    """Training task subset (None: all training tasks of the family)."""
    eval_tasks: tuple[str, ...] | None = None
    """Held-out task subset (None: all held-out tasks of the family)."""
    train_split: str = "train"
    """Registry split the RL goals come from (`<env>.<split>`)."""
    eval_goal_split: str | None = "heldout_goals"
    """Split of held-out goals (None: none; the metric is then NaN and the last evaluation is chosen)."""
    eval_task_split: str | None = "heldout_tasks"
    """Split of held-out tasks (WorkArena: `test`; None: none)."""
    train_seeds: str | None = None
    """Seeds of the training tasks to train on, as ranges (`'3-499'`); None: the train split's (MiniWoB++: 3-9)."""
    eval_goal_seeds: str | None = None
    """Seeds of the held-out goals (`'0-2,1000-1019'`: the study's three plus fresh ones, where three per task
    cannot resolve a lift); None: the split's (MiniWoB++: 0-2). A seed also trained on is refused."""
    max_eval_goals: int | None = None
    """Cap on goals per evaluation split (None: all), taken in a fixed order."""
    max_steps: int = 10
    """Agent steps per episode before it counts as a failure."""
    workers: int = 1
    """Env worker processes."""
    env_options: Mapping[str, Any] | None = None
    """Further `envs.runner.open_runner` options (observation kind, toy difficulty, browser settings)."""

    # --- the algorithm's fixed settings ---
    group_size: int = 8
    """G: rollouts per goal."""
    num_updates: int = 20
    """Optimiser updates (the run stops at this count or at rl_flops_budget, whichever comes first)."""
    rl_flops_budget: float | None = None
    """Stop once the RL FLOPs exceed this (None: no FLOPs budget)."""
    eval_every: int = 5
    """Evaluate (and checkpoint) every this many updates; also before the first update and after the last."""
    clip_eps: float = 0.2
    """PPO clip range epsilon (used when importance_ratio is on)."""
    ppo_epochs: int = 1
    """Passes over each batch; > 1 makes the importance ratio leave 1 (pi_old = the rollout policy)."""
    credit_failed_steps: bool = True
    """A step whose action failed (did not parse, or the environment refused it) shares its episode's advantage
    (True: the study). False: it never gets a positive one, so a success that passed through junk completions
    does not reinforce them (measured on MiniWoB++: benchmarks/RESULTS.md, "Study recipe, sixth session")."""
    adv_eps: float = 1e-4
    """Added to the group std when normalising."""
    negative_advantage_weight: float = 1.0
    """Multiplies negative advantages, in [0, 1]. 1: the study (every episode below its group's mean is pushed
    down as hard as one above it is pushed up); 0: only episodes better than their group's mean are reinforced
    (with grouped advantages, a filtered, rejection-sampling-like update whose freed probability mass does not
    flow to the sampling tail; zero-advantage filtering then drops the rest). Not one of the study's knobs."""
    max_new_tokens: int = 48
    """Completion tokens per agent step."""
    max_seq_len: int = 1024
    """Prompt + completion tokens kept for the loss (prompts are cut from the left)."""
    micro_batch_size: int = 16
    """Sequences (agent steps) per forward/backward pass."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm."""
    loss_aggregation: LossAggregation = "token"
    """`token`: the loss is the token mean over the batch (the study; a long completion weighs more);
    `sequence`: each completion's token mean, averaged over completions (the original GRPO); `episode`: each
    completion's token mean, averaged over its episode's completions, then over episodes (every episode weighs
    the same, so long failed episodes do not outweigh short successes)."""
    warmup_updates: int = 0
    """Linear learning-rate warm-up over this many updates (0: none, the study's setting)."""

    # --- runtime ---
    backend: Backend = "hf"
    """Generation backend: HF generate (CPU/GPU) or vLLM (GPU, the `gpu` extra)."""
    device: str = "auto"
    """torch device for updates (`auto`: cuda when present, else cpu)."""
    cpu_threads: int | None = None
    """torch intra-op CPU threads (None: torch's default). 1 is fastest for tiny models on a busy machine."""
    seed: int = 0
    """Seed of sampling, curriculum and goal order."""
    output_dir: str = "runs/rl"
    """Where checkpoints and samples go."""
    resume_from: str | None = None
    """A checkpoint directory of this run to resume from (same numbers as an uninterrupted run)."""
    samples_dir: str | None = None
    """Where a sample of trajectories is written as JSONL (None: output_dir)."""
    keep_checkpoints: int = 3
    """Checkpoints kept on disk besides the selected best one."""

    def __post_init__(self) -> None:
        _check_choices(self)
        families(self.env)  # raises on a malformed env name
        if not 0.0 < self.gamma <= 1.0:
            raise ValueError(f"gamma={self.gamma} must be in (0, 1]")
        if self.temperature < 0:
            raise ValueError(f"temperature={self.temperature} must be >= 0 (0 = greedy)")
        if not -1.0 <= self.curriculum_target_return <= 1.0:
            raise ValueError(f"curriculum_target_return={self.curriculum_target_return} must be in [-1, 1]")
        _positive(
            self,
            "curriculum_temperature",
            "learning_rate",
            "batch_size",
            "group_size",
            "num_updates",
            "eval_every",
            "clip_eps",
            "ppo_epochs",
            "max_new_tokens",
            "max_seq_len",
            "micro_batch_size",
            "max_steps",
            "workers",
            "rl_flops_budget",
            "max_eval_goals",
            "cpu_threads",
        )
        if self.batch_size % self.group_size:
            raise ValueError(
                f"batch_size={self.batch_size} is not a multiple of group_size={self.group_size}: "
                f"use batch_size={max(1, round(self.batch_size / self.group_size)) * self.group_size}"
            )
        if self.group_size < 2 and self.grouped_advantage:
            raise ValueError("grouped_advantage needs group_size >= 2 (a group of one has zero advantage)")
        if not 0.0 <= self.negative_advantage_weight <= 1.0:
            raise ValueError(
                f"negative_advantage_weight={self.negative_advantage_weight} must be in [0, 1] "
                "(1: the study's update, 0: reinforce only episodes above their group's mean)"
            )
        from envs.registry import parse_seeds

        train = set(parse_seeds(self.train_seeds)) if self.train_seeds is not None else None
        heldout = set(parse_seeds(self.eval_goal_seeds)) if self.eval_goal_seeds is not None else None
        if train is not None and heldout is not None and train & heldout:
            raise ValueError(
                f"eval_goal_seeds and train_seeds share seeds {sorted(train & heldout)[:5]}: held-out goals must "
                "never be trained on"
            )
        if self.warmup_updates < 0:
            raise ValueError(f"warmup_updates={self.warmup_updates} must be >= 0")
        if self.max_new_tokens >= self.max_seq_len:
            raise ValueError(f"max_new_tokens={self.max_new_tokens} must be < max_seq_len={self.max_seq_len}")

    @property
    def goals_per_update(self) -> int:
        """Distinct goals per update: batch_size / group_size."""
        return self.batch_size // self.group_size

    def replace(self, **changes: object) -> RLConfig:
        return replace(self, **changes)


@dataclass(frozen=True)
class SFTConfig:
    """Supervised fine-tuning of a student on teacher traces, saving branch points at fixed FLOPs intervals."""

    traces: str
    """A TraceSet directory (written by `collect_teacher_traces`)."""
    student: str = "tiny-llama"
    """Student model: a named student (`tiny-llama`, `lookup-tiny`, `smollm2-135m`) or a model directory."""
    output_dir: str = "runs/sft"
    """Where branch points (`branch_<flops>/`) and `branch_points.json` go."""
    learning_rate: float = 1e-4
    """AdamW learning rate."""
    batch_size: int = 8
    """Examples (agent steps) per optimiser update."""
    micro_batch_size: int = 8
    """Examples per forward/backward pass (gradient accumulation up to batch_size)."""
    num_epochs: float = 3.0
    """Passes over the dataset (fractions allowed)."""
    checkpoint_every_flops: float | None = None
    """Save a branch point each time this many SFT FLOPs (teacher share included) are passed; None: only the end."""
    checkpoint_every_steps: int | None = None
    """Alternatively, save every this many updates (both may be set)."""
    max_seq_len: int = 1024
    """Tokens kept per example (prompt cut from the left; completions are kept whole when they fit)."""
    lora: bool = False
    """Train LoRA adapters (merged into the saved branch points) instead of all weights."""
    lora_rank: int = 16
    """LoRA rank."""
    warmup_ratio: float = 0.05
    """Linear warm-up share of the schedule (then cosine decay)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm."""
    device: str = "auto"
    """torch device (`auto`: cuda when present, else cpu)."""
    cpu_threads: int | None = None
    """torch intra-op CPU threads (None: torch's default)."""
    seed: int = 0
    """Seed of shuffling and initialisation."""
    resume: bool = True
    """Continue from `<output_dir>/resume.pt` when a killed run of the same config left one (same numbers as an
    uninterrupted run); the state is written at every branch point and every `resume_every_steps` updates."""
    resume_every_steps: int | None = 50
    """Also save the resume state this often (None: only at branch points)."""
    engine: SFTEngine = "native"
    """Training loop: `native` (the project's loop, shared with RL) or `trl` (TRL's SFTTrainer on the same tokenised
    examples and completion masks, same branch points and FLOPs accounting; resumes from HF Trainer checkpoints)."""

    def __post_init__(self) -> None:
        _check_choices(self)
        _positive(
            self,
            "learning_rate",
            "batch_size",
            "micro_batch_size",
            "num_epochs",
            "checkpoint_every_flops",
            "checkpoint_every_steps",
            "max_seq_len",
            "lora_rank",
            "cpu_threads",
            "resume_every_steps",
        )
        if self.batch_size % self.micro_batch_size:
            raise ValueError(
                f"batch_size={self.batch_size} must be a multiple of micro_batch_size={self.micro_batch_size}"
            )
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio={self.warmup_ratio} must be in [0, 1)")


@dataclass(frozen=True)
class TeacherConfig:
    """Teacher episodes: the scripted policy, a local HF model or an OpenAI-compatible endpoint."""

    env: str = "toy"
    """Environment family, or several joined by `+` (`toy+miniwob`)."""
    tasks: tuple[str, ...] | None = None
    """Training task subset (None: all training tasks of the family)."""
    split: str = "train"
    """Goal split the teacher plays (the study: training seeds only)."""
    teacher: Teacher = "scripted"
    """Backend: the env's scripted policy, a local HF model, or an OpenAI-compatible endpoint."""
    model: str | None = None
    """Model: HF directory/named student (hf), served model name (openai); None for scripted."""
    flops_model: str | None = None
    """Model whose size counts the teacher's FLOPs (a preset such as `llama-3.3-70b`); None: `model`."""
    base_url: str | None = None
    """OpenAI-compatible endpoint, e.g. http://node:8000/v1 (openai backend)."""
    api_key_env: str = "OPENAI_API_KEY"
    """Name of the environment variable holding the API key (the key itself is never in a config)."""
    allow_key_over_http: bool = False
    """Send the API key over plain `http://` to a host that is not loopback (off: refused; use https or a tunnel)."""
    episodes_per_goal: int = 1
    """Episodes per goal."""
    max_goals: int | None = None
    """Cap on goals (None: all goals of the split), taken from every task in turn so each task is represented."""
    temperature: float = 0.7
    """Teacher decoding temperature."""
    max_new_tokens: int = 256
    """Teacher completion tokens per step."""
    max_steps: int = 10
    """Agent steps per episode."""
    error_log: bool = True
    """Show the last action's error in the next prompt."""
    workers: int = 1
    """Env worker processes."""
    env_options: Mapping[str, Any] | None = None
    """Further `envs.runner.open_runner` options (observation kind, toy difficulty, browser settings)."""
    concurrency: int = 8
    """Concurrent requests to the endpoint (openai backend)."""
    timeout_s: float = 120.0
    """Per-request timeout (openai backend)."""
    max_retries: int = 5
    """Retries with exponential backoff per request (openai backend)."""
    seed: int = 0
    """Seed of the teacher's sampling."""
    output_dir: str = "runs/teacher"
    """Where the TraceSet (`examples.jsonl`, `trajectories.jsonl`, `provenance.json`) goes."""

    def __post_init__(self) -> None:
        _check_choices(self)
        families(self.env)
        _positive(
            self,
            "episodes_per_goal",
            "max_goals",
            "max_new_tokens",
            "max_steps",
            "workers",
            "concurrency",
            "timeout_s",
        )
        if self.teacher == "openai" and not (self.base_url and self.model):
            raise ValueError(
                "teacher='openai' needs base_url (e.g. http://host:8000/v1) and model (served name)"
            )
        if self.teacher == "hf" and not self.model:
            raise ValueError("teacher='hf' needs model (a model directory or a named student)")


@dataclass(frozen=True)
class PretrainConfig:
    """A task-free pretraining stage for a tiny student: a Llama with the lookup tokenizer, trained on synthetic
    record tables and copy documents (`trainers.pretrain`), standing in for an instruct model's pretraining."""

    output_dir: str = "runs/pretrain"
    """Where `model/` (the student, loadable as `student=`), `snap_<step>/`, `pretrain_log.csv` and the resume
    state go."""
    hidden_size: int = 128
    """Width of the Llama (FFN 3x)."""
    num_layers: int = 4
    """Transformer layers."""
    num_heads: int = 4
    """Attention heads."""
    vocab_size: int = 1200
    """Tokenizer size (every number below `trainers.pretrain.NUM_IDS` is one token besides)."""
    steps: int = 8000
    """Optimiser updates."""
    batch_size: int = 16
    """Packed sequences per update."""
    seq_len: int = 160
    """Tokens per packed sequence."""
    learning_rate: float = 2e-3
    """AdamW peak learning rate."""
    warmup_steps: int = 50
    """Linear warm-up updates."""
    schedule: LRSchedule = "constant"
    """After the warm-up: constant (open-ended runs, every snapshot usable) or cosine to 10% at `steps`."""
    curriculum_steps: int = 3000
    """Tables grow from 2 records with single-token keys to the full generator over this many updates (0: none)."""
    table_share: float = 0.7
    """Share of record-table (lookup) documents; the rest are copy documents."""
    probe_every_steps: int = 200
    """Probe the skills (teacher-forced lookup and copy accuracy) and save a snapshot this often."""
    probe_docs: int = 100
    """Fresh synthetic documents per skill in each probe."""
    resume_every_steps: int = 200
    """Save the resume state this often; a rerun of the same config continues from it."""
    seed: int = 0
    """Seed of the initialisation and of the synthetic text."""
    cpu_threads: int | None = 1
    """torch intra-op CPU threads (None: torch's default)."""
    device: str = "auto"
    """torch device (`auto`: cuda when present, else cpu)."""

    def __post_init__(self) -> None:
        _check_choices(self)
        _positive(
            self,
            "hidden_size",
            "num_layers",
            "num_heads",
            "vocab_size",
            "steps",
            "batch_size",
            "seq_len",
            "learning_rate",
            "probe_every_steps",
            "probe_docs",
            "resume_every_steps",
            "cpu_threads",
        )
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} must be a multiple of num_heads={self.num_heads}"
            )
        if not 0.0 <= self.table_share <= 1.0:
            raise ValueError(f"table_share={self.table_share} must be in [0, 1]")
        if self.warmup_steps < 0 or self.curriculum_steps < 0:
            raise ValueError("warmup_steps and curriculum_steps must be >= 0")
