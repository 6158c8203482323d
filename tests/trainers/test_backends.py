"""Generation backends: HF generate (token ids, log-probs, FLOPs), an OpenAI-compatible endpoint served by a
tiny local HTTP server (retries, backoff, timeouts, bounded concurrency, token counts), vLLM on GPU."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from envs.protocol import Prompt
from trainers.backends import EndpointError, HFPolicy, OpenAIPolicy
from trainers.common import collate, encode_example, token_logprobs
from trainers.flops import FlopsCounter, flops_per_token

PROMPTS = [
    Prompt(messages=({"role": "user", "content": f"Goal: answer {c}."},), task="t", seed=i)
    for i, c in enumerate("abcd")
]


def test_hf_policy_logprobs_match_the_training_forward(tiny):
    model, tok = tiny
    counter = FlopsCounter(model)
    policy = HFPolicy(model, tok, counter=counter)
    torch.manual_seed(0)
    outs = policy.generate(PROMPTS, temperature=0.7, max_new_tokens=6)
    assert len(outs) == 4 and all(0 < o.num_completion_tokens <= 6 for o in outs)
    n_tokens = sum(o.num_prompt_tokens + o.num_completion_tokens for o in outs)
    assert counter.tokens == n_tokens
    expected = sum(
        (o.num_prompt_tokens + o.num_completion_tokens)
        * flops_per_token(model, o.num_prompt_tokens + o.num_completion_tokens, False)
        for o in outs
    )
    assert counter.flops == pytest.approx(expected)
    # the sampler's log-probs are those the trainer recomputes at the same temperature
    for p, o in zip(PROMPTS, outs, strict=True):
        enc = encode_example(tok, p.messages, o.token_ids, max_seq_len=256, add_eos=False)
        lp = token_logprobs(model, *collate([enc], tok.pad_token_id)[:2], temperature=0.7)
        torch.testing.assert_close(lp[0, -len(o.token_ids) :], torch.tensor(o.logprobs), atol=1e-4, rtol=1e-4)


def test_hf_policy_is_seeded(tiny):
    model, tok = tiny
    policy = HFPolicy(model, tok)
    torch.manual_seed(5)
    a = [o.text for o in policy.generate(PROMPTS, temperature=1.0, max_new_tokens=5)]
    torch.manual_seed(5)
    b = [o.text for o in policy.generate(PROMPTS, temperature=1.0, max_new_tokens=5)]
    assert a == b
    greedy = [o.token_ids for o in policy.generate(PROMPTS[:1] * 2, temperature=0.0, max_new_tokens=5)]
    assert greedy[0] == greedy[1]


class _Local:
    """An HTTP server on 127.0.0.1 (a free port) in a daemon thread; `url` is its `/v1` base URL."""

    def _serve(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class _Server(_Local):
    """A chat-completions endpoint: fails the first `fail` requests with `status`, sleeps `delay_s` per request."""

    def __init__(self, *, fail: int = 0, status: int = 500, delay_s: float = 0.0):
        self.fail, self.status, self.delay_s = fail, status, delay_s
        self.lock = threading.Lock()
        self.count = self.active = self.max_active = 0
        self.bodies: list[dict] = []
        self.auth: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.count += 1
                    n = server.count
                    server.active += 1
                    server.max_active = max(server.max_active, server.active)
                    server.bodies.append(body)
                    server.auth.append(self.headers.get("Authorization"))
                time.sleep(server.delay_s)
                # the request stops counting as active before its answer leaves: once the client has the
                # answer it may send the next request at once, before this thread would run a `finally`
                with server.lock:
                    server.active -= 1
                if n <= server.fail:
                    self.send_response(server.status)
                    self.end_headers()
                    self.wfile.write(b'{"error": "busy"}')
                    return
                content = body["messages"][-1]["content"].upper()
                data = {
                    "choices": [{"message": {"role": "assistant", "content": content}}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 3},
                }
                raw = json.dumps(data).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self._serve(Handler)


@pytest.fixture
def server(request):
    s = _Server(**getattr(request, "param", {}))
    yield s
    s.close()


@pytest.mark.parametrize("server", [{"delay_s": 0.05}], indirect=True)
def test_openai_policy_bounded_concurrency_and_token_counts(server, monkeypatch):
    monkeypatch.setenv("TEST_KEY", "sk-test")
    counter = FlopsCounter("llama-3.3-70b")
    policy = OpenAIPolicy(
        server.url, "teacher", api_key_env="TEST_KEY", concurrency=2, counter=counter, seed=3
    )
    outs = policy.generate(PROMPTS * 2, temperature=0.5, max_new_tokens=32)
    assert [o.text for o in outs] == [p.messages[-1]["content"].upper() for p in PROMPTS * 2]  # order kept
    assert all((o.num_prompt_tokens, o.num_completion_tokens) == (10, 3) for o in outs)
    assert server.max_active <= 2 and server.count == 8
    assert counter.tokens == 8 * 13 and counter.flops == pytest.approx(
        8 * 13 * flops_per_token("llama-3.3-70b", 13, False)
    )
    assert server.auth == ["Bearer sk-test"] * 8
    assert {b["max_tokens"] for b in server.bodies} == {32} and sorted(
        b["seed"] for b in server.bodies
    ) == list(range(3, 11))


@pytest.mark.parametrize("server", [{"fail": 2, "status": 503}], indirect=True)
def test_openai_policy_retries_5xx_with_backoff(server):
    policy = OpenAIPolicy(server.url, "teacher", concurrency=1, max_retries=3, backoff_s=0.01)
    out = policy.generate(PROMPTS[:1], temperature=0.0, max_new_tokens=8)
    assert out[0].text == "GOAL: ANSWER A." and server.count == 3 and policy.num_retries == 2


@pytest.mark.parametrize("server", [{"fail": 100, "status": 429}], indirect=True)
def test_openai_policy_gives_up_after_max_retries(server):
    policy = OpenAIPolicy(server.url, "teacher", concurrency=1, max_retries=2, backoff_s=0.01)
    with pytest.raises(EndpointError, match="failed 3 times"):
        policy.generate(PROMPTS[:1], temperature=0.0, max_new_tokens=8)
    assert server.count == 3


@pytest.mark.parametrize("server", [{"fail": 100, "status": 400}], indirect=True)
def test_openai_policy_does_not_retry_client_errors(server):
    with pytest.raises(EndpointError, match="rejected"):
        OpenAIPolicy(server.url, "teacher", max_retries=5, backoff_s=0.01).generate(
            PROMPTS[:1], temperature=0.0, max_new_tokens=8
        )
    assert server.count == 1


@pytest.mark.parametrize("server", [{"delay_s": 0.5}], indirect=True)
def test_openai_policy_times_out(server):
    policy = OpenAIPolicy(server.url, "teacher", timeout_s=0.1, max_retries=1, backoff_s=0.01)
    with pytest.raises(EndpointError, match="Timeout|timed out"):
        policy.generate(PROMPTS[:1], temperature=0.0, max_new_tokens=8)


class _Redirect(_Local):
    """Answers every request with `status` and a Location on another host name and port (`target`), and records
    the Authorization header of every request it gets, whatever the method."""

    def __init__(self, status: int, target: str):
        self.auth: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _any(self):
                server.auth.append(self.headers.get("Authorization"))
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                self.send_response(status)
                self.send_header("Location", target)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = do_HEAD = _any

        self._serve(Handler)


@pytest.mark.parametrize("status", [302, 307])
def test_openai_policy_never_forwards_the_key_on_a_redirect(monkeypatch, status):
    monkeypatch.setenv("TEST_KEY", "sk-secret")
    sink = _Redirect(
        404, "/"
    )  # the redirect's target, on another port and host name: it records what it gets
    sink_port = sink.httpd.server_address[1]
    first = _Redirect(status, f"http://localhost:{sink_port}/v1/chat/completions")
    try:
        policy = OpenAIPolicy(first.url, "teacher", api_key_env="TEST_KEY", max_retries=0)
        with pytest.raises(
            EndpointError, match=f"redirected the request \\(HTTP {status}\\).*localhost:{sink_port}"
        ):
            policy.generate(PROMPTS[:1], temperature=0.0, max_new_tokens=8)
        assert first.auth == ["Bearer sk-secret"]  # the loopback endpoint itself gets the key
        assert sink.auth == []  # the address it redirected to never sees the request, let alone the key
    finally:
        first.close()
        sink.close()


def test_openai_policy_refuses_a_key_over_plain_http_to_another_host(monkeypatch):
    monkeypatch.setenv("TEST_KEY", "sk-secret")
    with pytest.raises(ValueError, match="allow_key_over_http") as err:
        OpenAIPolicy("http://gpu-node.example:8000/v1", "teacher", api_key_env="TEST_KEY")
    assert "sk-secret" not in str(err.value) and "gpu-node.example" in str(err.value)
    # what stays allowed: https, loopback hosts, no key, or the user's explicit opt-in
    OpenAIPolicy("https://gpu-node.example/v1", "teacher", api_key_env="TEST_KEY")
    for host in ("127.0.0.1", "localhost", "[::1]", "127.0.0.2"):
        OpenAIPolicy(f"http://{host}:8000/v1", "teacher", api_key_env="TEST_KEY")
    OpenAIPolicy(
        "http://gpu-node.example:8000/v1", "teacher", api_key_env="TEST_KEY", allow_key_over_http=True
    )
    OpenAIPolicy("http://gpu-node.example:8000/v1", "teacher", api_key_env="NO_SUCH_KEY_VAR")
    # the teacher's config carries the opt-in to the policy
    from trainers.config import TeacherConfig
    from trainers.teacher import _teacher_policy

    cfg = TeacherConfig(
        teacher="openai", base_url="http://gpu-node.example:8000/v1", model="m", api_key_env="TEST_KEY"
    )
    with pytest.raises(ValueError, match="TeacherConfig.allow_key_over_http"):
        _teacher_policy(cfg, None)
    assert _teacher_policy(dataclasses.replace(cfg, allow_key_over_http=True), None).allow_key_over_http


@pytest.mark.gpu
def test_vllm_policy_generates_and_takes_weight_updates(tmp_path):
    from trainers.backends import VLLMPolicy
    from trainers.models import load_student, student_dir

    model, tok = load_student("smollm2-135m", device="cuda")
    policy = VLLMPolicy(str(student_dir("smollm2-135m")), tok, counter=FlopsCounter(model))
    outs = policy.generate(PROMPTS, temperature=0.0, max_new_tokens=8)
    assert all(o.num_completion_tokens > 0 and o.logprobs for o in outs)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(0.0)
    policy.push_weights(model)
    assert [o.text for o in policy.generate(PROMPTS, temperature=0.0, max_new_tokens=8)] != [
        o.text for o in outs
    ]
