"""Data formats: detected from the columns or checked, and each record converted to the shape the
trainers take (TRL's dataset shapes). Plain Python.

Shapes handed on:
- text              -> {"text": str}
- alpaca, prompt_completion -> {"prompt": str, "completion": str}
- messages, sharegpt -> {"messages": [{"role", "content", ...}, ...], "tools": [...]}  (rendered by the
  chat template; typed content parts, tool calls and loss weights normalized by chat.py; "tools" only
  when the record, or data.tools, offers some)
- sharegpt with data.use_sharegpt_mapping=true -> {"conversations": [{"from", "value"}, ...]}, kept as
  they are (roles checked against the mapping) and rendered through a role/content mapping; data with
  tool turns is converted to messages instead (a role/content mapping has no tool roles).
- preference        -> {"prompt", "chosen", "rejected"} (strings, or message lists for chat pairs)
- unpaired          -> {"prompt", "completion", "label": bool} (strings, or message lists for chat examples)
- prompt            -> {"prompt", **every other column} (prompt: a string or a message list)
"""

from __future__ import annotations

import logging
from typing import Any, Optional

from aitraining.choices import DataFormat
from aitraining.config.data import DataConfig
from aitraining.data import chat
from aitraining.data.read import Record
from aitraining.errors import DataError

log = logging.getLogger(__name__)

SHAREGPT_ROLES = chat.SHAREGPT_ROLES

ALPACA_PROMPT = "### Instruction:\n{instruction}\n\n### Response:\n"
ALPACA_PROMPT_WITH_INPUT = "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"


def detect_format(columns: set[str], cfg: DataConfig) -> DataFormat:
    if {"chosen", "rejected"} <= columns:
        return DataFormat.preference
    if "label" in columns and ({"prompt", "completion"} <= columns or cfg.messages_column in columns):
        return DataFormat.unpaired
    if cfg.messages_column in columns:
        return DataFormat.messages
    if "conversations" in columns:
        return DataFormat.sharegpt
    if {"instruction", "output"} <= columns:
        return DataFormat.alpaca
    if {"prompt", "completion"} <= columns:
        return DataFormat.prompt_completion
    if "prompt" in columns or "instruction" in columns:
        return DataFormat.prompt
    if cfg.text_column in columns:
        return DataFormat.text
    raise DataError(
        f"cannot detect the data format from columns {sorted(columns)}. Expected one of: "
        f"'{cfg.text_column}' (text), instruction+output (alpaca), '{cfg.messages_column}' (messages), "
        "conversations (sharegpt), prompt+completion (prompt_completion), prompt+completion+label or "
        f"'{cfg.messages_column}'+label (unpaired), prompt or instruction alone (prompt); or set data.format "
        "and data.text_column."
    )


def _required_columns(fmt: DataFormat, cfg: DataConfig) -> list[str]:
    return {
        DataFormat.text: [cfg.text_column],
        DataFormat.alpaca: ["instruction", "output"],
        DataFormat.messages: [cfg.messages_column],
        DataFormat.sharegpt: ["conversations"],
        DataFormat.prompt_completion: ["prompt", "completion"],
        DataFormat.preference: ["chosen", "rejected"],
        DataFormat.unpaired: ["label"],
        DataFormat.prompt: [],
    }[fmt]


def _optional_columns(fmt: DataFormat, cfg: DataConfig) -> list[str]:
    """Columns a format reads when a record has them (for the detection log line)."""
    return {
        DataFormat.alpaca: ["input", "system"],
        DataFormat.messages: [chat.TOOLS_COLUMN],
        DataFormat.sharegpt: [chat.SYSTEM_COLUMN, chat.TOOLS_COLUMN],
    }.get(fmt, [])


def columns_read(fmt: DataFormat, cfg: DataConfig, columns: set[str]) -> list[str]:
    """The columns of `columns` that format `fmt` reads."""
    return [c for c in (*_required_columns(fmt, cfg), *_optional_columns(fmt, cfg)) if c in columns]


