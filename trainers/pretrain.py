"""A task-free pretraining stage for a tiny student: the lookup tokenizer, synthetic text, a resumable loop.

The tiny Llama cannot learn MiniWoB++'s label -> bid lookup, nor copy a goal's words, from SFT alone (RESULTS.md).
An instruct model brings those skills from its pretraining; this stage gives the tiny student a small pretraining
of its own, on synthetic text that teaches in-context lookup and copying. Nothing in it comes from MiniWoB++, the
toy env or their prompts: keys are random syllables, letters and English words from Python's own docstrings.

- Record tables (`[7] entry "Bar"`, `12: foo`, `baz = 31`, ... in seven layouts, ids below `NUM_IDS`), then
  queries that name a record's key and answer its id (the key copied first, then the id, as a reasoning line
  would). A curriculum grows tables from 2 records with single-token keys to up to 8 with any key.
- Copy documents: a quoted key (or a run of words) repeated after a cue, i.e. induction sequences.

The tokenizer (`build_lookup_tokenizer`) makes the lookup tokenisable: whitespace and punctuation are separate
pre-tokens, every number below `NUM_IDS` is one token, and letter runs are split by a BPE trained on generic
English, so a word is the same tokens wherever it appears (in the goal, the page, the reasoning), unlike a
byte-level BPE where `"Proin"` and ` Proin` differ.

`pretrain_student(PretrainConfig(...))` writes `<output_dir>/model` (load it with `trainers.models.load_student`,
pass it as `student=` to SFT and RL) with `pretrain.json` (FLOPs by the study's formula, tokens, wall time, the
probe log) beside the weights. The stage's FLOPs are recorded, not added to SFT/RL FLOPs: they stand in for the
base model's pretraining, which the study's compute axis leaves out too.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import random
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from trainers.config import PretrainConfig

__all__ = [
    "NUM_IDS",
    "PretrainResult",
    "SyntheticCorpus",
    "build_lookup_tokenizer",
    "generic_words",
    "pretrain_student",
    "probe_skills",
    "single_token_words",
]

logger = logging.getLogger(__name__)

NUM_IDS = 300
"""Numbers 0 .. NUM_IDS-1 are single tokens (MiniWoB++ bids stay below it) and are the tables' ids."""
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


def build_lookup_tokenizer(vocab_size: int = 1200, words: list[str] | None = None):
    """BPE over isolated pre-tokens (letter runs, single whitespace, punctuation runs, digit runs), every number
    0-299 a single token; ChatML specials and template. Deterministic. `words`: `generic_words()` when already
    computed (they are the BPE's training text)."""
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
    tok.train_from_iterator(_tokenizer_corpus(words or generic_words()), trainer=trainer)
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


class SyntheticCorpus:
    """Generator of pretraining documents, each a list of (text, supervised) segments; deterministic in `seed`."""

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


def pack(tok, corpus: SyntheticCorpus, width: int) -> tuple[list[int], list[int]]:
    """One packed sequence of whole documents (padded to `width`; a document longer than `width` is cut)."""
    ids: list[int] = []
    labels: list[int] = []
    while True:
        a, b = encode_doc(tok, corpus.doc())
        if len(ids) + len(a) > width:
            if not ids:
                return a[:width], b[:width]
            pad = width - len(ids)
            return ids + [tok.pad_token_id] * pad, labels + [-100] * pad
        ids += a
        labels += b


def probe_skills(
    model, tok, words: list[str], short_words: list[str], seed: int, n: int = 100
) -> dict[str, float]:
    """Teacher-forced accuracies on `n` fresh documents of each kind (argmax, batched): every id right after a
    query-first table (`Look for "k". <table> found k / id N`), after a table-first query, after an easy table
    (2 records, single-token keys), and exact copies."""
    import torch

    s = SyntheticCorpus(words, seed, short_words)
    easy = SyntheticCorpus(words, seed + 1, short_words)
    easy.level = 0.0
    docs: dict[str, list] = {
        "lookup_query_first": [],
        "lookup_table_first": [],
        "lookup_easy": [],
        "copy": [],
    }
    docs["lookup_easy"] = [encode_doc(tok, easy.table_doc()) for _ in range(n)]
    while min(len(v) for v in docs.values()) < n:
        if s.rng.random() < 0.6:
            segs = s.table_doc()
            kind = "lookup_query_first" if segs[0][0].startswith("Look for") else "lookup_table_first"
        else:
            segs, kind = s.copy_doc(), "copy"
        if len(docs[kind]) < n:
            docs[kind].append(encode_doc(tok, segs))
    device = next(model.parameters()).device
    digit = torch.tensor([tok.decode([i]).isdigit() for i in range(len(tok))], device=device)
    out = {}
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for kind, rows in docs.items():
            width = max(len(a) for a, _ in rows)
            x = torch.full((len(rows), width), tok.pad_token_id, device=device)
            y = torch.full((len(rows), width), -100, device=device)
            for i, (a, b) in enumerate(rows):
                x[i, : len(a)] = torch.tensor(a)
                y[i, : len(b)] = torch.tensor(b)
            pred = model(input_ids=x, attention_mask=(x != tok.pad_token_id).long()).logits[:, :-1].argmax(-1)
            tgt = y[:, 1:]
            m = tgt != -100
            if kind != "copy":  # the ids only
                m = m & digit[x[:, 1:]]
            out[kind] = float(((pred == tgt) | ~m).all(-1).float().mean())
    model.train(was_training)
    return out


