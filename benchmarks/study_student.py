"""Issue 16 study recipe, stage 1: a CPU-trainable student with a generic pretraining stage of its own.

The tiny Llama of `trainers.models` cannot learn MiniWoB++'s label -> bid lookup from SFT alone (RESULTS.md,
trainers). This script builds the student the study recipe uses instead and pretrains it on synthetic text that
teaches in-context lookup and copying, generated here from random strings and generic English words (Python's
own docstrings); nothing in it comes from MiniWoB++, the toy env or their prompts:

- record tables (`12: foo`, `[7] entry "Bar"`, `baz = 31`, ... in several layouts, ids 0-299), then queries that
  name a record's key and answer its id (the key copied first, then the id, as a reasoning line would);
- copy tasks: a quoted random string (or a run of words) repeated after a cue, i.e. induction sequences.

The tokenizer (`build_study_tokenizer`) makes the lookup tokenisable: whitespace and punctuation are separate
pre-tokens, every number 0-299 is one token, and letter runs are split by a BPE trained on generic English, so a
word is the same token sequence wherever it appears (in the goal, the page, the reasoning), unlike the library's
byte-level BPE where `"Proin"` and ` Proin` differ. The model directory it saves loads with
`trainers.models.load_student(dir)`, so `train_sft`/`train_rl` take it as `student=`.

    /work/wt/venv-run python benchmarks/study_student.py --out /tmp/study/student --steps 1500

Resumable: `<out>/pretrain_resume.pt` is written every `--save-every` steps; a rerun continues from it.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import time
from pathlib import Path

NUM_IDS = 300
_SPLIT = r"\d+|[A-Za-z]+|\s|[^\sA-Za-z\d]+"
SPECIALS = ["<pad>", "<|im_start|>", "<|im_end|>"]


def generic_words(limit: int = 6000) -> list[str]:
    """English words from the docstrings of a fixed list of stdlib modules (deterministic, task-free)."""
    import importlib
    import inspect

    mods = [
        "os",
        "re",
        "json",
        "collections",
        "itertools",
        "functools",
        "argparse",
        "logging",
        "pathlib",
        "string",
        "textwrap",
        "datetime",
        "random",
        "statistics",
        "subprocess",
        "shutil",
        "csv",
        "email",
        "http.client",
        "urllib.parse",
        "unittest",
        "typing",
        "dataclasses",
        "inspect",
        "threading",
        "socket",
        "zipfile",
        "tarfile",
        "calendar",
        "decimal",
        "fractions",
        "heapq",
        "bisect",
        "difflib",
        "pprint",
    ]
    text = []
    for name in mods:
        mod = importlib.import_module(name)
        text.append(inspect.getdoc(mod) or "")
        for attr in sorted(dir(mod)):
            obj = getattr(mod, attr, None)
            if callable(obj) and not attr.startswith("_"):
                text.append(inspect.getdoc(obj) or "")
    words: dict[str, None] = {}
    for w in re.findall(r"[A-Za-z]{2,12}", "\n".join(text)):
        words.setdefault(w, None)
        if len(words) >= limit:
            break
    return list(words)


def _tokenizer_corpus(words: list[str]) -> list[str]:
    rng = random.Random(0)
    lines = [" ".join(rng.sample(words, 40)) for _ in range(600)]
    lines += [" ".join(str(i) for i in range(NUM_IDS))] * 300
    lines += ["".join(rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(200))]
    lines += ['.,;:!?\'"()[]{}<>-_=+*/\\|@#$%^&~` (" ") ", " # -> =']
    return lines


def build_study_tokenizer(vocab_size: int = 1200):
    """BPE over isolated pre-tokens (letter runs, single whitespace, punctuation runs, digit runs), every number
    0-299 a single token; ChatML specials and template. Deterministic."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from trainers.models import CHAT_TEMPLATE

    alphabet = [chr(c) for c in range(32, 127)] + ["\n", "\t"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(_SPLIT), behavior="isolated")
    tok.decoder = decoders.Fuse()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS + ["<unk>"],
        initial_alphabet=alphabet,
        show_progress=False,
        min_frequency=2,
    )
    tok.train_from_iterator(_tokenizer_corpus(generic_words()), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        eos_token="<|im_end|>",
        bos_token="<|im_start|>",
        unk_token="<unk>",
    )
    fast.chat_template = CHAT_TEMPLATE
    missing = [i for i in range(NUM_IDS) if len(fast(str(i))["input_ids"]) != 1]
    if missing:
        raise RuntimeError(f"ids not single tokens: {missing[:10]}")
    return fast


