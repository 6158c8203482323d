"""Can the tiny Llama learn the toy click-button bid lookup at all? Supervised probe, fresh examples every step.

Trains the in-process tiny Llama (the tests' student) on scripted `toy.click-button` answers, each batch new goals
(no example seen twice), completion-only loss, and prints every 100 steps the teacher-forced accuracy of the bid
token on 200 held-out goals. Chance among the page's bids is 1/(1 + distractors).

    .venv/bin/python benchmarks/probe_tiny_lookup.py --lr 1e-3 --batch 16 --steps 3000
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--distractors", type=int, default=3)
    args = ap.parse_args()

    import numpy as np
    import torch

    from envs.prompts import build_prompt
    from envs.scripted import solve_toy
    from envs.toy import ToyEnv
    from trainers.models import build_tiny_llama

    torch.set_num_threads(1)
    model, tok = build_tiny_llama(seed=0, hidden_size=args.hidden, num_layers=args.layers)

    def example(seed: int) -> tuple[list[int], int, int]:
        """(token ids of prompt + answer, prompt length, position of the bid token)."""
        obs = ToyEnv(num_distractors=args.distractors).reset("toy.click-button", seed)
        prompt = build_prompt(obs, family="toy", history=[], last_error="", error_log=False)
        reasoning, action = solve_toy(prompt.observation)
        text = tok.apply_chat_template(list(prompt.messages), tokenize=False, add_generation_prompt=True)
        ids = tok(text + reasoning + "\n" + action + "<|im_end|>")["input_ids"]
        target = prompt.observation["goal"].split('"')[1]
        bid = next(e["bid"] for e in obs["elements"] if e["text"] == target)
        (bid_id,) = tok(bid)["input_ids"]
        return ids, len(tok(text)["input_ids"]), max(i for i, t in enumerate(ids) if t == bid_id)

    def batchify(exs):
        width = max(len(ids) for ids, _, _ in exs)
        x = torch.full((len(exs), width), tok.pad_token_id)
        labels = torch.full((len(exs), width), -100)
        mask = torch.zeros((len(exs), width), dtype=torch.long)
        for i, (ids, n, _) in enumerate(exs):
            x[i, : len(ids)] = torch.tensor(ids)
            mask[i, : len(ids)] = 1
            labels[i, n : len(ids)] = torch.tensor(ids[n:])
        return x, mask, labels

    held = [example(s) for s in range(200)]
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    seed, t0 = 100_000, time.time()
    for step in range(1, args.steps + 1):
        x, mask, labels = batchify([example(seed + i) for i in range(args.batch)])
        seed += args.batch
        loss = model(input_ids=x, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        if step % 100 == 0:
            with torch.no_grad():
                x, mask, _ = batchify(held)
                logits = model(input_ids=x, attention_mask=mask).logits
            acc = np.mean(
                [int(logits[i, pos - 1].argmax()) == ids[pos] for i, (ids, _, pos) in enumerate(held)]
            )
            print(
                f"step {step} loss {loss.item():.3f} held-out bid accuracy {acc:.3f} ({time.time() - t0:.0f} s)",
                flush=True,
            )


if __name__ == "__main__":
    main()
