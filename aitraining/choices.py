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


class LoggerKind(Enum):
    """`logger=`: where the run's parameters and loss curves go (aitraining/trackers.py)."""

    none = "none"
    tensorboard = "tensorboard"
    wandb = "wandb"
    mlflow = "mlflow"
    trackio = "trackio"


class GgufQuant(Enum):
    """GGUF file types llama.cpp's tools write (aitraining/export/gguf.py)."""

    f16 = "f16"  # llama.cpp's converter, 16-bit floats
    q8_0 = "q8_0"  # llama.cpp's converter, 8-bit
    q4_k_m = "q4_k_m"  # llama.cpp's quantizer on the f16 file (needs llama-cpp-python or llama-quantize)


class PromptStyle(Enum):
    """How a user's message becomes the model's input: the way the run's training data was rendered."""

    chat = "chat"  # the chat template, messages of {role, content}
    chat_sharegpt = "chat_sharegpt"  # the chat template through Unsloth's ShareGPT mapping: {from, value}
    alpaca = "alpaca"  # the Alpaca prompt ("### Instruction: ... ### Response:")
    plain = "plain"  # the text itself (prompt/completion, plain text): the model continues it
