"""MiniWoB++ through the worker pool (marker `browser`: needs Debian chromium and the miniwob wheel's HTML)."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import psutil
import pytest

from envs.browser import _chromium_binary
from envs.miniwob_scripts import SOLVERS
from envs.protocol import Completion
from envs.registry import MINIWOB_TRAIN_TASKS
from envs.runner import open_runner
from envs.scripted import ScriptedPolicy
from trainers.returns import episode_return

pytestmark = pytest.mark.browser

try:
    _chromium_binary()
except RuntimeError as e:  # pragma: no cover - depends on the machine
    pytestmark = [pytest.mark.browser, pytest.mark.skip(reason=str(e))]

SCRIPTED_TRAIN = [t for t in SOLVERS if t in MINIWOB_TRAIN_TASKS]


@pytest.fixture(scope="module")
def runner():
    with open_runner("miniwob", workers=2, max_steps=8, episodes_per_worker=6) as r:
        yield r


def _play(runner, policy, goals, error_log=True):
    return runner.run_episodes(policy, goals, temperature=0.0, max_new_tokens=64, error_log=error_log)


def test_scripted_policies_solve_at_least_20_training_tasks(runner) -> None:
    assert len(SCRIPTED_TRAIN) >= 20
    goals = [(f"miniwob.{t}", seed) for t in SCRIPTED_TRAIN for seed in (3, 4)]
    trajs = _play(runner, ScriptedPolicy(), goals)
    assert all(t.env_error == "" for t in trajs), [t.env_error for t in trajs if t.env_error]
    rate = sum(t.success for t in trajs) / len(trajs)
    failed = sorted({t.task for t in trajs if not t.success})
    assert rate >= 0.9, failed
    solved = {t.task for t in trajs} - set(failed)
    assert len(solved) >= 20, failed
    for t in trajs:
        if t.success:
            assert episode_return(t.success, t.num_steps, 0.99) == pytest.approx(0.99**t.num_steps)


class ScriptOf:
    """Returns fixed completions for the first rounds, then the scripted policy's."""

    def __init__(self, first: list[str]) -> None:
        self.first, self.calls = first, 0

    def generate(self, prompts, *, temperature, max_new_tokens):
        self.calls += 1
        if self.calls <= len(self.first):
            return [Completion(text=self.first[self.calls - 1]) for _ in prompts]
        return ScriptedPolicy().generate(prompts, temperature=temperature, max_new_tokens=max_new_tokens)


def test_malicious_completions_execute_nothing_and_are_parse_errors(runner, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    attacks = [
        f'click("13"); import os; os.system("touch {marker}")',
        f'__import__("os").system("touch {marker}")',
        f'import os\nos.system("touch {marker}")',
    ]
    trajs = _play(runner, ScriptOf(attacks), [("miniwob.click-test-2", 0)])
    (t,) = trajs
    assert not marker.exists()
    assert [s.action for s in t.steps[:3]] == [None, None, None]
    assert all(s.action_error.startswith("parse error") for s in t.steps[:3])
    assert "Last action error: parse error" in t.steps[1].prompt.messages[1]["content"]
    assert t.success and t.num_steps == 4  # the episode went on after the parse errors


def _chromium_children(pid: int) -> list[psutil.Process]:
    found = []
    for p in psutil.Process(pid).children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):  # renderers come and go while we look
            if "chrom" in p.name():
                found.append(p)
    return found


def _main_chromium_pids(runner) -> set[int]:
    """The browser processes (not their renderer/zygote helpers, which chromium starts and ends at will)."""
    main = set()
    for p in (p for pid in runner.worker_pids for p in _chromium_children(pid)):
        with contextlib.suppress(psutil.NoSuchProcess):
            if "chrom" not in psutil.Process(p.ppid()).name():
                main.add(p.pid)
    return main


def test_one_browser_per_worker_is_kept_across_episodes(runner) -> None:
    before = _main_chromium_pids(runner)
    assert len(before) == 2  # one chromium per worker, no chat window
    trajs = _play(runner, ScriptedPolicy(), [("miniwob.click-test", s) for s in range(6)])
    assert all(t.success for t in trajs)
    assert _main_chromium_pids(runner) == before


