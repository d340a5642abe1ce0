"""Tiny random models built offline, for the quick start, tests and smoke runs.

`model.name=tiny:<type>` names one; it is built on first use (a few seconds) into
`$AITRAINING_CACHE/tiny/<type>-<VERSION>` (default `~/.cache/aitraining`). Each has 2 layers,
hidden size 64, random weights, and a byte-level BPE tokenizer trained on the shipped Alpaca
sample, with a ChatML chat template that marks assistant turns with `{% generation %}`. The
tokenizer has seen the sample it then trains on in the quick start: fine for smoke runs.

    python -c "from aitraining import tiny; tiny.ensure_tiny('tiny:gemma2')"   # build ahead of time
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from aitraining import chat_templates
from aitraining.errors import ConfigError

SCHEME = "tiny:"
VERSION = "v3"
VOCAB_SIZE = 1024

CHAT_TEMPLATE = chat_templates.CHATML  # marks assistant replies with {% generation %}
SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]

_COMMON = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "max_position_embeddings": 2048,
    # 5x the usual 0.02: with frozen random embeddings and head, LoRA can then move the loss.
    "initializer_range": 0.1,
}
_ATTN = {"num_attention_heads": 4, "num_key_value_heads": 2}

# model_type -> config kwargs. Explicit per type: each architecture names its sizes its own way.
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "llama": {**_COMMON, **_ATTN},
    "mistral": {**_COMMON, **_ATTN, "sliding_window": None},
    "qwen2": {**_COMMON, **_ATTN, "use_sliding_window": False},
    "gemma": {**_COMMON, **_ATTN, "head_dim": 16},
    "gemma2": {**_COMMON, **_ATTN, "head_dim": 16, "sliding_window": 512, "query_pre_attn_scalar": 16},
    "phi3": {**_COMMON, **_ATTN, "sliding_window": None, "pad_token_id": 0},
    "gpt2": {"n_embd": 64, "n_layer": 2, "n_head": 4, "n_positions": 2048, "initializer_range": 0.1},
}


def is_tiny(name: str) -> bool:
    return name.startswith(SCHEME)


def tiny_type(name: str) -> str:
    """`tiny:llama` -> `llama`, checking the type is one we can build."""
    kind = name[len(SCHEME) :]
    if kind not in ARCHITECTURES:
        raise ConfigError(
            f"model.name={name}: unknown tiny model type '{kind}'. Allowed: "
            + ", ".join(f"tiny:{k}" for k in ARCHITECTURES),
            key="model.name",
        )
    return kind


def cache_dir() -> Path:
    return Path(os.environ.get("AITRAINING_CACHE", Path.home() / ".cache" / "aitraining"))


def tiny_path(name: str) -> Path:
    return cache_dir() / "tiny" / f"{tiny_type(name)}-{VERSION}"


def ensure_tiny(name: str) -> Path:
    """Path of the tiny model `name`, building it first if it is not there yet."""
    path = tiny_path(name)
    if not (path / "config.json").exists():
        build(tiny_type(name), path)
    return path


def _sample_texts() -> list[str]:
    sample = Path(__file__).parent / "samples" / "alpaca_en_demo.json"
    rows = json.loads(sample.read_text(encoding="utf-8"))
    return [" ".join(str(r.get(k, "")) for k in ("instruction", "input", "output")) for r in rows]


def build_tokenizer():
    """A byte-level BPE tokenizer trained on the shipped sample, wrapped for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_sample_texts(), trainer=trainer)
    return _wrap(tok)


def _wrap(tok, **special):
    """A `tokenizers` tokenizer as transformers' fast tokenizer, with the tiny models' special tokens."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        **special,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
        chat_template=CHAT_TEMPLATE,
        model_max_length=131072,
    )


def build_byte_fallback_tokenizer():
    """A Llama 2 / Mistral-shaped tokenizer (BPE with byte fallback, `▁` for spaces), trained on the
    shipped sample. llama.cpp's converter reads this shape without knowing its pre-tokenizer (the
    byte-level one of `build_tokenizer` it refuses, as it refuses any BPE vocabulary it has no hash
    for), so the GGUF export's test model uses it: `build("llama", path, build_byte_fallback_tokenizer())`."""
    from tokenizers import Tokenizer, decoders, models, normalizers, trainers

    tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>", fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE, special_tokens=["<unk>", *SPECIAL_TOKENS, *byte_tokens], show_progress=False
    )
    tok.train_from_iterator(_sample_texts(), trainer=trainer)
    return _wrap(tok, unk_token="<unk>")


def build(model_type: str, path: Path, tokenizer=None) -> Path:
    """Build tiny `model_type` into `path` atomically (safe when several processes race), with
    `build_tokenizer()`'s tokenizer unless given another."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    tokenizer = tokenizer or build_tokenizer()
    config = AutoConfig.for_model(
        model_type,
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **{"pad_token_id": tokenizer.pad_token_id, **ARCHITECTURES[model_type]},
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    try:
        staging.rename(path)
    except OSError:  # another process finished first
        shutil.rmtree(staging, ignore_errors=True)
    return path