def single_token_words(tok, words: list[str]) -> list[str]:
    """The words that are one token of `tok` (alone and after a space), for the curriculum's easy keys."""
    return [w for w in words if len(tok(w, add_special_tokens=False)["input_ids"]) == 1]


def build_model(tokenizer, *, hidden: int, layers: int, heads: int, seed: int):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 3,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=2048,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


# ---------------------------------------------------------------- synthetic, task-free pretraining text
_SYL = [
    "ba",
    "ce",
    "di",
    "fo",
    "gu",
    "ha",
    "je",
    "ki",
    "lo",
    "mu",
    "na",
    "pe",
    "qui",
    "ro",
    "sa",
    "te",
    "vi",
    "xo",
    "ya",
    "ze",
    "an",
    "el",
    "is",
    "or",
    "um",
    "tr",
    "st",
    "br",
    "ch",
    "sh",
]
_FILLERS = [
    "item",
    "entry",
    "node",
    "cell",
    "row",
    "key",
    "slot",
    "field",
    "part",
    "unit",
    "box",
    "tag",
    "elem",
    "record",
    "thing",
    "obj",
    "word",
    "name",
    "label",
    "card",
]


class Synth:
    """Generator of pretraining documents: lists of (text, supervised) segments."""

    def __init__(self, words: list[str], seed: int, short_words: list[str] | None = None) -> None:
        self.words, self.rng = words, random.Random(seed)
        self.short_words = short_words or []
        self.table_share = 0.5
        self.level = 1.0
        """Difficulty in [0, 1] (the curriculum): tables of 2 .. 2 + 6 * level records, and a key is a single-token
        word with probability 1 - level (with `short_words`), else a key of the full generator."""

    def key(self) -> str:
        r = self.rng
        if self.short_words and r.random() >= self.level:
            return r.choice(self.short_words)
        kind = r.random()
        if kind < 0.35:
            k = r.choice(self.words)
        elif kind < 0.7:
            k = "".join(r.choice(_SYL) for _ in range(r.randint(1, 4)))
        else:
            k = "".join(
                r.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
                for _ in range(r.randint(2, 8))
            )
        case = r.random()
        if case < 0.3:
            k = k.capitalize()
        elif case < 0.4:
            k = k.upper()
        elif case < 0.7:
            k = k.lower()
        if r.random() < 0.15:
            k += r.choice([".", ",", ",.", "!"])
        if r.random() < 0.12:
            k += " " + r.choice(self.words).lower()
        return k

    def keys(self, n: int) -> list[str]:
        out: list[str] = []
        while len(out) < n:
            k = self.key()
            if k not in out:
                out.append(k)
        return out

    def ids(self, n: int) -> list[int]:
        r = self.rng
        if r.random() < 0.6:  # ascending with gaps, like ids handed out in document order
            start, out = r.randint(0, NUM_IDS - 4 * n - 1), []
            for _ in range(n):
                start += r.randint(1, 3)
                out.append(start)
            return out
        return r.sample(range(NUM_IDS), n)

    def table_doc(self) -> list[tuple[str, bool]]:
        r = self.rng
        n = r.randint(2, 2 + round(6 * self.level))
        keys, ids = self.keys(n), self.ids(n)
        layout = r.randrange(7)
        fill = r.choice(_FILLERS)

        def line(i: int, k: str) -> str:
            f = fill if r.random() < 0.7 else r.choice(_FILLERS)
            return [
                f'[{i}] {f} "{k}"',
                f"{i}: {k}",
                f"#{i} {f} {k}",
                f"({i}) {f} '{k}'",
                f"{k} = {i}",
                f"{k} [{i}]",
                f'<{i}> {f}: "{k}"',
            ][layout]

        recs = [line(i, k) for i, k in zip(ids, keys, strict=True)]
        if r.random() < 0.3 * self.level:  # distractor records without a key
            pos = r.randrange(len(recs) + 1)
            recs.insert(pos, f"[{r.randrange(NUM_IDS)}] {' '.join(r.sample(self.words, r.randint(3, 9)))}")
        want = r.sample(range(n), r.randint(1, min(3, n)))
        segs: list[tuple[str, bool]] = []
        style = r.randrange(3)
        if style == 0:  # the query first, then the table, then key copy and id
            q = want[0]
            segs.append((f'Look for "{keys[q]}".\n' + "\n".join(recs) + "\n", False))
            segs.append((f"found {keys[q]}\nid {ids[q]}\n", True))
        else:
            segs.append(("\n".join(recs) + "\n", False))
            for q in want:
                if style == 1:
                    segs.append((f'where is "{keys[q]}"? {ids[q]}\n', True))
                else:
                    segs.append((f"{keys[q]} -> {ids[q]}\n", True))
        return segs

    def copy_doc(self) -> list[tuple[str, bool]]:
        r = self.rng
        style = r.randrange(3)
        if style == 0:
            k = self.key()
            return [(f'say "{k}": ', False), (f"{k}\n", True)]
        if style == 1:
            a, b = self.keys(2)
            return [(f'first "{a}" then "{b}"\n', False), (f"1 {a}\n2 {b}\n", True)]
        seq = " ".join(
            r.choice(self.words) if r.random() < 0.5 else self.key() for _ in range(r.randint(4, 16))
        )
        return [(f"{seq} | ", False), (f"{seq}\n", True)]

    def doc(self) -> list[tuple[str, bool]]:
        return self.table_doc() if self.rng.random() < self.table_share else self.copy_doc()


