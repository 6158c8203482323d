"""Issue 16 check of the multi-turn GRPO update on MiniWoB++: does it do what it should on real batches?

1. the update's recomputed log-probabilities of the sampled tokens against the sampler's (prompt rendering,
   truncation, re-tokenisation: they must agree);
2. one update raises the advantage-weighted log-likelihood J of its own batch;
3. repeated updates on the SAME few goals: success on them must rise above the no-update noise band
   (NO_UPDATE=1 gives that band: same goals, rollouts only).

    python benchmarks/study_update_check.py BRANCH_DIR N_GOALS UPDATES LR
    # env: AGG=token|sequence|episode (the loss aggregation, default sequence), TEMP (default 1.0), GAMMA (default 0.9), NO_UPDATE=1,
    #      NEGATIVE_WEIGHT (RLConfig.negative_advantage_weight, default 1), CREDIT_FAILED_STEPS=0 (credit_failed_steps off),
    #      PROBE=K: also play K other goals (never trained on, G rollouts each) every iteration: does training on
    #      the N goals help or hurt goals it never saw (transfer or interference)?
    python benchmarks/study_update_check.py /work/study/sft2000/branch_step000300 8 8 3e-4
"""

import os
import sys
import time

import numpy as np


def main():
    import torch

    torch.set_num_threads(int(os.environ.get("THREADS", "1")))
    from types import SimpleNamespace

    from study_recipe import TASKS, _rl_config, _runner

    from trainers.backends import HFPolicy
    from trainers.common import collate, make_optimizer, seed_everything, token_logprobs
    from trainers.flops import FlopsCounter
    from trainers.grpo import training_batch, update
    from trainers.models import load_student
    from trainers.rl import group_returns, rollout

    branch = sys.argv[1]
    n_goals, iters, lr = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    temp = float(os.environ.get("TEMP", "1.0"))
    args = SimpleNamespace(
        student="tiny-llama",
        tasks=os.environ.get("TASKS", TASKS),
        batch_size=n_goals * 8,
        group_size=8,
        updates=1,
        eval_every=1,
        lr=lr,
        temperature=temp,
        max_new_tokens=32,
        max_steps=6,
        out="/work/diag/out",
        seed=0,
        threads=2,
        loss_aggregation=os.environ.get("AGG", "sequence"),
        gamma=float(os.environ.get("GAMMA", "0.9")),
        negative_advantage_weight=float(os.environ.get("NEGATIVE_WEIGHT", "1.0")),
        credit_failed_steps=os.environ.get("CREDIT_FAILED_STEPS", "1") != "0",
    )
    cfg = _rl_config(args)
    seed_everything(0)
    model, tok = load_student(branch)
    model.train()
    opt = make_optimizer(model, learning_rate=lr)
    counter = FlopsCounter(model)
    policy = HFPolicy(model, tok, max_prompt_tokens=cfg.max_seq_len - cfg.max_new_tokens, micro_batch_size=32)
    runner = _runner(args)
    rng = np.random.default_rng(0)
    tasks = [f"miniwob.{t}" for t in args.tasks.split(",")]
    goals = [(tasks[i % len(tasks)], int(s)) for i, s in enumerate(rng.integers(3, 500, n_goals))]
    n_probe = int(os.environ.get("PROBE", "0"))
    probe = [(tasks[i % len(tasks)], int(s)) for i, s in enumerate(rng.integers(500, 1000, n_probe))]
    probe_hist = []
    print("goals", goals, "aggregation", cfg.loss_aggregation, "lr", lr, "T", temp, flush=True)

    def seq_lp(examples):
        out = []
        with torch.no_grad():
            for k in range(0, len(examples), 16):
                mic = examples[k : k + 16]
                ids, attn, comp = collate(mic, tok.pad_token_id)
                lp = token_logprobs(model, ids, attn, temperature=cfg.temperature)
                for i in range(len(mic)):
                    out.append(lp[i][comp[i].bool()].numpy())
        return out

    hist = []
    try:
        for it in range(iters + 1):
            t0 = time.perf_counter()
            groups = rollout(runner, policy, goals, cfg)
            R = group_returns(groups, cfg.gamma)
            succ = np.array([[t.success for t in row] for row in groups], float)
            hist.append(succ.mean())
            print(
                f"iter {it}: success on these goals {succ.mean():.3f} per goal {succ.mean(1).round(2).tolist()} "
                f"({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
            if probe:
                pg = rollout(runner, policy, probe, cfg)
                ps = np.array([[t.success for t in row] for row in pg], float)
                probe_hist.append(ps.mean())
                print(f"  probe goals (never trained on): success {ps.mean():.3f}", flush=True)
            if it == iters or os.environ.get("NO_UPDATE"):
                continue
            keep, ex, advs, eps = training_batch(groups, R, tok, cfg)
            print(
                f"  {len(advs)} steps: step-advantage sum {sum(advs):+.2f} (pos {sum(a for a in advs if a > 0):.2f}, "
                f"neg {sum(a for a in advs if a < 0):.2f})",
                flush=True,
            )
            samp = [
                np.array(st.completion.logprobs)
                for i, row in enumerate(groups)
                for j, t in enumerate(row)
                if keep[i, j]
                for st in t.steps
                if st.completion.token_ids
            ]
            rec = seq_lp(ex)
            if it == 0:
                d = np.concatenate([r - s for r, s in zip(rec, samp, strict=True)])
                print(
                    f"  recomputed - sampled log-prob per token: mean {d.mean():+.5f}, |max| {np.abs(d).max():.5f}",
                    flush=True,
                )
            a = np.array(advs)
            J0 = float(sum(ai * r.mean() for ai, r in zip(a, rec, strict=True)))
            st = update(
                model, opt, ex, advs, cfg, pad_id=tok.pad_token_id, counter=counter, step=it, episodes=eps
            )
            rec1 = seq_lp(ex)
            J1 = float(sum(ai * r.mean() for ai, r in zip(a, rec1, strict=True)))
            pos = [r1.sum() - r0.sum() for ai, r0, r1 in zip(a, rec, rec1, strict=True) if ai > 0]
            neg = [r1.sum() - r0.sum() for ai, r0, r1 in zip(a, rec, rec1, strict=True) if ai < 0]
            print(
                f"  update: J {J0:.3f} -> {J1:.3f}; seq logp change adv>0 {np.mean(pos):+.3f} adv<0 {np.mean(neg):+.3f}; "
                f"grad_norm {st['grad_norm']:.3f}",
                flush=True,
            )
    finally:
        runner.close()
    print("HIST", " ".join(f"{h:.3f}" for h in hist))
    if probe_hist:
        print("PROBE", " ".join(f"{h:.3f}" for h in probe_hist))


if __name__ == "__main__":
    main()
