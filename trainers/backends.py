"""Generation backends: anything with `generate(prompts, *, temperature, max_new_tokens) -> list[Completion]`.

- `HFPolicy`: transformers `generate` on the training model (CPU default, any torch device); returns token ids
  and log-probabilities, counts FLOPs of every prompt and generated token.
- `OpenAIPolicy`: any OpenAI-compatible chat endpoint (a vLLM server on a GPU node): bounded concurrency,
  retries with exponential backoff and jitter, timeouts, token counts from the server's `usage`. The API key goes
  over `https://` or to a loopback address only (unless `allow_key_over_http`), and redirects are never followed,
  so the key never reaches an address other than `base_url`.
- `VLLMPolicy`: an in-process vLLM engine on GPU (the `gpu` extra), weights pushed after each RL update.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from envs.protocol import Completion, Prompt
from trainers.common import encode_prompt
from trainers.flops import FlopsCounter

__all__ = ["HFPolicy", "OpenAIPolicy", "VLLMPolicy", "EndpointError"]

logger = logging.getLogger(__name__)


class HFPolicy:
    """Batched sampling from a transformers causal LM with the student's chat template.

    Args:
        model: a causal LM (its current weights are used at each call: no sync needed).
        tokenizer: its tokenizer (left padding is set for generation).
        max_prompt_tokens: prompts are cut from the left to this length.
        counter: a FlopsCounter; every prompt and generated token is counted as evaluated (no backward).
        micro_batch_size: prompts per `generate` call.
    """

    def __init__(
        self,
        model,
        tokenizer,
        *,
        max_prompt_tokens: int = 2048,
        counter: FlopsCounter | None = None,
        micro_batch_size: int = 64,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_prompt_tokens = max_prompt_tokens
        self.counter = counter
        self.micro_batch_size = micro_batch_size

    def generate(
        self, prompts: Sequence[Prompt], *, temperature: float, max_new_tokens: int
    ) -> list[Completion]:
        out: list[Completion] = []
        for i in range(0, len(prompts), self.micro_batch_size):
            out.extend(self._generate(prompts[i : i + self.micro_batch_size], temperature, max_new_tokens))
        return out

    def _generate(
        self, prompts: Sequence[Prompt], temperature: float, max_new_tokens: int
    ) -> list[Completion]:
        import torch

        tok = self.tokenizer
        ids = [encode_prompt(tok, p.messages)[-self.max_prompt_tokens :] for p in prompts]
        t_max = max(map(len, ids))
        device = next(self.model.parameters()).device
        input_ids = torch.full((len(ids), t_max), tok.pad_token_id, dtype=torch.long)
        attn = torch.zeros_like(input_ids)
        for i, row in enumerate(ids):  # left padding
            input_ids[i, t_max - len(row) :] = torch.tensor(row)
            attn[i, t_max - len(row) :] = 1
        sample = temperature > 0
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            res = self.model.generate(
                input_ids=input_ids.to(device),
                attention_mask=attn.to(device),
                max_new_tokens=max_new_tokens,
                do_sample=sample,
                temperature=temperature if sample else None,
                top_k=0 if sample else None,
                top_p=1.0 if sample else None,
                pad_token_id=tok.pad_token_id,
                eos_token_id=tok.eos_token_id,
                return_dict_in_generate=True,
                output_logits=True,
            )
        self.model.train(was_training)
        new = res.sequences[:, t_max:].cpu()  # (B, T_new)
        logits = torch.stack(res.logits, dim=1).float().cpu()  # (B, T_new, V)
        if sample and temperature != 1.0:
            logits = logits / temperature
        lps = torch.log_softmax(logits, dim=-1).gather(-1, new[:, :, None]).squeeze(-1)  # (B, T_new)
        completions = []
        for i, row in enumerate(ids):
            toks = new[i].tolist()
            n = toks.index(tok.eos_token_id) + 1 if tok.eos_token_id in toks else len(toks)
            toks = toks[:n]
            text = tok.decode(toks, skip_special_tokens=True)
            completions.append(
                Completion(
                    text=text,
                    num_prompt_tokens=len(row),
                    num_completion_tokens=n,
                    token_ids=tuple(toks),
                    logprobs=tuple(float(x) for x in lps[i, :n]),
                )
            )
            if self.counter is not None:
                self.counter.add(len(row) + n, len(row) + n, trained=False)
        return completions


class EndpointError(RuntimeError):
    """The endpoint kept failing after all retries, rejected the request, or redirected it."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are not followed (urllib would resend the Authorization header to the new address)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # urllib then raises the 3xx as an HTTPError