def encode_doc(tok, segs: list[tuple[str, bool]]) -> tuple[list[int], list[int]]:
    ids: list[int] = []
    labels: list[int] = []
    for text, sup in segs:
        t = tok(text, add_special_tokens=False)["input_ids"]
        ids += t
        labels += t if sup else [-100] * len(t)
    return ids, labels


def pack(tok, synth: Synth, width: int) -> tuple[list[int], list[int]]:
    ids: list[int] = []
    labels: list[int] = []
    while True:
        a, b = encode_doc(tok, synth.doc())
        if len(ids) + len(a) > width:
            if not ids:
                return a[:width], b[:width]
            pad = width - len(ids)
            return ids + [tok.pad_token_id] * pad, labels + [-100] * pad
        ids += a
        labels += b


def probe(model, tok, synth_seed: int, n: int = 100) -> dict[str, float]:
    """Teacher-forced accuracies on `n` fresh documents of each kind (argmax, batched): every id right after a
    query-first table (`Look for "k". <table> found k / id N`), after a table-first query, and exact copies."""
    import torch

    s = Synth(synth_seed_words, synth_seed, synth_short_words)
    docs: dict[str, list] = {
        "lookup_query_first": [],
        "lookup_table_first": [],
        "copy": [],
        "lookup_easy": [],
    }
    easy = Synth(synth_seed_words, synth_seed + 1, synth_short_words)
    easy.level = 0.0
    while len(docs["lookup_easy"]) < n:
        docs["lookup_easy"].append(encode_doc(tok, easy.table_doc()))
    while min(len(v) for v in docs.values()) < n:
        if s.rng.random() < 0.6:
            segs = s.table_doc()
            kind = "lookup_query_first" if segs[0][0].startswith("Look for") else "lookup_table_first"
        else:
            segs, kind = s.copy_doc(), "copy"
        if len(docs[kind]) < n:
            docs[kind].append(encode_doc(tok, segs))
    out = {}
    model.eval()
    with torch.no_grad():
        for kind, rows in docs.items():
            width = max(len(a) for a, _ in rows)
            x = torch.full((len(rows), width), tok.pad_token_id)
            y = torch.full((len(rows), width), -100)
            for i, (a, b) in enumerate(rows):
                x[i, : len(a)] = torch.tensor(a)
                y[i, : len(b)] = torch.tensor(b)
            pred = model(input_ids=x, attention_mask=(x != tok.pad_token_id).long()).logits[:, :-1].argmax(-1)
            tgt = y[:, 1:]
            m = tgt != -100
            if kind != "copy":  # the ids only
                digit = torch.tensor([[tok.decode([int(t)]).isdigit() for t in r] for r in x[:, 1:]])
                m = m & digit
            ok = ((pred == tgt) | ~m).all(-1)
            out[kind] = float(ok.float().mean())
    model.train()
    return out


