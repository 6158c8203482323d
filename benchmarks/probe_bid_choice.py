"""Does a student pick the right bid on a toy page? Teacher-forced, no sampling: every page bid is scored as the
continuation of the scripted reasoning (`the target is "X"\\nclick("<bid>")`) and the likeliest one is taken.

Prints, per student (a named student or a model directory), the share of held-out `toy.click-button` pages where
the likeliest bid is the target's (chance 1/(1 + distractors)) and where it is the page's first element.

    AGENTSWEEP_CACHE=/tmp/agc .venv/bin/python benchmarks/probe_bid_choice.py smollm2-135m /tmp/exp/smolA/sft/branch_step000004
"""

from __future__ import annotations

import argparse


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("students", nargs="+", help="named students or model directories")
    ap.add_argument("--goals", type=int, default=60, help="held-out pages (seeds 0, 1, ...)")
    ap.add_argument("--distractors", type=int, default=3)
    ap.add_argument("--bids", default="random", help="toy bids: random or stable")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import numpy as np
    import torch

    from envs.prompts import build_prompt
    from envs.scripted import solve_toy
    from envs.toy import ToyEnv
    from trainers.models import load_student

    torch.set_num_threads(args.threads)
    for student in args.students:
        model, tok = load_student(student)
        model.eval()
        hits = first = 0
        for seed in range(args.goals):
            obs = ToyEnv(num_distractors=args.distractors, bids=args.bids).reset("toy.click-button", seed)
            prompt = build_prompt(obs, family="toy", history=[], last_error="", error_log=False)
            reasoning, action = solve_toy(prompt.observation)
            head = tok.apply_chat_template(list(prompt.messages), tokenize=False, add_generation_prompt=True)
            head += reasoning + "\n"
            n_head = len(tok(head)["input_ids"])
            bids = [e["bid"] for e in obs["elements"]]
            scores = []
            for bid in bids:  # sum of the action's token log-probabilities (multi-token bids included)
                ids = tok(head + f'click("{bid}")', return_tensors="pt")["input_ids"]
                with torch.no_grad():
                    lp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), dim=-1)
                tgt = ids[0, 1:]
                scores.append(float(lp[torch.arange(len(tgt)), tgt][n_head - 1 :].sum()))
            pick = bids[int(np.argmax(scores))]
            hits += pick == action.split('"')[1]
            first += pick == bids[0]
        print(
            f"{student}: likeliest bid is the target's {hits / args.goals:.3f}, the first element's "
            f"{first / args.goals:.3f} ({args.goals} pages, chance {1 / (1 + args.distractors):.3f})",
            flush=True,
        )


if __name__ == "__main__":
    main()