def _string(record: Record, key: str) -> str:
    value = record.row.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DataError(f"{record.where}: '{key}' must be a string, got {type(value).__name__}.")
    return value


def _alpaca_prompt(record: Record) -> str:
    extra = _string(record, "input")
    template = ALPACA_PROMPT_WITH_INPUT if extra.strip() else ALPACA_PROMPT
    prompt = template.format(instruction=_string(record, "instruction"), input=extra)
    system = _string(record, "system")
    return f"{system}\n\n{prompt}" if system.strip() else prompt


def _from_alpaca(record: Record, cfg: DataConfig) -> Optional[dict[str, Any]]:
    instruction, output = _string(record, "instruction"), _string(record, "output")
    if not instruction.strip() or not output.strip():
        return None
    return {"prompt": _alpaca_prompt(record), "completion": output}


def _from_prompt_completion(record: Record, cfg: DataConfig) -> Optional[dict[str, Any]]:
    prompt, completion = _string(record, "prompt"), _string(record, "completion")
    return {"prompt": prompt, "completion": completion} if completion.strip() else None


def _from_text(record: Record, cfg: DataConfig) -> Optional[dict[str, Any]]:
    text = _string(record, cfg.text_column)
    return {"text": text} if text.strip() else None


def _turns(record: Record, key: str) -> list[Any]:
    turns = record.row.get(key)
    if not isinstance(turns, list):
        raise DataError(f"{record.where}: '{key}' must be a list of turns, got {type(turns).__name__}.")
    return turns


def _tools(record: Record, cfg: DataConfig) -> dict[str, Any]:
    """{"tools": [...]} from the record's tools column, else from data.tools; {} when none."""
    tools = chat.tools_list(record.row.get(chat.TOOLS_COLUMN), record.where)
    if tools is None and cfg.tools:
        tools = chat.dataset_tools(cfg.tools)
    return {"tools": tools} if tools else {}


def _from_messages(record: Record, cfg: DataConfig) -> Optional[dict[str, Any]]:
    turns = _turns(record, cfg.messages_column)
    if not turns:
        raise DataError(f"{record.where}: '{cfg.messages_column}' is an empty conversation.")
    return {"messages": chat.openai_messages(turns, record.where, cfg.messages_column), **_tools(record, cfg)}


def _sharegpt_turns(record: Record, cfg: DataConfig, tool_turns: bool = False) -> list[dict[str, Any]]:
    """The conversation's turns, each checked to have from/value and a role inside the mapping
    (with `tool_turns`, ShareGPT's function_call / observation turns too)."""
    turns = _turns(record, "conversations")
    if not turns:
        raise DataError(f"{record.where}: 'conversations' is an empty conversation.")
    roles = {**SHAREGPT_ROLES, **cfg.sharegpt_roles}
    allowed = chat.sharegpt_roles_allowed(roles) if tool_turns else list(roles)
    for number, turn in enumerate(turns, start=1):
        if not isinstance(turn, dict) or not {"from", "value"} <= turn.keys():
            raise DataError(f"{record.where}: turn {number} must be an object with 'from' and 'value'.")
        if turn["from"] not in allowed:
            raise DataError(
                f"{record.where}: turn {number} has role '{turn['from']}', outside the ShareGPT mapping "
                f"({', '.join(allowed)}). Map it with data.sharegpt_roles, e.g. "
                f"'+data.sharegpt_roles={{{turn['from']}:user}}'."
            )
    return turns


