"""`agentsweep envs list | play | bench`. Only click and the standard library at import time."""

from __future__ import annotations

import json
import time

import click

from envs.choices import FAMILIES, OBSERVATION_KINDS

__all__ = ["envs"]


@click.group()
def envs() -> None:
    """Environments: MiniWoB++ / WorkArena through BrowserGym, and the text toy env."""


@envs.command("list")
@click.option("--tasks", "show_tasks", is_flag=True, help="List every task of each split.")
def list_cmd(show_tasks: bool) -> None:
    """Named splits (goal counts) and the tasks the scripted policy solves."""
    from rich.console import Console
    from rich.table import Table

    from envs.registry import SPLITS, goals
    from envs.scripted import scripted_tasks

    console = Console()
    table = Table("split", "tasks", "seeds", "goals", "scripted tasks")
    for name, (family, tasks, seeds) in SPLITS.items():
        scripted = set(scripted_tasks(family))
        num_scripted = sum(f"{family}.{t}" in scripted for t in tasks)
        table.add_row(
            name, str(len(tasks)), f"{seeds[0]}-{seeds[-1]}", str(len(goals(name))), str(num_scripted)
        )
    console.print(table)
    if show_tasks:
        for name, (family, tasks, _) in SPLITS.items():
            scripted = set(scripted_tasks(family))
            marked = [f"{t}{'*' if f'{family}.{t}' in scripted else ''}" for t in tasks]
            console.print(f"[bold]{name}[/bold] (* = scripted): " + ", ".join(marked))


@envs.command()
@click.argument("task")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--policy", type=click.Choice(["scripted"]), default="scripted", show_default=True)
@click.option("--max-steps", type=int, default=10, show_default=True)
@click.option(
    "--observation",
    type=click.Choice(OBSERVATION_KINDS),
    default=None,
    help="Page view in the prompt (default: the family's, as `envs.registry.FAMILY_SPECS` declares it).",
)
@click.option(
    "--jsonl", type=click.Path(dir_okay=False), default=None, help="Also write the trajectory here."
)
@click.option("--show-prompts", is_flag=True, help="Print every prompt in full.")
def play(
    task: str,
    seed: int,
    policy: str,
    max_steps: int,
    observation: str | None,
    jsonl: str | None,
    show_prompts: bool,
) -> None:
    """Play one episode of TASK (e.g. miniwob.click-test, toy.login) and print the trajectory."""
    from rich.console import Console

    from envs.jsonl import write_jsonl
    from envs.registry import family_of
    from envs.runner import open_runner
    from envs.scripted import ScriptedPolicy

    console = Console()
    try:
        family = family_of(task)
        options = {"observation": observation} if observation else {}
        with open_runner(family, workers=1, max_steps=max_steps, **options) as runner:
            (traj,) = runner.run_episodes(
                ScriptedPolicy(),
                [(task, seed)],
                temperature=0.0,
                max_new_tokens=64,
                error_log=True,
            )
    except (ValueError, RuntimeError) as e:
        raise click.ClickException(str(e)) from e
    console.print(f"[bold]{traj.task}[/bold] seed {traj.seed}: {traj.goal}")
    for k, step in enumerate(traj.steps):
        if show_prompts:
            for m in step.prompt.messages:
                console.print(f"{m['role']}: {m['content']}", markup=False, style="dim")
        console.print(
            f"step {k}: {step.completion.text!r} -> {step.action} reward={step.reward:g}"
            + (f" error={step.action_error!r}" if step.action_error else ""),
            markup=False,
        )
    status = "success" if traj.success else ("ENV ERROR " + traj.env_error if traj.env_error else "failure")
    console.print(f"{status}; steps={traj.num_steps} wall={traj.wall_s:.2f}s")
    if jsonl:
        write_jsonl([traj], jsonl)


@envs.command()
@click.option("--family", type=click.Choice(FAMILIES), default="miniwob", show_default=True)
@click.option(
    "--tasks",
    default="click-test,click-test-2,enter-text,click-link,login-user",
    show_default=True,
    help="Comma-separated task names.",
)
@click.option("--seeds", type=int, default=4, show_default=True, help="Seeds 0..N-1 per task.")
@click.option("--workers", type=int, default=2, show_default=True)
@click.option("--episodes-per-worker", type=int, default=4, show_default=True)
def bench(family: str, tasks: str, seeds: int, workers: int, episodes_per_worker: int) -> None:
    """Episodes per minute of the worker pool with the scripted policy (see benchmarks/bench_envs.py for the
    side-by-side comparison with BrowserGym's default usage)."""
    from rich.console import Console

    from envs.runner import open_runner
    from envs.scripted import ScriptedPolicy

    goals = [(f"{family}.{t.strip()}", s) for t in tasks.split(",") if t.strip() for s in range(seeds)]
    try:
        t0 = time.monotonic()
        with open_runner(
            family, workers=workers, max_steps=10, episodes_per_worker=episodes_per_worker
        ) as runner:
            start_s = time.monotonic() - t0
            t1 = time.monotonic()
            trajs = runner.run_episodes(
                ScriptedPolicy(), goals, temperature=0.0, max_new_tokens=64, error_log=True
            )
            run_s = time.monotonic() - t1
    except (ValueError, RuntimeError) as e:
        raise click.ClickException(str(e)) from e
    result = {
        "family": family,
        "workers": workers,
        "episodes": len(trajs),
        "start_s": round(start_s, 2),
        "run_s": round(run_s, 2),
        "episodes_per_min": round(60 * len(trajs) / run_s, 1),
        "success": round(sum(t.success for t in trajs) / len(trajs), 3),
        "env_error_rate": round(sum(bool(t.env_error) for t in trajs) / len(trajs), 4),
        "env_errors_retried": runner.num_env_errors,
    }
    Console().print_json(json.dumps(result))
