"""`agentsweep flops` and `agentsweep train {pretrain,teacher,sft,rl}`. Top-level imports: click and stdlib only."""

from __future__ import annotations

import click

__all__ = ["flops", "train"]


@click.command()
@click.option(
    "--model", required=True, help="A preset (llama-3.1-8b, smollm2-135m, ...), a model dir or config.json."
)
@click.option("--seq-len", type=click.IntRange(min=1), required=True, help="Sequence length in tokens.")
@click.option("--tokens", type=click.FloatRange(min=0), required=True, help="Number of tokens.")
@click.option("--trained", is_flag=True, help="Tokens trained on (forward + backward) rather than generated.")
def flops(model: str, seq_len: int, tokens: float, trained: bool) -> None:
    """Total FLOPs of TOKENS tokens by the study's formula (NVIDIA's Llama benchmarking formula)."""
    from trainers.flops import PRESETS, flops_per_token

    try:
        per_token = flops_per_token(model, seq_len, trained)
    except ValueError as exc:
        raise click.BadParameter(
            f"{exc} (presets: {', '.join(sorted(PRESETS))})", param_hint="--model"
        ) from exc
    click.echo(
        f"{per_token * tokens:.4e} FLOPs  ({per_token:.4e} per token, {'trained' if trained else 'generated'})"
    )


def _load_config(cls, path: str | None, overrides: tuple[str, ...]):
    """A config from a JSON/YAML file plus KEY=VALUE overrides (values parsed as YAML)."""
    import dataclasses
    import json
    from pathlib import Path

    import yaml

    fields: dict = {}
    if path:
        text = Path(path).read_text()
        fields = json.loads(text) if path.endswith(".json") else (yaml.safe_load(text) or {})
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r}: use KEY=VALUE, e.g. learning_rate=1e-6", param_hint="--set")
        fields[key] = yaml.safe_load(value)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise click.BadParameter(f"unknown {cls.__name__} field(s) {unknown}; known: {sorted(known)}")
    for key, value in fields.items():
        if isinstance(value, list):
            fields[key] = tuple(value)
    try:
        return cls(**fields)
    except (TypeError, ValueError) as exc:
        raise click.BadParameter(str(exc)) from exc


def _printer():
    from rich.console import Console

    console = Console(stderr=True)

    def report(metrics: dict, checkpoint: str | None = None) -> None:
        shown = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, (int, float)))
        console.print(f"[bold]report[/bold] {shown}" + (f"  -> {checkpoint}" if checkpoint else ""))

    return report


@click.group()
def train() -> None:
    """Run one trainer outside a sweep: a tiny student's pretraining, teacher traces, SFT, or RL (configs as
    YAML/JSON plus --set KEY=VALUE)."""


_config = click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), default=None)
_set = click.option(
    "--set", "overrides", multiple=True, help="KEY=VALUE override of a config field (repeatable)."
)


@train.command("pretrain")
@_config
@_set
def pretrain_cmd(config_path: str | None, overrides: tuple[str, ...]) -> None:
    """Pretrain a tiny student on task-free synthetic text (PretrainConfig); resumable. Prints its directory."""
    from trainers.config import PretrainConfig
    from trainers.pretrain import pretrain_student

    result = pretrain_student(_load_config(PretrainConfig, config_path, overrides), _printer())
    click.echo(
        f"{result.steps} steps, {result.tokens} tokens, {result.flops:.4e} FLOPs, {result.wall_s:.0f} s -> "
        f"{result.path}  (probes: " + ", ".join(f"{k}={v:.2f}" for k, v in result.probes.items()) + ")"
    )


@train.command("teacher")
@_config
@_set
def teacher_cmd(config_path: str | None, overrides: tuple[str, ...]) -> None:
    """Collect teacher traces (TeacherConfig) into output_dir."""
    from trainers.config import TeacherConfig
    from trainers.teacher import collect_teacher_traces

    traces = collect_teacher_traces(_load_config(TeacherConfig, config_path, overrides), _printer())
    click.echo(f"{len(traces.examples)} examples, {traces.teacher_flops:.4e} teacher FLOPs -> {traces.path}")


@train.command("sft")
@_config
@_set
def sft_cmd(config_path: str | None, overrides: tuple[str, ...]) -> None:
    """Fine-tune a student on traces (SFTConfig); prints the branch points."""
    from trainers.config import SFTConfig
    from trainers.sft import train_sft

    for bp in train_sft(_load_config(SFTConfig, config_path, overrides), _printer()):
        click.echo(f"branch point step {bp.step}: {bp.flops:.4e} FLOPs -> {bp.path}")


@train.command("rl")
@_config
@_set
def rl_cmd(config_path: str | None, overrides: tuple[str, ...]) -> None:
    """Multi-turn GRPO (RLConfig); prints the chosen checkpoint's raw scores."""
    from trainers.config import RLConfig
    from trainers.rl import train_rl

    result = train_rl(_load_config(RLConfig, config_path, overrides), _printer())
    click.echo(
        f"chosen evaluation {result.best_index} ({result.checkpoint}): "
        + ", ".join(f"{k}={v:.4g}" for k, v in result.scores.items())
    )
