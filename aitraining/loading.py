"""Load the tokenizer, then the model (standard, or through Unsloth), and describe the LoRA to train.

Standard path (here): AutoModelForCausalLM (+ BitsAndBytesConfig for int4/int8); the LoRA goes to
TRL's trainer as a `peft_config`. Unsloth path: aitraining/unsloth_accel.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional, Union

from aitraining import adapters, dist, unsloth_accel
from aitraining.choices import Accel, DType, PeftKind, Quant
from aitraining.config import SEVEN_PROJECTIONS, Config
from aitraining.errors import ConfigError
from aitraining.trainers.registry import TRAINERS

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
    adapters.check_modules("peft.target_modules", requested, available, "; or use all-linear")
    return list(requested)


def lora_config(cfg: Config, target_modules):
    from peft import LoraConfig

    # A reward model's LoRA is SEQ_CLS: PEFT then trains and saves its score head in full.
    task = "SEQ_CLS" if TRAINERS[cfg.trainer.kind].sequence_classification else "CAUSAL_LM"
    return LoraConfig(**adapters.lora_kwargs(cfg), target_modules=target_modules, task_type=task)


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
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    dtype = torch_dtype(cfg.model.dtype)
    # A reward model: a sequence classifier with one output, the score (its head starts untrained).
    head = {"num_labels": 1} if TRAINERS[cfg.trainer.kind].sequence_classification else {}
    auto_class = AutoModelForSequenceClassification if head else AutoModelForCausalLM
    model = auto_class.from_pretrained(
        path,
        **head,
        dtype=dtype,
        quantization_config=quantization_config(cfg, dtype),
        device_map=dist.device_map(cfg),  # a quantized model under DDP: this process's GPU
        attn_implementation=cfg.model.attn_implementation,
        trust_remote_code=cfg.model.trust_remote_code,
        revision=cfg.model.revision,
    )
    if cfg.peft.kind is PeftKind.none:
        return Loaded(model, None, dtype_name(dtype), None)
    if head and cfg.quant.kind is not Quant.none and hasattr(model, "score"):
        # TRL keeps a quantized model's trainable weights in bfloat16 (QLoRA), the score head included;
        # LoRA layers cast their input to match, a plain Linear head does not. Its copy in the adapter
        # (modules_to_save) is a deep copy, so it keeps this hook.
        model.score.register_forward_pre_hook(lambda module, args: (args[0].to(module.weight.dtype), *args[1:]))
    targets = resolve_target_modules(list(cfg.peft.target_modules), module_names(model), model_type)
    adapters.check_modules("peft.modules_to_save", list(cfg.peft.modules_to_save), module_names(model))
    return Loaded(model, lora_config(cfg, targets), dtype_name(dtype), targets)


LOADERS: dict[Accel, Callable[[Config, str, str], Loaded]] = {
    Accel.none: load_standard,
    Accel.unsloth: unsloth_accel.load,
}


def liger_problem(has_gpu: bool, installed: bool) -> Optional[str]:
    """Why model.liger_kernel=true cannot run here; None when it can."""
    if not has_gpu:
        return (
            "model.liger_kernel=true needs a CUDA GPU: Liger's kernels are Triton GPU kernels, and no GPU was found. "
            "Set model.liger_kernel=false."
        )
    if not installed:
        return "model.liger_kernel=true needs the liger-kernel package: pip install 'aitraining[liger]'."
    return None


def check_liger(cfg: Config) -> None:
    """Before the weights load: Liger's kernels asked for where they cannot run is an error, not a crash later."""
    if not cfg.model.liger_kernel:
        return
    import importlib.util

    import torch

    problem = liger_problem(torch.cuda.is_available(), importlib.util.find_spec("liger_kernel") is not None)
    if problem:
        raise ConfigError(problem, key="model.liger_kernel")


def load_model(cfg: Config, path: str, model_type: str) -> Loaded:
    check_liger(cfg)
    return LOADERS[cfg.accel.kind](cfg, path, model_type)
