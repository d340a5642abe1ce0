"""Every choice a config key offers, as an enum. No imports: the config, the trainer records and the
data readers all name their choices from here."""

from __future__ import annotations

from enum import Enum


class DType(Enum):
    auto = "auto"  # bfloat16 on a GPU that supports it, else float32
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


class TrainerKind(Enum):
    """The trainer options; each has one record in aitraining/trainers/registry.py."""

    sft = "sft"  # supervised fine-tuning; loss on the response only where the data marks one
    default = "default"  # plain causal-LM fine-tuning: loss on every token
    dpo = "dpo"  # direct preference optimisation on chosen/rejected pairs (TRL DPOTrainer)
    orpo = "orpo"  # odds-ratio preference optimisation, no reference model (TRL ORPOTrainer)


class Accel(Enum):
    none = "none"
    unsloth = "unsloth"


class DistKind(Enum):
    """How a multi-process launch (torchrun, accelerate launch, SLURM) shares the work (conf/dist/)."""

    none = "none"  # no sharding: one process, or plain DDP when the launch has several
    ddp = "ddp"  # DistributedDataParallel: each process holds the whole model, gradients are averaged
    fsdp = "fsdp"  # FSDP2 (torch fully_shard through accelerate): parameters, gradients, optimizer sharded
    zero2 = "zero2"  # DeepSpeed ZeRO stage 2: optimizer state and gradients sharded
    zero3 = "zero3"  # DeepSpeed ZeRO stage 3: parameters too


class Quant(Enum):
    none = "none"
    int4 = "int4"  # bitsandbytes 4-bit (QLoRA style)
    int8 = "int8"  # bitsandbytes LLM.int8()


class Bnb4bitType(Enum):
    nf4 = "nf4"
    fp4 = "fp4"


class PeftKind(Enum):
    lora = "lora"
    none = "none"  # full fine-tuning: every weight trains


class DataFormat(Enum):
    auto = "auto"  # detected from the columns; the detection is logged
    text = "text"  # one column of raw text (data.text_column)
    alpaca = "alpaca"  # instruction / input / output (+ optional system)
    messages = "messages"  # OpenAI-style lists of {role, content}
    sharegpt = "sharegpt"  # conversations of {from, value}; converted to messages
    prompt_completion = "prompt_completion"  # prompt / completion columns
    preference = "preference"  # prompt (or ShareGPT conversations) + chosen / rejected, for dpo/orpo