synth_seed_words: list[str] = []
synth_short_words: list[str] = []


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/study/student")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=1200)
    ap.add_argument(
        "--steps", type=int, default=1500, help="pretraining updates (0: save the untrained model)"
    )
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--width", type=int, default=160, help="tokens per packed sequence")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument(
        "--schedule",
        choices=("const", "cosine"),
        default="const",
        help="after warm-up: constant (open-ended runs, snapshots at every probe) or cosine to --steps",
    )
    ap.add_argument(
        "--curriculum",
        type=int,
        default=0,
        help="steps over which tables grow from 2 records of single-token keys to the full generator (0: none)",
    )
    ap.add_argument("--table-share", type=float, default=0.5, help="share of lookup-table documents")
    ap.add_argument("--probe-every", type=int, default=100)
    ap.add_argument("--save-every", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import math

    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    global synth_seed_words, synth_short_words
    synth_seed_words = generic_words()
    tok = build_study_tokenizer(args.vocab)
    synth_short_words = single_token_words(tok, synth_seed_words)
    model = build_model(tok, hidden=args.hidden, layers=args.layers, heads=args.heads, seed=args.seed)
    nparams = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0, betas=(0.9, 0.98))

    def lr_at(step: int) -> float:
        if step < args.warmup:
            return (step + 1) / args.warmup
        if args.schedule == "const":
            return 1.0
        return 0.1 + 0.9 * 0.5 * (
            1 + math.cos(math.pi * min(1.0, (step - args.warmup) / max(1, args.steps - args.warmup)))
        )

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    synth = Synth(synth_seed_words, args.seed + 1, synth_short_words if args.curriculum else None)
    synth.table_share = args.table_share
    state_path = out / "pretrain_resume.pt"
    step, log, wall0, tokens = 0, [], 0.0, 0
    if state_path.is_file():
        st = torch.load(state_path, weights_only=False)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        sched.load_state_dict(st["sched"])
        synth.rng.setstate(st["synth"])
        step, log, wall0, tokens = st["step"], st["log"], st["wall"], st["tokens"]
        print(f"resumed at step {step}", flush=True)
    print(
        f"student: hidden {args.hidden}, {args.layers} layers, vocab {len(tok)}, {nparams} parameters",
        flush=True,
    )
    t0 = time.perf_counter() - wall0
    model.train()
    while step < args.steps:
        if args.curriculum:
            synth.level = min(1.0, step / args.curriculum)
        rows = [pack(tok, synth, args.width) for _ in range(args.batch)]
        x = torch.tensor([r[0] for r in rows])
        y = torch.tensor([r[1] for r in rows])
        mask = (x != tok.pad_token_id).long()
        loss = model(input_ids=x, attention_mask=mask, labels=y).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        step += 1
        tokens += int(mask.sum())
        if step % args.probe_every == 0 or step == args.steps:
            p = probe(model, tok, 10_000 + args.seed)
            rec = {
                "step": step,
                "loss": round(loss.item(), 4),
                "wall_s": round(time.perf_counter() - t0, 1),
                "tokens": tokens,
                "level": round(synth.level, 3),
                **p,
            }
            log.append(rec)
            print(json.dumps(rec), flush=True)
            model.save_pretrained(out / f"snap_{step:06d}")
            tok.save_pretrained(out / f"snap_{step:06d}")
        if step % args.save_every == 0 and step < args.steps:
            torch.save(
                {
                    "model": model.state_dict(),
                    "opt": opt.state_dict(),
                    "sched": sched.state_dict(),
                    "synth": synth.rng.getstate(),
                    "step": step,
                    "log": log,
                    "tokens": tokens,
                    "wall": time.perf_counter() - t0,
                },
                state_path,
            )
    final = out / "model"
    model.save_pretrained(final)
    tok.save_pretrained(final)
    # FLOPs of the pretraining stage (6 N per trained token, the dense approximation), for the compute accounting
    meta = {
        "args": vars(args),
        "parameters": nparams,
        "tokens": tokens,
        "pretrain_flops": 6.0 * nparams * tokens,
        "wall_s": time.perf_counter() - t0,
        "log": log,
    }
    (out / "pretrain.json").write_text(json.dumps(meta, indent=1))
    print(
        f"saved {final} ({meta['wall_s']:.0f} s, {tokens} tokens, {meta['pretrain_flops']:.3e} FLOPs)",
        flush=True,
    )


if __name__ == "__main__":
    main()
