"""Everything aitraining knows about Unsloth, in one place.

- probes: is it installed, is there a GPU, does `import unsloth` work (the resolver asks them, in
  that order, through `environment()`; importing Unsloth patches transformers, so it comes last);
- the loader: `FastLanguageModel.from_pretrained` + `get_peft_model`; the PeftModel goes to TRL
  without a `peft_config`;
- the checkpointing rule: Unsloth applies its own gradient checkpointing
  (`use_gradient_checkpointing="unsloth"`), so the trainer must not add the Hugging Face one;
- the ShareGPT road: `data.use_sharegpt_mapping=true` renders from/value records through Unsloth's
  `get_chat_template(mapping=...)` when it knows the template.

Importing this module imports nothing heavy; each function imports Unsloth when it runs.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Optional

from aitraining import adapters
from aitraining.chat_templates import Template
from aitraining.choices import DataFormat, PeftKind, Quant

if TYPE_CHECKING:
    from aitraining.config import Config
    from aitraining.loading import Loaded
    from aitraining.resolver import Environment, Imported

log = logging.getLogger(__name__)

# ShareGPT's keys and roles, as Unsloth's get_chat_template(mapping=...) takes them.
SHAREGPT_MAPPING = {"role": "from", "content": "value", "user": "human", "assistant": "gpt"}


# --------------------------------------------------------------------------- probes


def installed() -> bool:
    return importlib.util.find_spec("unsloth") is not None


def has_gpu() -> bool:
    import torch  # torch before Unsloth is fine; transformers, trl and peft must come after it

    return torch.cuda.is_available()


def try_import() -> Imported:
    """`import unsloth` in this process. Every exception counts as a failure: without a GPU
    Unsloth can raise ImportError, NotImplementedError or RuntimeError."""
    from aitraining.resolver import Imported

    try:
        import unsloth
    except Exception as exc:
        text = str(exc).strip()
        first = text.splitlines()[0] if text else ""
        return Imported(error=f"{type(exc).__name__}: {first}" if first else type(exc).__name__)
    return Imported(version=getattr(unsloth, "__version__", None))


def environment() -> Environment:
    """This machine's facts, for the resolver."""
    from aitraining.resolver import Environment

    return Environment(installed, has_gpu, try_import)


# --------------------------------------------------------------------------- loading


def load(cfg: Config, path: str, model_type: str) -> Loaded:
    """The model through FastLanguageModel, with its LoRA already attached (or full fine-tuning)."""
    from unsloth import FastLanguageModel

    from aitraining.loading import Loaded, dtype_name, module_names, resolve_target_modules, torch_dtype

    dtype = torch_dtype(cfg.model.dtype)
    model, _ = FastLanguageModel.from_pretrained(
        model_name=path,
        max_seq_length=cfg.model.max_seq_length,
        dtype=dtype,
        load_in_4bit=cfg.quant.kind is Quant.int4,
        load_in_8bit=cfg.quant.kind is Quant.int8,
        full_finetuning=cfg.peft.kind is PeftKind.none,
        attn_implementation=cfg.model.attn_implementation,
        trust_remote_code=cfg.model.trust_remote_code,
        revision=cfg.model.revision,
    )
    if cfg.peft.kind is PeftKind.none:
        return Loaded(model, None, dtype_name(dtype), None)
    targets = resolve_target_modules(list(cfg.peft.target_modules), module_names(model), model_type)
    adapters.check_modules("peft.modules_to_save", list(cfg.peft.modules_to_save), module_names(model))
    # DoRA, rsLoRA, the initialisation and modules_to_save go through as PEFT arguments (use_dora via
    # get_peft_model's **kwargs, which it hands to LoraConfig).
    model = FastLanguageModel.get_peft_model(
        model,
        **adapters.lora_kwargs(cfg),
        target_modules=targets,
        use_gradient_checkpointing="unsloth" if cfg.trainer.gradient_checkpointing else False,
        random_state=cfg.seed,
    )
    # The checkpointing rule: Unsloth's own is in place; TRL must not enable the HF one again.
    return Loaded(model, None, dtype_name(dtype), targets, gradient_checkpointing_by_model=True)


# --------------------------------------------------------------------------- the ShareGPT road


def sharegpt_template(tokenizer, cfg: Config, data_format: DataFormat) -> Optional[Template]:
    """Unsloth's mapped template for ShareGPT records kept as they are, when it applies; None when
    the standard template setup (aitraining.chat_templates.setup) renders the data instead."""
    if data_format is not DataFormat.sharegpt:
        return None
    from unsloth.chat_templates import CHAT_TEMPLATES, get_chat_template

    name = cfg.model.chat_template
    if name is None or name not in CHAT_TEMPLATES:
        log.info(
            "ShareGPT mapping: Unsloth's get_chat_template needs a template it knows (model.chat_template=%s); "
            "the runner's own mapping renders the records instead.",
            name,
        )
        return None
    if cfg.data.sharegpt_roles:
        log.info("ShareGPT mapping: extra roles %s; the runner's own mapping renders them.", cfg.data.sharegpt_roles)
        return None
    get_chat_template(tokenizer, chat_template=name, mapping=SHAREGPT_MAPPING, map_eos_token=False)
    # Unsloth's templates carry no {% generation %} marks: the loss covers every token (encode warns).
    return Template(f"unsloth:{name} (ShareGPT mapping)", masks_assistant=False, renders_sharegpt=True)


@contextlib.contextmanager
def inference_mode(model) -> Iterator[None]:
    """A model Unsloth trains generates through FastLanguageModel.for_inference (and trains again after)."""
    from unsloth import FastLanguageModel

    FastLanguageModel.for_inference(model)
    try:
        yield
    finally:
        FastLanguageModel.for_training(model)


def load_for_inference(source: str, max_seq_length: int, dtype, load_in_4bit: bool, trust_remote_code: bool):
    """A saved run (its adapter/, merged/ or model/) through Unsloth's FastLanguageModel, ready to generate."""
    from unsloth import FastLanguageModel

    model, _ = FastLanguageModel.from_pretrained(
        model_name=source,
        max_seq_length=max_seq_length,
        dtype=dtype,
        load_in_4bit=load_in_4bit,
        trust_remote_code=trust_remote_code,
    )
    FastLanguageModel.for_inference(model)
    return model