@dataclass(frozen=True)
class PretrainResult:
    """What `pretrain_student` made: the student's directory and the stage's cost."""

    path: Path
    """`<output_dir>/model`: weights, tokenizer and `pretrain.json`."""
    steps: int
    tokens: int
    """Trained (non-padding) tokens."""
    flops: float
    """By the study's formula (trainers.flops), forward + backward."""
    wall_s: float
    probes: dict[str, float]
    """The last probe's accuracies."""


def _lr_factor(cfg: PretrainConfig, step: int) -> float:
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return 1.0
    frac = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac))


def pretrain_student(cfg: PretrainConfig, report: Callable[..., None] | None = None) -> PretrainResult:
    """Pretrain a tiny student on the synthetic corpus; resumable (`<output_dir>/pretrain_resume.pt`).

    A rerun of the same config continues from the resume state and gives the same numbers as an uninterrupted
    run (the corpus generator's state, the optimiser and torch's RNG are saved with it). `report(metrics)` is
    called at every probe."""
    import torch

    from trainers.common import atomic_write, rng_state, seed_everything, set_rng_state
    from trainers.flops import FlopsCounter
    from trainers.models import build_llama, resolve_device

    device = resolve_device(cfg.device, cpu_threads=cfg.cpu_threads)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed)
    words = generic_words()
    tok = build_lookup_tokenizer(cfg.vocab_size, words)
    short = single_token_words(tok, words)
    model = build_llama(
        tok,
        hidden_size=cfg.hidden_size,
        num_layers=cfg.num_layers,
        num_heads=cfg.num_heads,
        num_kv_heads=cfg.num_heads,
        seed=cfg.seed,
    ).to(device)
    nparams = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=0.0, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: _lr_factor(cfg, step))
    corpus = SyntheticCorpus(words, cfg.seed + 1, short if cfg.curriculum_steps else None)
    corpus.table_share = cfg.table_share
    counter = FlopsCounter(model.config)
    state_path = out / "pretrain_resume.pt"
    step, log, wall0 = 0, [], 0.0
    config_json = json.dumps(asdict(cfg), sort_keys=True)
    if state_path.is_file():
        st = torch.load(state_path, weights_only=False)  # our own file, written below
        if st.get("config") != config_json:
            raise ValueError(
                f"{state_path} was written by another PretrainConfig; use a new output_dir or delete the file"
            )
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        sched.load_state_dict(st["sched"])
        corpus.rng.setstate(st["corpus"])
        counter.load_state_dict(st["flops"])
        set_rng_state(st["rng"])
        step, log, wall0 = st["step"], st["log"], st["wall"]
        logger.info("pretraining resumed at step %d of %d", step, cfg.steps)
    logger.info(
        "student: hidden %d, %d layers, vocab %d, %d parameters",
        cfg.hidden_size,
        cfg.num_layers,
        len(tok),
        nparams,
    )
    t0 = time.perf_counter() - wall0
    model.train()
    while step < cfg.steps:
        if cfg.curriculum_steps:
            corpus.level = min(1.0, step / cfg.curriculum_steps)
        rows = [pack(tok, corpus, cfg.seq_len) for _ in range(cfg.batch_size)]
        x = torch.tensor([r[0] for r in rows], device=device)
        y = torch.tensor([r[1] for r in rows], device=device)
        mask = (x != tok.pad_token_id).long()
        loss = model(input_ids=x, attention_mask=mask, labels=y).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        step += 1
        counter.add(int(mask.sum()), cfg.seq_len, trained=True)
        if step % cfg.probe_every_steps == 0 or step == cfg.steps:
            rec = {
                "step": step,
                "loss": round(loss.item(), 4),
                "wall_s": round(time.perf_counter() - t0, 1),
                "tokens": counter.tokens,
                "flops": counter.flops,
                "level": round(corpus.level, 3),
                **probe_skills(model, tok, words, short, 10_000 + cfg.seed, n=cfg.probe_docs),
            }
            log.append(rec)
            if report is not None:
                report(rec)
            snap = out / f"snap_{step:06d}"
            model.save_pretrained(snap)
            tok.save_pretrained(snap)
            atomic_write(out / "pretrain_log.csv", _csv(log))
        if step % cfg.resume_every_steps == 0 and step < cfg.steps:
            buf = io.BytesIO()
            torch.save(
                {
                    "config": config_json,
                    "model": model.state_dict(),
                    "opt": opt.state_dict(),
                    "sched": sched.state_dict(),
                    "corpus": corpus.rng.getstate(),
                    "flops": counter.state_dict(),
                    "rng": rng_state(),
                    "step": step,
                    "log": log,
                    "wall": time.perf_counter() - t0,
                },
                buf,
            )
            atomic_write(state_path, buf.getvalue())
    wall = time.perf_counter() - t0
    final = out / "model"
    model.save_pretrained(final)
    tok.save_pretrained(final)
    meta = {
        "config": asdict(cfg),
        "parameters": nparams,
        "steps": step,
        "tokens": counter.tokens,
        "pretrain_flops": counter.flops,
        "wall_s": wall,
        "log": log,
    }
    atomic_write(final / "pretrain.json", json.dumps(meta, indent=1))
    return PretrainResult(
        path=final,
        steps=step,
        tokens=counter.tokens,
        flops=counter.flops,
        wall_s=wall,
        probes={k: v for k, v in (log[-1] if log else {}).items() if k.startswith(("lookup", "copy"))},
    )


def _csv(log: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(log[0]))
    w.writeheader()
    w.writerows(log)
    return buf.getvalue()
