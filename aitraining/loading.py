"""Load the tokenizer, then the model (standard, or through Unsloth), and describe the LoRA to train.

Standard path (here): AutoModelForCausalLM (+ BitsAndBytesConfig for int4/int8); the LoRA goes to
TRL's trainer as a `peft_config`. Unsloth path: aitraining/unsloth_accel.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional, Union

from aitraining import dist, unsloth_accel
from aitraining.choices import Accel, DType, PeftKind, Quant
from aitraining.config import SEVEN_PROJECTIONS, Config
from aitraining.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class Loaded:
    model: Any
    peft_config: Any  # a peft.LoraConfig for SFTTrainer, or None (Unsloth adapters / full fine-tuning)
    dtype: str  # "float32", "bfloat16" or "float16"
    target_modules: Optional[Union[list[str], str]]  # what the LoRA actually targets
    gradient_checkpointing_by_model: bool = False  # Unsloth handles it; TRL must not enable it again


def torch_dtype(requested: DType):
    import torch

    has_cuda = torch.cuda.is_available()
    if requested is DType.auto:
        return torch.bfloat16 if has_cuda and torch.cuda.is_bf16_supported() else torch.float32
    if requested is DType.float16 and not has_cuda:
        raise ConfigError(
            "model.dtype=float16 needs a CUDA GPU (no loss scaling on CPU); use float32 or bfloat16.", key="model.dtype"
        )
    return getattr(torch, requested.value)


def dtype_name(dtype) -> str:
    return str(dtype).removeprefix("torch.")


def quantization_config(cfg: Config, dtype):
    from transformers import BitsAndBytesConfig

    if cfg.quant.kind is Quant.int4:
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=cfg.quant.quant_type.value,
            bnb_4bit_use_double_quant=cfg.quant.double_quant,
            bnb_4bit_compute_dtype=dtype,
            **dist.quantization_kwargs(cfg, dtype),  # FSDP / ZeRO-3 shard 4-bit weights stored as `dtype`
        )
    if cfg.quant.kind is Quant.int8:
        return BitsAndBytesConfig(load_in_8bit=True)
    return None


def module_names(model) -> set[str]:
    return {name.rsplit(".", 1)[-1] for name, _ in model.named_modules() if name}


def resolve_target_modules(requested: list[str], available: set[str], model_type: str) -> Union[list[str], str]:
    """The default seven projections narrowed to the model; all linear layers when it lacks some
    (fused qkv in phi3, Conv1D in gpt2), so no model silently trains a fraction of its adapters."""
    if requested == ["all-linear"]:
        return "all-linear"
    if requested == SEVEN_PROJECTIONS:
        missing = [m for m in requested if m not in available]
        if not missing:
            return list(requested)
        log.info(
            "Model type '%s' has no %s: LoRA targets all linear layers instead of the seven projections.",
            model_type,
            ", ".join(missing),
        )
        return "all-linear"
    missing = [m for m in requested if m not in available]
    if missing:
        raise ConfigError(
            f"peft.target_modules: the model has no module named {missing}. "
            f"Its modules include: {', '.join(sorted(available)[:40])}; or use all-linear.",
            key="peft.target_modules",
        )
    return list(requested)


def lora_config(cfg: Config, target_modules):
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.peft.r,
        lora_alpha=cfg.peft.alpha,
        lora_dropout=cfg.peft.dropout,
        target_modules=target_modules,
        bias="none",
        task_type="CAUSAL_LM",
    )


def load_tokenizer(cfg: Config, path: str):
    """The tokenizer, loaded before the model so the data can be checked first (the same one is
    used with Unsloth, whose loader would return an equivalent copy)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(
        path, trust_remote_code=cfg.model.trust_remote_code, revision=cfg.model.revision
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
        log.info("The tokenizer has no pad token: using its eos token '%s'.", tokenizer.eos_token)
    return tokenizer


def load_standard(cfg: Config, path: str, model_type: str) -> Loaded:
    from transformers import AutoModelForCausalLM

    dtype = torch_dtype(cfg.model.dtype)
    model = AutoModelForCausalLM.from_pretrained(
        path,
        dtype=dtype,
        quantization_config=quantization_config(cfg, dtype),
        device_map=dist.device_map(cfg),  # a quantized model under DDP: this process's GPU
        attn_implementation=cfg.model.attn_implementation,
        trust_remote_code=cfg.model.trust_remote_code,
        revision=cfg.model.revision,
    )
    if cfg.peft.kind is PeftKind.none:
        return Loaded(model, None, dtype_name(dtype), None)
    targets = resolve_target_modules(list(cfg.peft.target_modules), module_names(model), model_type)
    return Loaded(model, lora_config(cfg, targets), dtype_name(dtype), targets)


LOADERS: dict[Accel, Callable[[Config, str, str], Loaded]] = {
    Accel.none: load_standard,
    Accel.unsloth: unsloth_accel.load,
}


def load_model(cfg: Config, path: str, model_type: str) -> Loaded:
    return LOADERS[cfg.accel.kind](cfg, path, model_type)
