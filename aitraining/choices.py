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
    simpo = "simpo"  # simple preference optimisation: CPO with loss_type=simpo, no reference (TRL CPOTrainer)
    kto = "kto"  # Kahneman-Tversky optimisation on unpaired good/bad examples (TRL KTOTrainer)
    grpo = "grpo"  # group relative policy optimisation from reward functions (TRL GRPOTrainer)
    reward = "reward"  # a reward model (sequence classification) trained on preference pairs (TRL RewardTrainer)


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


class LoraInit(Enum):
    """How LoRA's A and B start (PEFT's init_lora_weights)."""

    default = "default"  # PEFT's default: A random (Kaiming), B zero, so the adapter starts as a no-op
    gaussian = "gaussian"  # A Gaussian scaled by the rank, B zero
    orthogonal = "orthogonal"  # A and B orthogonal (the adapter starts as a no-op)
    pissa = "pissa"  # principal singular values/vectors of W (SVD); the base keeps the residual
    olora = "olora"  # orthonormal QR of W; the base keeps the residual


class DPOLoss(Enum):
    """DPO's loss variants (TRL DPOConfig.loss_type); several are combined with trainer.loss_weights."""

    sigmoid = "sigmoid"  # the DPO paper's loss
    hinge = "hinge"  # SLiC
    ipo = "ipo"  # identity preference optimisation
    exo_pair = "exo_pair"
    nca_pair = "nca_pair"
    robust = "robust"  # robust DPO (label noise)
    bco_pair = "bco_pair"
    sppo_hard = "sppo_hard"
    aot = "aot"
    aot_unpaired = "aot_unpaired"
    apo_zero = "apo_zero"
    apo_down = "apo_down"
    discopop = "discopop"
    sft = "sft"  # negative log-likelihood of the chosen reply (with sigmoid: RPO)
    sigmoid_norm = "sigmoid_norm"


class KTOLoss(Enum):
    kto = "kto"  # the KTO paper's loss (estimates a KL term from mismatched pairs in each batch)
    apo_zero_unpaired = "apo_zero_unpaired"  # APO-zero, unpaired (no KL term)


class DataFormat(Enum):
    auto = "auto"  # detected from the columns; the detection is logged
    text = "text"  # one column of raw text (data.text_column)
    alpaca = "alpaca"  # instruction / input / output (+ optional system)
    messages = "messages"  # OpenAI-style lists of {role, content}
    sharegpt = "sharegpt"  # conversations of {from, value}; converted to messages
    prompt_completion = "prompt_completion"  # prompt / completion columns
    preference = "preference"  # prompt (or ShareGPT conversations) + chosen / rejected, for dpo/orpo
    unpaired = "unpaired"  # prompt / completion / label, or messages + label: unpaired preference, for kto
    prompt = "prompt"  # prompts only (prompt, or Alpaca instruction [+ input]) + any other columns, for grpo


class MixStopping(Enum):
    """When a weighted mixture (data.mix) ends: datasets.interleave_datasets' stopping_strategy."""

    first_exhausted = "first_exhausted"  # when the first source runs out (no example is seen twice)
    all_exhausted = "all_exhausted"  # when every source has been seen whole (smaller ones repeat)


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