def _from_sharegpt(record: Record, cfg: DataConfig) -> Optional[dict[str, Any]]:
    roles = {**SHAREGPT_ROLES, **cfg.sharegpt_roles}
    turns = _sharegpt_turns(record, cfg, tool_turns=True)
    system = record.row.get(chat.SYSTEM_COLUMN)
    messages = chat.sharegpt_messages(turns, roles, record.where, system)
    if cfg.use_sharegpt_mapping:  # kept as from/value turns (load_examples converts data with tool turns instead)
        sources = ["system"] * (len(messages) - len(turns)) + [t["from"] for t in turns]  # the system column first
        return {"conversations": [_sharegpt_turn(source, m) for source, m in zip(sources, messages, strict=True)]}
    return {"messages": messages, **_tools(record, cfg)}


def _sharegpt_turn(source: str, message: dict[str, Any]) -> dict[str, Any]:
    """A checked message back as a ShareGPT turn (its text parts joined, its loss weight kept)."""
    turn = {"from": source, "value": message["content"]}
    if "loss_weight" in message:
        turn["loss_weight"] = 0
    return turn


def _reply(record: Record, key: str, roles: dict[str, str], conversational: bool) -> Any:
    """A chosen/rejected reply: a string, a ShareGPT turn, or a list of messages."""
    value = record.row[key]
    if isinstance(value, dict) and {"from", "value"} <= value.keys():
        value = value["value"]
    if isinstance(value, str):
        return [{"role": "assistant", "content": value}] if conversational else value
    if isinstance(value, list) and conversational and all(isinstance(m, dict) and "content" in m for m in value):
        return [{"role": m.get("role", roles.get(m.get("from", ""), "assistant")), "content": m["content"]}
                for m in value]  # fmt: skip
    raise DataError(f"{record.where}: '{key}' must be a string, a ShareGPT turn or a list of messages.")


def _from_preference(record: Record, cfg: DataConfig) -> Optional[dict[str, Any]]:
    roles = {**SHAREGPT_ROLES, **cfg.sharegpt_roles}
    if "conversations" in record.row:
        turns = _sharegpt_turns(record, cfg)
        prompt: Any = [{"role": roles[t["from"]], "content": t["value"]} for t in turns]
    elif "prompt" in record.row:
        prompt = record.row["prompt"]
        if not isinstance(prompt, (str, list)):
            raise DataError(f"{record.where}: 'prompt' must be a string or a list of messages.")
    else:
        raise DataError(
            f"{record.where}: preference data needs 'prompt' (or ShareGPT 'conversations') with 'chosen' and "
            f"'rejected'; it has {sorted(record.row)}."
        )
    conversational = isinstance(prompt, list)
    chosen, rejected = (_reply(record, k, roles, conversational) for k in ("chosen", "rejected"))
    if not chosen or not rejected:
        return None
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


LABELS = {True: True, False: False, "true": True, "false": False, "1": True, "0": False}  # 1 == True, 0 == False


def _label(record: Record) -> bool:
    value = record.row["label"]
    key = value.strip().lower() if isinstance(value, str) else value
    if isinstance(key, (bool, int, str)) and key in LABELS:
        return LABELS[key]
    raise DataError(
        f"{record.where}: 'label' must be true (a desirable completion) or false (an undesirable one), got {value!r}."
    )


def _from_unpaired(record: Record, cfg: DataConfig) -> Optional[dict[str, Any]]:
    """prompt + completion + label, or messages ending with the assistant's reply + label."""
    label = _label(record)
    if "completion" in record.row and "prompt" in record.row:
        prompt, completion = record.row["prompt"], record.row["completion"]
        if isinstance(prompt, list) and isinstance(completion, str):
            completion = [{"role": "assistant", "content": completion}]
        if not (isinstance(prompt, str) and isinstance(completion, str)) and not (
            isinstance(prompt, list) and isinstance(completion, list)
        ):
            raise DataError(
                f"{record.where}: 'prompt' and 'completion' must both be strings or both lists of messages."
            )
        return {"prompt": prompt, "completion": completion, "label": label} if completion else None
    if cfg.messages_column not in record.row:
        raise DataError(
            f"{record.where}: unpaired data needs 'prompt' + 'completion' + 'label', or '{cfg.messages_column}' + "
            f"'label'; it has {sorted(record.row)}."
        )
    messages = _from_messages(record, cfg)
    assert messages is not None
    turns = messages["messages"]
    if turns[-1]["role"] != "assistant" or len(turns) < 2:
        raise DataError(
            f"{record.where}: '{cfg.messages_column}' must end with the assistant's reply (the completion the label "
            f"judges), after at least one other turn; its last turn is '{turns[-1]['role']}'."
        )
    return {"prompt": turns[:-1], "completion": turns[-1:], "label": label}