def test_killed_browser_is_restarted_and_the_episode_retried_as_env_error(runner) -> None:
    class KillOnce(ScriptOf):
        def generate(self, prompts, *, temperature, max_new_tokens):
            if self.calls == 0:
                victims = [p for pid in runner.worker_pids for p in _chromium_children(pid)]
                assert victims, "no chromium process found under the workers"
                for p in victims:
                    with contextlib.suppress(psutil.NoSuchProcess):
                        p.kill()
            return super().generate(prompts, temperature=temperature, max_new_tokens=max_new_tokens)

    errors_before = runner.num_env_errors
    trajs = _play(runner, KillOnce([]), [("miniwob.click-test", 0), ("miniwob.enter-text", 1)])
    assert runner.num_env_errors > errors_before
    for t in trajs:
        assert t.success and t.env_error == "" and t.attempts == 2


def test_killed_worker_process_is_restarted(runner) -> None:
    class KillWorker(ScriptOf):
        def generate(self, prompts, *, temperature, max_new_tokens):
            if self.calls == 0:
                os.kill(runner.worker_pids[0], signal.SIGKILL)
            return super().generate(prompts, temperature=temperature, max_new_tokens=max_new_tokens)

    old = runner.worker_pids[0]
    trajs = _play(runner, KillWorker([]), [("miniwob.click-test-2", s) for s in range(4)])
    assert runner.worker_pids[0] != old
    assert all(t.success and t.env_error == "" for t in trajs)
    assert max(t.attempts for t in trajs) == 2


def test_html_observation_is_truncated_with_the_cut_stated() -> None:
    with open_runner("miniwob", workers=1, max_steps=1, max_obs_tokens=40) as r:
        (t,) = _play(r, ScriptedPolicy(), [("miniwob.click-tab-2", 0)])
    user = t.steps[0].prompt.messages[1]["content"]
    assert 'bid="' in user and "[... truncated:" in user
    assert "click(bid)" in t.steps[0].prompt.messages[0]["content"]
    assert "Tab #1" in t.steps[0].prompt.observation["compact"]


def test_a_worker_that_cannot_restart_is_dropped_and_the_rest_carry_on(monkeypatch) -> None:
    with open_runner("miniwob", workers=2, max_steps=8, episodes_per_worker=4) as r:

        def broken_restart(self):
            self._kill()
            raise RuntimeError("chromium failed to launch")

        class KillWorker(ScriptOf):
            def __init__(self, victim: int) -> None:
                super().__init__([])
                self.victim = victim

            def generate(self, prompts, *, temperature, max_new_tokens):
                if self.calls == 0:
                    os.kill(r.worker_pids[self.victim], signal.SIGKILL)
                return super().generate(prompts, temperature=temperature, max_new_tokens=max_new_tokens)

        monkeypatch.setattr(type(r._workers[0]), "restart", broken_restart)
        trajs = _play(r, KillWorker(0), [("miniwob.click-test-2", s) for s in range(4)])
        assert all(t.success and t.env_error == "" for t in trajs)  # worker 1 played the retried episodes too
        assert set(r._down) == {0} and "chromium failed to launch" in r._down[0]
        with pytest.raises(RuntimeError, match="all 2 env workers are down"):
            _play(r, KillWorker(1), [("miniwob.click-test-2", s) for s in range(2)])


def _record(trajs):
    return [
        (t.task, t.seed, t.goal, t.success, [(s.action, s.action_error, s.reward) for s in t.steps])
        for t in trajs
    ]


def test_episodes_go_to_the_worker_whose_idle_page_holds_their_task_with_the_same_results() -> None:
    """Without routing, the second call's first goal (click-button) would go to worker 0, which holds click-test.

    Both tasks take one click, so both workers are free in every round."""
    ct, cb = "miniwob.click-test", "miniwob.click-button"
    with open_runner("miniwob", workers=2, max_steps=8, episodes_per_worker=1) as r:
        _play(r, ScriptedPolicy(), [(ct, 0), (cb, 0)])
        assert r.idle_tasks == {0: (ct,), 1: (cb,)}  # least loaded first: worker 0 got click-test
        warm = _play(r, ScriptedPolicy(), [(cb, 1), (ct, 1), (cb, 2), (ct, 2)])
        assert r.idle_tasks == {0: (ct,), 1: (cb,)}  # each task stayed on its page: started in place
    with open_runner("miniwob", workers=2, max_steps=8, episodes_per_worker=1) as r:
        fresh = _play(r, ScriptedPolicy(), [(cb, 1), (ct, 1), (cb, 2), (ct, 2)])
        assert r.idle_tasks == {0: (cb,), 1: (ct,)}
    assert _record(warm) == _record(fresh) and all(t.success for t in warm)
