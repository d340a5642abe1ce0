"""The typed config: one small dataclass per config group, enums for every choice.

Hydra composes YAML from `conf/` onto these schemas (registered in its ConfigStore by
`register_configs`), so a misspelt key or a wrong type fails at composition. `to_config` turns the
composed DictConfig into these dataclasses with `OmegaConf.to_object`, which runs each
`__post_init__`: that is where values are checked. Nothing here imports torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from aitraining import chat_templates
from aitraining.errors import ConfigError, closest
from aitraining.trl_fields import DPO_CONFIG_FIELDS, ORPO_CONFIG_FIELDS, SFT_CONFIG_FIELDS

# --------------------------------------------------------------------------- choices


class DType(Enum):
    auto = "auto"  # bfloat16 on a GPU that supports it, else float32
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


class TrainerKind(Enum):
    sft = "sft"  # supervised fine-tuning; loss on the response only where the data marks one
    default = "default"  # plain causal-LM fine-tuning: loss on every token
    dpo = "dpo"  # direct preference optimisation on chosen/rejected pairs (TRL DPOTrainer)
    orpo = "orpo"  # odds-ratio preference optimisation, no reference model (TRL ORPOTrainer)


PREFERENCE_TRAINERS = (TrainerKind.dpo, TrainerKind.orpo)


class Accel(Enum):
    none = "none"
    unsloth = "unsloth"


class Quant(Enum):
    none = "none"
    int4 = "int4"  # bitsandbytes 4-bit (QLoRA style)
    int8 = "int8"  # bitsandbytes LLM.int8()


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


SEVEN_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
UNSLOTH_DEFAULT_MODEL_TYPES = ["llama", "mistral", "gemma", "gemma2", "qwen2"]

# Keys of TRL's SFTConfig that aitraining sets from its own fields; trainer.args may not set them.
OWNED_SFT_KEYS = {
    "output_dir": "output_dir",
    "learning_rate": "trainer.learning_rate",
    "num_train_epochs": "trainer.epochs",
    "max_steps": "trainer.max_steps",
    "per_device_train_batch_size": "trainer.batch_size",
    "gradient_accumulation_steps": "trainer.gradient_accumulation",
    "gradient_checkpointing": "trainer.gradient_checkpointing",
    "packing": "trainer.packing",
    "logging_steps": "trainer.logging_steps",
    "seed": "seed",
    "max_length": "model.max_seq_length",
    "beta": "trainer.beta",
    "max_completion_length": "trainer.max_completion_length",
}
TRL_FIELDS = {
    TrainerKind.sft: SFT_CONFIG_FIELDS,
    TrainerKind.default: SFT_CONFIG_FIELDS,
    TrainerKind.dpo: DPO_CONFIG_FIELDS,
    TrainerKind.orpo: ORPO_CONFIG_FIELDS,
}
TRL_CONFIG_NAMES = {TrainerKind.sft: "SFTConfig", TrainerKind.default: "SFTConfig", TrainerKind.dpo: "DPOConfig",
                    TrainerKind.orpo: "ORPOConfig"}  # fmt: skip


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


# --------------------------------------------------------------------------- groups


@dataclass
class ModelConfig:
    """`model=`: the base model to fine-tune."""

    name: str = MISSING
    """Hub id (meta-llama/Llama-3.2-1B), local folder, or `tiny:<type>` for an offline tiny model."""
    max_seq_length: int = 2048
    """Longest sequence in tokens; longer examples are truncated (TRL's max_length)."""
    trust_remote_code: bool = False
    """Run modelling code shipped with the checkpoint. Off unless you trust its author."""
    dtype: DType = DType.auto
    """Weights' dtype while training: auto picks bfloat16 on a capable GPU, float32 on CPU."""
    revision: Optional[str] = None
    """Hub branch, tag or commit; None for the default branch."""
    attn_implementation: Optional[str] = None
    """Attention kernel (transformers' attn_implementation): None for the default (sdpa), or
    eager, flash_attention_2, ... Packing is fastest with a flash-attention kernel."""
    chat_template: Optional[str] = None
    """None: the tokenizer's own. Or a built-in template by name (chatml, llama3, mistral, gemma,
    qwen2.5), or a path to a .jinja file, for base models that lack one."""

    def __post_init__(self) -> None:
        _require(bool(self.name.strip()), "model.name is empty: give a hub id, a local folder or tiny:<type>.")
        _require(self.max_seq_length >= 8, f"model.max_seq_length must be >= 8 (got {self.max_seq_length}).")
        if self.chat_template is not None:
            chat_templates.resolve(self.chat_template)  # a built-in name or an existing .jinja file


@dataclass
class TrainerConfig:
    """`trainer=`: which TRL trainer runs, and its hyperparameters."""

    kind: TrainerKind = TrainerKind.sft
    """Set by the option file (trainer=sft|default); not meant to be overridden on its own."""
    learning_rate: float = 2e-4
    epochs: float = 1.0
    """Passes over the training set; ignored when max_steps > 0."""
    max_steps: int = -1
    """Optimizer steps to run; -1 means run `epochs` epochs."""
    batch_size: int = 4
    """Examples per device per forward pass."""
    gradient_accumulation: int = 1
    """Forward passes per optimizer step (effective batch = batch_size x this)."""
    gradient_checkpointing: bool = True
    """Recompute activations in the backward pass: less memory, about 20-30% slower."""
    packing: bool = False
    """Pack several examples into each max_seq_length row (TRL bfd): faster, same tokens."""
    logging_steps: int = 10
    """Log loss every N optimizer steps."""
    response_only_loss: bool = True
    """Loss on the response only (Alpaca output, completion, assistant turns); false trains on
    every token, prompt included."""
    beta: Optional[float] = None
    """dpo/orpo: strength of the preference term (DPO's beta, ORPO's lambda); 0.1 in their files."""
    max_prompt_length: Optional[int] = None
    """dpo/orpo: keep only the last N tokens of each prompt; None for no limit."""
    max_completion_length: Optional[int] = None
    """dpo/orpo: keep only the first N tokens of each chosen/rejected reply; None for no limit."""
    ref_model: Optional[str] = None
    """dpo: a separate reference model (hub id or folder). None: with LoRA the base model with the
    adapters disabled (no second copy in memory); with full fine-tuning a frozen copy."""
    args: dict[str, Any] = field(default_factory=dict)
    """Passed through to TRL's config for this trainer (SFTConfig, DPOConfig or ORPOConfig)."""

    def __post_init__(self) -> None:
        _require(self.learning_rate > 0, f"trainer.learning_rate must be > 0 (got {self.learning_rate}).")
        _require(self.epochs > 0, f"trainer.epochs must be > 0 (got {self.epochs}).")
        _require(
            self.max_steps == -1 or self.max_steps > 0,
            f"trainer.max_steps must be -1 (use epochs) or > 0 (got {self.max_steps}).",
        )
        _require(self.batch_size >= 1, f"trainer.batch_size must be >= 1 (got {self.batch_size}).")
        _require(
            self.gradient_accumulation >= 1,
            f"trainer.gradient_accumulation must be >= 1 (got {self.gradient_accumulation}).",
        )
        _require(self.logging_steps >= 1, f"trainer.logging_steps must be >= 1 (got {self.logging_steps}).")
        preference = {"beta": self.beta, "max_prompt_length": self.max_prompt_length,
                      "max_completion_length": self.max_completion_length, "ref_model": self.ref_model}  # fmt: skip
        if self.kind in PREFERENCE_TRAINERS:
            _require(self.beta is not None and self.beta > 0, f"trainer.beta must be > 0 (got {self.beta}).")
            for key in ("max_prompt_length", "max_completion_length"):
                value = preference[key]
                _require(value is None or value >= 1, f"trainer.{key} must be >= 1 or null (got {value}).")
            _require(
                self.ref_model is None or self.kind is TrainerKind.dpo,
                "trainer.ref_model applies to dpo only (ORPO needs no reference model).",
            )
        else:
            for key, value in preference.items():
                _require(value is None, f"trainer.{key} applies to trainer=dpo/orpo only, not {self.kind.value}.")
        fields = TRL_FIELDS[self.kind]
        for key in self.args:
            if key in OWNED_SFT_KEYS:
                raise ConfigError(f"trainer.args.{key} is set by aitraining: set {OWNED_SFT_KEYS[key]} instead.")
            if key not in fields:
                raise ConfigError(
                    f"trainer.args.{key} is not a field of TRL's {TRL_CONFIG_NAMES[self.kind]}/TrainingArguments."
                    f"{closest(key, fields)}"
                )


@dataclass
class AccelConfig:
    """`accel=`: an optional accelerator; the resolver checks it can be used before weights load."""

    kind: Accel = Accel.none
    supported_model_types: list[str] = field(default_factory=list)
    """Model types (config.json `model_type`) the accelerator may be used with."""

    def __post_init__(self) -> None:
        _require(
            self.kind is Accel.none or bool(self.supported_model_types),
            f"accel.supported_model_types is empty: list the model types {self.kind.value} may be used with.",
        )


class Bnb4bitType(Enum):
    nf4 = "nf4"
    fp4 = "fp4"


@dataclass
class QuantConfig:
    """`quant=`: load the base model quantized with bitsandbytes (LoRA trains on top)."""

    kind: Quant = Quant.none
    quant_type: Bnb4bitType = Bnb4bitType.nf4
    """4-bit only: nf4 (QLoRA's choice) or fp4."""
    double_quant: bool = True
    """4-bit only: quantize the quantization constants too (saves ~0.4 bit/param)."""


@dataclass
class PeftConfig:
    """`peft=`: LoRA adapters (`lora`) or full fine-tuning (`none`)."""

    kind: PeftKind = PeftKind.lora
    r: int = 16
    """LoRA rank."""
    alpha: int = 32
    """LoRA scaling numerator (scale = alpha / r)."""
    dropout: float = 0.05
    target_modules: Any = field(default_factory=lambda: list(SEVEN_PROJECTIONS))
    """Module names to adapt, `all-linear`, or a comma-separated string. The default seven
    projections are narrowed to those the model has (all linear layers if it has none of them)."""

    def __post_init__(self) -> None:
        if self.kind is PeftKind.none:
            return
        _require(self.r >= 1, f"peft.r must be >= 1 (got {self.r}).")
        _require(self.alpha > 0, f"peft.alpha must be > 0 (got {self.alpha}).")
        _require(0 <= self.dropout < 1, f"peft.dropout must be in [0, 1) (got {self.dropout}).")
        modules = self.target_modules
        if isinstance(modules, str):
            modules = [m.strip() for m in modules.split(",") if m.strip()]
        _require(
            isinstance(modules, list) and bool(modules) and all(isinstance(m, str) for m in modules),
            f"peft.target_modules must be a list of module names or 'all-linear' (got {self.target_modules!r}).",
        )
        _require(
            "all-linear" not in modules or modules == ["all-linear"],
            "peft.target_modules: 'all-linear' cannot be combined with module names.",
        )
        self.target_modules = list(modules)


@dataclass
class DataConfig:
    """`data=`: where the training examples come from and what shape they have."""

    path: str = MISSING
    """A file (.json/.jsonl/.csv/.parquet), a folder with train.* (and validation.*), a hub
    dataset id, or `pkg:samples/<file>` for data shipped with aitraining."""
    format: DataFormat = DataFormat.auto
    text_column: str = "text"
    """Column holding raw text (format=text)."""
    messages_column: str = "messages"
    """Column holding role/content lists (format=messages)."""
    train_split: str = "train"
    valid_split: Optional[str] = None
    """Split (or folder file) used for evaluation; None for no evaluation set."""
    valid_size: Optional[float] = None
    """Carve this fraction of the training data out as the evaluation set (shuffled with the
    run's seed), when there is no validation split."""
    max_samples: Optional[int] = None
    """Use only the first N training examples; None for all."""
    columns: dict[str, str] = field(default_factory=dict)
    """Rename columns before anything else, e.g. {question: instruction, answer: output}."""
    use_sharegpt_mapping: bool = False
    """ShareGPT data: keep the from/value records and render them through a role/content mapping
    (Unsloth's get_chat_template mapping when Unsloth is used) instead of converting them."""
    sharegpt_roles: dict[str, str] = field(default_factory=dict)
    """Extra ShareGPT roles and the chat roles they become, e.g. {observation: tool}. human, gpt
    and system are always mapped."""

    def __post_init__(self) -> None:
        _require(bool(self.path.strip()), "data.path is empty: give a file, a folder or a hub dataset id.")
        _require(
            self.valid_size is None or 0 < self.valid_size < 1,
            f"data.valid_size must be a fraction in (0, 1) or null (got {self.valid_size}).",
        )
        _require(
            self.valid_size is None or self.valid_split is None,
            "data.valid_size and data.valid_split are both set: choose one source for the evaluation set.",
        )
        _require(
            self.max_samples is None or self.max_samples >= 1,
            f"data.max_samples must be >= 1 or null (got {self.max_samples}).",
        )


# --------------------------------------------------------------------------- the whole run

_PROJECT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass
class Config:
    """The whole run. Top-level keys plus one node per group."""

    model: ModelConfig = field(default_factory=ModelConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    accel: AccelConfig = field(default_factory=AccelConfig)
    quant: QuantConfig = field(default_factory=QuantConfig)
    peft: PeftConfig = field(default_factory=PeftConfig)
    data: DataConfig = field(default_factory=DataConfig)
    project_name: str = "aitraining"
    """Names the run; the default output folder is outputs/<project_name>/<time>."""
    output_dir: str = "outputs"
    """Where a single run writes (conf/config.yaml: a fresh outputs/<project_name>/<time>). A
    folder that already holds a run is refused unless overwrite=true. Sweep jobs write into
    their own numbered folders under the sweep folder instead."""
    overwrite: bool = False
    """Allow writing into an output_dir that already holds a run."""
    seed: int = 42
    """Seeds Python, NumPy, torch, data shuffling and LoRA init. 0 is a valid seed."""

    def __post_init__(self) -> None:
        _require(
            bool(_PROJECT_NAME.match(self.project_name)),
            f"project_name '{self.project_name}' must be a folder name: letters, digits, '.', '_' or '-'.",
        )
        _require(
            self.quant.kind is Quant.none or self.peft.kind is PeftKind.lora,
            f"quant={self.quant.kind.value} needs peft=lora: quantized weights cannot be fully fine-tuned.",
        )


# --------------------------------------------------------------------------- Hydra glue

SCHEMA_NAME = "aitraining_schema"
GROUP_SCHEMAS = {
    "model": ModelConfig,
    "trainer": TrainerConfig,
    "accel": AccelConfig,
    "quant": QuantConfig,
    "peft": PeftConfig,
    "data": DataConfig,
}


def register_configs() -> None:
    """Register the schema in Hydra's ConfigStore (conf/config.yaml lists it first)."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name=SCHEMA_NAME, node=Config)


def to_config(cfg: DictConfig) -> Config:
    """Validate a composed config: type conversion plus every `__post_init__` check."""
    try:
        return OmegaConf.to_object(cfg)  # type: ignore[return-value]
    except ConfigError:
        raise
    except OmegaConfBaseException as exc:
        cause = exc.__cause__ if isinstance(exc.__cause__, ConfigError) else None
        if cause is not None:
            raise cause from None
        key = getattr(exc, "full_key", None)
        raise ConfigError(f"{key}: {exc.msg}" if key else str(exc)) from None
