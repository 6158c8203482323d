"""envs: BrowserGym MiniWoB++ / WorkArena and a fast text toy env behind one episode protocol.

Never imports `trainers`. BrowserGym and playwright are imported lazily (only inside the worker processes that
host browsers), so `import envs` and the toy env stay light.

Entry points: `envs.registry.goals(split)`, `envs.runner.open_runner(family, workers=N)`,
`envs.scripted.ScriptedPolicy`, `envs.actions.parse_action`; the contract is `envs.protocol`.
"""

from envs.protocol import Completion, Message, Policy, Prompt, Step, Trajectory, episode_return

__all__ = ["Completion", "Message", "Policy", "Prompt", "Step", "Trajectory", "episode_return"]
