"""Built-in chat templates for base models that ship without one (`model.chat_template=NAME`).

Each marks the assistant's reply with `{% generation %}` ... `{% endgeneration %}`, so the loss can
fall on assistant turns only (TRL's assistant_only_loss; `return_assistant_tokens_mask`). They
follow the official formats of each family; the special tokens must exist in the tokenizer for the
format to mean anything to the model (base checkpoints of these families have them).

The built-in `qwen2.5` and `llama3` render tools, tool calls and tool results as Qwen 2.5's and
Llama 3.1's own templates do (tests compare them with the originals TRL ships).

`setup` gives a run's tokenizer its template (the tokenizer's own, TRL's training variant of it when
it lacks the marks, a built-in, or a .jinja file); Unsloth's ShareGPT mapping is the one other road
(aitraining/unsloth_accel.py). `require_tool_support` / `require_reasoning_support`: the data's
needs against the template, before the model loads.
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

# Qwen 2.5's own format (its tokenizer's template), tool use included: the tools in the system turn,
# each call as <tool_call>{"name", "arguments"}</tool_call> in the assistant turn, tool results as a
# user turn of <tool_response> blocks. The marks cover what the model writes: the reply, its calls, <|im_end|>.
QWEN2_5 = (
    "{% if tools %}"
    "{{ '<|im_start|>system\\n' }}"
    "{{ messages[0]['content'] if messages[0]['role'] == 'system' "
    "else 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}"
    "{{ '\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n"
    "You are provided with function signatures within <tools></tools> XML tags:\\n<tools>' }}"
    "{% for tool in tools %}{{ '\\n' }}{{ tool | tojson }}{% endfor %}"
    "{{ '\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within "
    '<tool_call></tool_call> XML tags:\\n<tool_call>\\n{"name": <function-name>, "arguments": <args-json-object>}'
    "\\n</tool_call><|im_end|>\\n' }}"
    "{% elif messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}"
    "{% endif %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\\n' }}{% generation %}"
    "{% if message['content'] %}{{ message['content'] }}{% if message.tool_calls %}{{ '\\n' }}{% endif %}{% endif %}"
    "{% for tool_call in message.tool_calls or [] %}"
    "{% set call = tool_call.function if tool_call.function is defined else tool_call %}"
    "{% if not loop.first %}{{ '\\n' }}{% endif %}"
    '{{ \'<tool_call>\\n{"name": "\' + call.name + \'", "arguments": \' }}{{ call.arguments | tojson }}'
    "{{ '}\\n</tool_call>' }}"
    "{% endfor %}"
    "{{ '<|im_end|>' }}{% endgeneration %}{{ '\\n' }}"
    "{% elif message['role'] == 'tool' %}"
    "{% if loop.first or messages[loop.index0 - 1]['role'] != 'tool' %}{{ '<|im_start|>user' }}{% endif %}"
    "{{ '\\n<tool_response>\\n' + message['content'] + '\\n</tool_response>' }}"
    "{% if loop.last or messages[loop.index0 + 1]['role'] != 'tool' %}{{ '<|im_end|>\\n' }}{% endif %}"
    "{% elif not (message['role'] == 'system' and loop.first and tools) %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Llama 3's format; with tools, Llama 3.1's tool use as its tokenizer's template writes it: the
# "Environment: ipython" system turn, the tool schemas in the first user turn, one call per assistant
# turn as {"name", "parameters"}, tool results in ipython turns (as JSON). The marks cover the reply or
# the call and <|eot_id|>.
LLAMA3 = (
    "{{ bos_token }}"
    "{% if tools %}"
    "{% set date_string = date_string if date_string is defined else '26 Jul 2024' %}"
    "{% if messages[0]['role'] == 'system' %}"
    "{% set system_message = messages[0]['content'] | trim %}{% set messages = messages[1:] %}"
    "{% else %}{% set system_message = '' %}{% endif %}"
    "{{ '<|start_header_id|>system<|end_header_id|>\\n\\nEnvironment: ipython\\nCutting Knowledge Date: December 2023"
    "\\nToday Date: ' + date_string + '\\n\\n' + system_message + '<|eot_id|>' }}"
    "{% if messages | length == 0 %}"
    "{{ raise_exception('Cannot put tools in the first user message when there is no first user message!') }}"
    "{% endif %}"
    "{{ '<|start_header_id|>user<|end_header_id|>\\n\\nGiven the following functions, please respond with a JSON for "
    "a function call with its proper arguments that best answers the given prompt.\\n\\nRespond in the format "
    '{"name": function name, "parameters": dictionary of argument name and its value}.'
    "Do not use variables.\\n\\n' }}"
    "{% for t in tools %}{{ t | tojson(indent=4) }}{{ '\\n\\n' }}{% endfor %}"
    "{{ messages[0]['content'] | trim + '<|eot_id|>' }}"
    "{% set messages = messages[1:] %}"
    "{% endif %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% generation %}"
    "{% if message.tool_calls %}"
    "{% if message.tool_calls | length != 1 %}"
    "{{ raise_exception('Llama 3 makes one tool call per assistant turn; this turn has ' "
    "+ (message.tool_calls | length | string) + '.') }}"
    "{% endif %}"
    "{% set call = message.tool_calls[0].function if message.tool_calls[0].function is defined "
    "else message.tool_calls[0] %}"
    "{{ '{\"name\": \"' + call.name + '\", \"parameters\": ' }}{{ call.arguments | tojson }}{{ '}<|eot_id|>' }}"
    "{% else %}{{ message['content'] | trim + '<|eot_id|>' }}{% endif %}"
    "{% endgeneration %}"
    "{% elif message['role'] in ('tool', 'ipython') %}"
    "{{ '<|start_header_id|>ipython<|end_header_id|>\\n\\n' }}{{ message['content'] | tojson }}{{ '<|eot_id|>' }}"
    "{% else %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' "
    "+ message['content'] | trim + '<|eot_id|>' }}"
    "{% endif %}"
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
TOOL_TEMPLATES = ("qwen2.5", "llama3")  # the built-ins that render tools, tool calls and tool results


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
        if getattr(cfg.trainer, "response_only_loss", False) and _training_variant(tokenizer):
            source = "tokenizer, as TRL's training variant (with generation marks)"
    else:
        raise ConfigError(
            f"model.chat_template: the tokenizer of {cfg.model.name} has no chat template, and the data is chat "
            f"data. Set model.chat_template to one of {', '.join(TEMPLATES)} or a .jinja file.",
            key="model.chat_template",
        )
    return Template(source, masks_assistant=has_generation_markers(tokenizer.chat_template))


def _training_variant(tokenizer) -> bool:
    """A tokenizer template without generation marks that TRL knows (Qwen 2.5, Llama 3, Gemma, Phi-3,
    Qwen 3, ...) swapped for TRL's training variant of it, which marks the assistant's output:
    TRL's get_training_chat_template. False (and the template left as it is) otherwise."""
    if not isinstance(tokenizer.chat_template, str) or has_generation_markers(tokenizer.chat_template):
        return False
    from trl.chat_template_utils import get_training_chat_template

    try:
        training = get_training_chat_template(tokenizer)
    except Exception:  # ValueError: a template TRL has no variant of; a template its probes cannot render
        return False
    if training is None:
        return False
    tokenizer.chat_template = training
    return True


