"""Built-in chat templates for base models that ship without one (`model.chat_template=NAME`).

Each marks the assistant's reply with `{% generation %}` ... `{% endgeneration %}`, so the loss can
fall on assistant turns only (TRL's assistant_only_loss; `return_assistant_tokens_mask`). They
follow the official formats of each family; the special tokens must exist in the tokenizer for the
format to mean anything to the model (base checkpoints of these families have them).

`setup` gives a run's tokenizer its template (the tokenizer's own, a built-in, or a .jinja file);
Unsloth's ShareGPT mapping is the one other road (aitraining/unsloth_accel.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from aitraining.choices import DataFormat
from aitraining.errors import ConfigError

if TYPE_CHECKING:
    from aitraining.config import Config


CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\\n' }}"
    "{% else %}{{ message['content'] + '<|im_end|>\\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

QWEN2_5 = (
    "{% if messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}"
    "{% endif %}" + CHATML
)

LLAMA3 = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ message['content'] | trim + '<|eot_id|>' }}{% endgeneration %}"
    "{% else %}{{ message['content'] | trim + '<|eot_id|>' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)

# Mistral has no system role: a system message is prepended to the first user turn.
MISTRAL = (
    "{{ bos_token }}"
    "{% set system = messages[0]['content'] + '\\n\\n' if messages[0]['role'] == 'system' else '' %}"
    "{% for message in messages if message['role'] != 'system' %}"
    "{% if message['role'] == 'user' %}"
    "{{ '[INST] ' + (system if loop.first else '') + message['content'] + ' [/INST]' }}"
    "{% else %}{% generation %}{{ ' ' + message['content'] + eos_token }}{% endgeneration %}{% endif %}"
    "{% endfor %}"
)

# Gemma calls the assistant "model" and has no system role (prepended to the first user turn).
GEMMA = (
    "{{ bos_token }}"
    "{% set system = messages[0]['content'] + '\\n\\n' if messages[0]['role'] == 'system' else '' %}"
    "{% for message in messages if message['role'] != 'system' %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<start_of_turn>model\\n' }}"
    "{% generation %}{{ message['content'] | trim + '<end_of_turn>' }}{% endgeneration %}{{ '\\n' }}"
    "{% else %}"
    "{{ '<start_of_turn>user\\n' + (system if loop.first else '') + message['content'] | trim + '<end_of_turn>\\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"
)

TEMPLATES = {"chatml": CHATML, "llama3": LLAMA3, "mistral": MISTRAL, "gemma": GEMMA, "qwen2.5": QWEN2_5}


def resolve(name_or_path: str) -> str:
    """The jinja text of a built-in template, or of a .jinja file."""
    if name_or_path in TEMPLATES:
        return TEMPLATES[name_or_path]
    path = Path(name_or_path).expanduser()
    if path.suffix in (".jinja", ".j2") and path.is_file():
        return path.read_text(encoding="utf-8")
    raise ConfigError(
        f"model.chat_template={name_or_path}: not a built-in template ({', '.join(TEMPLATES)}) "
        "nor an existing .jinja file."
    )


def has_generation_markers(template: str | None) -> bool:
    return bool(template) and "{% generation %}" in template.replace("{%- generation %}", "{% generation %}")


@dataclass
class Template:
    """How a run renders chat examples: which template, and whether it can mask the loss."""

    source: str  # "tokenizer", "built-in chatml", "file x.jinja", "unsloth:chatml (ShareGPT mapping)"
    masks_assistant: bool  # marks assistant replies with {% generation %}
    renders_sharegpt: bool = False  # reads ShareGPT's from/value records as they are (a role mapping)


CHAT_FORMATS = (DataFormat.messages, DataFormat.sharegpt, DataFormat.preference, DataFormat.unpaired, DataFormat.prompt)


def setup(tokenizer, cfg: Config, data_format: DataFormat) -> Optional[Template]:
    """Give the tokenizer the chat template the run uses (None for data that is not chat)."""
    if data_format not in CHAT_FORMATS:
        return None
    name = cfg.model.chat_template
    if name is not None:
        tokenizer.chat_template = resolve(name)
        source = f"built-in {name}" if name in TEMPLATES else f"file {name}"
    elif getattr(tokenizer, "chat_template", None):
        source = "tokenizer"
    else:
        raise ConfigError(
            f"model.chat_template: the tokenizer of {cfg.model.name} has no chat template, and the data is chat "
            f"data. Set model.chat_template to one of {', '.join(TEMPLATES)} or a .jinja file.",
            key="model.chat_template",
        )
    return Template(source, masks_assistant=has_generation_markers(tokenizer.chat_template))