def _is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


class OpenAIPolicy:
    """An OpenAI-compatible chat-completions endpoint (vLLM's `vllm serve`, TGI, a hosted API).

    Args:
        base_url: e.g. `http://gpu-node:8000/v1`.
        model: the served model name.
        api_key_env: name of the environment variable that holds the key (empty/unset: no auth header).
        allow_key_over_http: send the key over plain `http://` to a host that is not loopback (off: refused,
            as anyone on the network path can read it).
        concurrency: requests in flight at once.
        timeout_s: per-request timeout.
        max_retries: retries on connection errors, timeouts, 429 and 5xx, with exponential backoff and jitter.
        backoff_s: first backoff; doubles per retry, capped at 30 s.
        seed: seeds the jitter and is passed to the server as each request's `seed` (plus the prompt index).
        counter: a FlopsCounter at the teacher's size; counts the server's prompt + completion tokens.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        allow_key_over_http: bool = False,
        concurrency: int = 8,
        timeout_s: float = 120.0,
        max_retries: int = 5,
        backoff_s: float = 1.0,
        seed: int = 0,
        counter: FlopsCounter | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency={concurrency} must be >= 1")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.api_key_env = api_key_env
        self.allow_key_over_http = allow_key_over_http
        self._headers()  # refuse an unsafe key now rather than at the first request
        self._opener = urllib.request.build_opener(_NoRedirect)
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.seed = seed
        self.counter = counter
        self._rng = np.random.default_rng(seed)
        self._calls = 0
        self.num_requests = 0
        self.num_retries = 0

    def generate(
        self, prompts: Sequence[Prompt], *, temperature: float, max_new_tokens: int
    ) -> list[Completion]:
        base = self._calls
        self._calls += len(prompts)
        jitter = self._rng.random((len(prompts), self.max_retries + 1))
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = [
                pool.submit(self._one, p, temperature, max_new_tokens, self.seed + base + i, jitter[i])
                for i, p in enumerate(prompts)
            ]
            return [f.result() for f in futures]

    def _one(self, prompt: Prompt, temperature: float, max_new_tokens: int, seed: int, jitter) -> Completion:
        body = json.dumps(
            {
                "model": self.model,
                "messages": list(prompt.messages),
                "temperature": temperature,
                "max_tokens": max_new_tokens,
                "seed": seed,
            }
        ).encode()
        headers = self._headers()
        last = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                self.num_retries += 1
                time.sleep(min(30.0, self.backoff_s * 2 ** (attempt - 1)) * (0.5 + jitter[attempt]))
            self.num_requests += 1
            req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
            try:
                with self._opener.open(req, timeout=self.timeout_s) as resp:
                    data = json.loads(resp.read())
                return self._parse(data)
            except urllib.error.HTTPError as exc:
                if 300 <= exc.code < 400:
                    raise EndpointError(
                        f"{self.url} redirected the request (HTTP {exc.code}) to {exc.headers.get('Location')!r}; "
                        "redirects are not followed (the API key would go along): set base_url to the final address"
                    ) from exc
                last = f"HTTP {exc.code}: {exc.read()[:200]!r}"
                if exc.code != 429 and exc.code < 500:
                    raise EndpointError(
                        f"{self.url} rejected the request ({last}); check model={self.model!r}"
                    ) from exc
            except (urllib.error.URLError, TimeoutError, ConnectionError, json.JSONDecodeError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            logger.debug("request to %s failed (attempt %d): %s", self.url, attempt + 1, last)
        raise EndpointError(
            f"{self.url} failed {self.max_retries + 1} times (last: {last}); check the server or raise max_retries"
        )

    def _headers(self) -> dict[str, str]:
        """Request headers, with the key from `api_key_env` when set and the URL is safe to send it to."""
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env, "") if self.api_key_env else ""
        if not key:
            return headers
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme != "https" and not _is_loopback(parts.hostname) and not self.allow_key_over_http:
            raise ValueError(
                f"refusing to send the API key in ${self.api_key_env} over plain {parts.scheme}:// to "
                f"{parts.hostname}: use an https:// base_url or a tunnel to 127.0.0.1, or, on a network you trust, "
                "set allow_key_over_http=True (TeacherConfig.allow_key_over_http); api_key_env='' sends no key"
            )
        headers["Authorization"] = f"Bearer {key}"
        return headers

    def _parse(self, data: dict[str, Any]) -> Completion:
        text = data["choices"][0]["message"].get("content") or ""
        usage = data.get("usage") or {}
        n_prompt, n_comp = int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
        if self.counter is not None:
            self.counter.add(n_prompt + n_comp, n_prompt + n_comp, trained=False)
        return Completion(text=text, num_prompt_tokens=n_prompt, num_completion_tokens=n_comp)


class VLLMPolicy:
    """Generation with an in-process vLLM engine (GPU; `pip install agentsweep[gpu]`).

    Args:
        model_dir: a saved model directory (the branch point) the engine starts from.
        tokenizer: the student's tokenizer (chat template).
        counter: a FlopsCounter; counts prompt + generated tokens.
        gpu_memory_utilization: share of GPU memory vLLM may take (not a hard cap: see vLLM's docs).
        seed: engine seed.
    """

    def __init__(
        self,
        model_dir: str,
        tokenizer,
        *,
        counter: FlopsCounter | None = None,
        gpu_memory_utilization: float = 0.3,
        max_model_len: int = 4096,
        seed: int = 0,
    ) -> None:
        try:
            from vllm import LLM
        except ImportError as exc:
            raise ImportError("backend='vllm' needs the gpu extra: pip install 'agentsweep[gpu]'") from exc
        self.tokenizer = tokenizer
        self.counter = counter
        self.llm = LLM(
            model=str(model_dir),
            gpu_memory_utilization=gpu_memory_utilization,
            seed=seed,
            max_model_len=max_model_len,
            logprobs_mode="processed_logprobs",
        )
        self.num_tokens = 0
        self.gen_s = 0.0

    def push_weights(self, model) -> None:
        """Load the training model's current weights into the engine (after each RL update)."""
        engine_model = self.llm.llm_engine.model_executor.driver_worker.model_runner.model
        engine_model.load_weights((name, p.detach()) for name, p in model.state_dict().items())
        self.llm.reset_prefix_cache()

    def generate(
        self, prompts: Sequence[Prompt], *, temperature: float, max_new_tokens: int
    ) -> list[Completion]:
        from vllm import SamplingParams, TokensPrompt

        ids = [encode_prompt(self.tokenizer, p.messages) for p in prompts]
        params = SamplingParams(temperature=temperature, max_tokens=max_new_tokens, logprobs=0)
        t0 = time.perf_counter()
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=i) for i in ids], params, use_tqdm=False)
        self.gen_s += time.perf_counter() - t0
        completions = []
        for row, out in zip(ids, outs, strict=True):
            o = out.outputs[0]
            toks = tuple(o.token_ids)
            lps = tuple(float(d[t].logprob) for d, t in zip(o.logprobs or [], toks, strict=False))
            completions.append(
                Completion(
                    text=o.text,
                    num_prompt_tokens=len(row),
                    num_completion_tokens=len(toks),
                    token_ids=toks,
                    logprobs=lps or None,
                )
            )
            self.num_tokens += len(toks)
            if self.counter is not None:
                self.counter.add(len(row) + len(toks), len(row) + len(toks), trained=False)
        return completions