def require_tool_support(tokenizer, template: Template) -> None:
    """The data has tools or tool calls: the template must render calls, their arguments and the tool
    results (TRL's supports_tool_calling renders such a conversation and looks for each part)."""
    from trl.chat_template_utils import supports_tool_calling

    if template.renders_sharegpt or not supports_tool_calling(tokenizer):
        raise ConfigError(
            f"model.chat_template: the chat template ({template.source}) has no tool support, and the data has tool "
            f"calls or tools. Set model.chat_template to a built-in with tool support ({', '.join(TOOL_TEMPLATES)}), "
            "a .jinja file that renders tools, tool_calls and tool messages, or use a model whose own template does "
            "(Llama 3.1+, Qwen 2.5, Mistral, Hermes-style).",
            key="model.chat_template",
        )


def require_reasoning_support(tokenizer, template: Template) -> None:
    """The data has reasoning (reasoning parts, reasoning_content): the template must render it."""
    if "reasoning_content" not in str(tokenizer.chat_template):
        raise ConfigError(
            f"model.chat_template: the chat template ({template.source}) does not render reasoning (it never reads "
            "reasoning_content), and the data has reasoning parts. Use a template that renders reasoning_content "
            "(a .jinja file, or a reasoning model's own, e.g. Qwen 3), or drop the reasoning parts.",
            key="model.chat_template",
        )
