"""envs: BrowserGym MiniWoB++ / WorkArena and a fast text toy env behind one episode protocol.

Never imports `trainers`. BrowserGym and playwright are imported lazily (only inside the worker processes that
host browsers), so `import envs` and the toy env stay light.

Entry points: `envs.registry.goals(split)`, `envs.runner.open_runner(family, workers=N)`,
`envs.scripted.ScriptedPolicy`, `envs.actions.parse_action`, `envs.toy.sample_corpus`; the contract is
`envs.protocol`. Modules: `choices` (the env family and observation kind, declared once), `registry` (one entry per
family: host, settings, observations, splits), `hosts` (the host Protocol and factory), `messages` and `worker`
(runner <-> worker processes), `settings` (runner options), `runner` (scheduling, retries), `jsonl` (trajectory
files), `prompts`, `actions`, `toy`, `browser`, `workarena`, `scripted`, `miniwob_scripts`, `cli`.
"""

from envs.choices import FAMILIES, OBSERVATION_KINDS, Family, ObservationKind
from envs.protocol import Completion, Message, Policy, Prompt, Step, Trajectory

__all__ = [
    "FAMILIES",
    "OBSERVATION_KINDS",
    "Family",
    "ObservationKind",
    "Completion",
    "Message",
    "Policy",
    "Prompt",
    "Step",
    "Trajectory",
]