def _from_prompt(record: Record, cfg: DataConfig) -> Optional[dict[str, Any]]:
    """A prompt (the 'prompt' column, or an Alpaca instruction [+ input]) and every other column as it is."""
    if "prompt" in record.row:
        prompt = record.row["prompt"]
        if not isinstance(prompt, (str, list)):
            raise DataError(f"{record.where}: 'prompt' must be a string or a list of messages.")
        consumed = {"prompt"}
    elif "instruction" in record.row:
        prompt = _alpaca_prompt(record) if _string(record, "instruction").strip() else ""
        consumed = {"instruction", "input", "system"}
    else:
        raise DataError(f"{record.where}: prompt data needs 'prompt' or 'instruction'; it has {sorted(record.row)}.")
    if not prompt:
        return None
    return {"prompt": prompt, **{k: v for k, v in record.row.items() if k not in consumed}}


CONVERTERS = {
    DataFormat.text: _from_text,
    DataFormat.alpaca: _from_alpaca,
    DataFormat.prompt_completion: _from_prompt_completion,
    DataFormat.messages: _from_messages,
    DataFormat.sharegpt: _from_sharegpt,
    DataFormat.preference: _from_preference,
    DataFormat.unpaired: _from_unpaired,
    DataFormat.prompt: _from_prompt,
}
TRL_FORMAT = {
    DataFormat.text: DataFormat.text,
    DataFormat.alpaca: DataFormat.prompt_completion,
    DataFormat.prompt_completion: DataFormat.prompt_completion,
    DataFormat.messages: DataFormat.messages,
    DataFormat.sharegpt: DataFormat.messages,
    DataFormat.preference: DataFormat.preference,
    DataFormat.unpaired: DataFormat.unpaired,
    DataFormat.prompt: DataFormat.prompt,
}


def trl_format(fmt: DataFormat, cfg: DataConfig) -> DataFormat:
    if fmt is DataFormat.sharegpt and cfg.use_sharegpt_mapping:
        return DataFormat.sharegpt
    return TRL_FORMAT[fmt]


def rename_columns(records: list[Record], columns: dict[str, str]) -> list[Record]:
    if not columns:
        return records
    return [Record({columns.get(k, k): v for k, v in r.row.items()}, r.where) for r in records]


def convert(records: list[Record], fmt: DataFormat, cfg: DataConfig, source: str) -> list[dict[str, Any]]:
    """Check every record has what `fmt` needs and convert it; drop empty ones (counted)."""
    if not records:
        raise DataError(f"{source}: holds no records.")
    needed = _required_columns(fmt, cfg)
    for record in records:
        missing = [c for c in needed if c not in record.row]
        if missing:
            raise DataError(
                f"{record.where}: missing column(s) {missing} needed by format '{fmt.value}'; "
                f"it has {sorted(record.row)}."
            )
    converter = CONVERTERS[fmt]
    rows = [row for row in (converter(r, cfg) for r in records) if row is not None]
    dropped = len(records) - len(rows)
    if not rows:
        raise DataError(f"{source}: empty after dropping {dropped} record(s) with empty {'/'.join(needed)}.")
    if dropped:
        log.warning("Dropped %d of %d record(s) in %s with empty %s.", dropped, len(records), source, "/".join(needed))
    return rows
