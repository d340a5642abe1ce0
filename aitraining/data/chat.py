"""Chat records as people have them, normalized to the message shape transformers' chat templates
take. Pure functions over one record (its row and where it came from): no tokenizer, no torch, so a
record can be converted on its own, lazily, and every mistake names the record.

What comes in:
- messages (OpenAI / transformers): `{role, content}` with `content` a string or a list of typed
  parts; assistant `tool_calls` (`{type: function, function: {name, arguments}}` or flat
  `{name, arguments}`, arguments a dict or a JSON string); `tool` messages with the result
  (`tool_call_id` optional); a `tools` column (a list or a JSON string);
- LLaMA-Factory's typed parts (`{type, value}`): `text`, `reasoning`, and `tool_call` parts whose
  value is a JSON `{name, arguments}`;
- ShareGPT (`{from, value}` turns): `function_call` turns (a JSON call, or a list of calls) and
  `observation` turns (the result), a `tools` column and a `system` column (Glaive / LLaMA-Factory);
- a per-message `loss_weight` (LLaMA-Factory) or `weight` (OpenAI fine-tuning) of 0 or 1.

What goes out: `{role, content: str}` messages, plus `tool_calls` (arguments as dicts, every call with
an `id`), `tool_call_id` on tool results, `reasoning_content`, and `loss_weight: 0` where a message is
kept out of the loss; and the record's tools as `[{type: function, function: {...}}]`.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Optional

from aitraining.errors import ConfigError, DataError

TOOLS_COLUMN = "tools"
SYSTEM_COLUMN = "system"
SHAREGPT_ROLES = {"human": "user", "gpt": "assistant", "system": "system"}
FUNCTION_CALL, OBSERVATION = "function_call", "observation"  # ShareGPT's tool turns (LLaMA-Factory's tags)

TEXT_PARTS = ("text", "input_text", "output_text")  # text under "text" (OpenAI) or "value" (LLaMA-Factory)
REASONING_PARTS = ("reasoning", "thinking")
TOOL_CALL_PARTS = ("tool_call",)
MEDIA_PARTS = ("image", "image_url", "input_image", "audio", "audio_url", "input_audio", "video", "video_url",
               "file", "input_file")  # fmt: skip
LOSS_WEIGHT_KEYS = ("loss_weight", "weight")  # LLaMA-Factory's, OpenAI fine-tuning's


# --------------------------------------------------------------------------- small parts


def _json(value: str, where: str, what: str) -> Any:
    """`value` parsed, or one error: '<where>: <what> not valid JSON (...)'."""
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: {what} not valid JSON ({exc.msg} at column {exc.colno}): {value[:80]!r}.") from None


def content_text(content: Any, where: str, label: str) -> tuple[str, str, list[dict[str, Any]]]:
    """A message's content as (text, reasoning, tool calls): a string as it is; typed parts with
    their text parts joined (as the templates of multimodal models render them, without separator)."""
    if content is None:
        return "", "", []
    if isinstance(content, str):
        return content, "", []
    if not isinstance(content, list):
        raise DataError(
            f"{where}: {label}: 'content' must be a string or a list of typed parts, got {type(content).__name__}."
        )
    texts, reasoning, calls = [], [], []
    for number, part in enumerate(content, start=1):
        kind = part.get("type") if isinstance(part, dict) else None
        if not isinstance(kind, str):
            raise DataError(f"{where}: {label}: content part {number} must be an object with a 'type'.")
        if kind in MEDIA_PARTS:
            raise DataError(
                f"{where}: {label}: content part {number} is of type '{kind}': multimodal training is not supported "
                "(yet); only text parts train. Drop the non-text parts or the record."
            )
        if kind not in (*TEXT_PARTS, *REASONING_PARTS, *TOOL_CALL_PARTS):
            raise DataError(
                f"{where}: {label}: content part {number} has unknown type '{kind}'. Allowed: "
                f"{', '.join((*TEXT_PARTS, *REASONING_PARTS, *TOOL_CALL_PARTS))} (image, audio and video parts are "
                "multimodal, which is not supported yet)."
            )
        value = part.get("text", part.get("value"))
        if not isinstance(value, str):
            raise DataError(
                f"{where}: {label}: content part {number} ('{kind}') needs its text as a string under 'text' or "
                "'value'."
            )
        if kind in TEXT_PARTS:
            texts.append(value)
        elif kind in REASONING_PARTS:
            reasoning.append(value)
        else:
            calls += function_calls(value, where, f"{label}, content part {number}")
    return "".join(texts), "".join(reasoning), calls


def tool_call(raw: Any, where: str, label: str) -> dict[str, Any]:
    """One call in transformers' shape, `{type: function, function: {name, arguments: dict}}` (+ id)."""
    if not isinstance(raw, dict):
        raise DataError(f"{where}: {label}: malformed tool call: expected an object, got {type(raw).__name__}.")
    function = raw.get("function", raw)
    if not isinstance(function, dict):
        raise DataError(
            f"{where}: {label}: malformed tool call: 'function' must be an object with 'name' and 'arguments'."
        )
    name = function.get("name")
    if not isinstance(name, str) or not name.strip():
        raise DataError(f"{where}: {label}: malformed tool call: no function 'name' (it has {sorted(function)}).")
    arguments = function.get("arguments", function.get("parameters"))
    if arguments is None:
        arguments = {}
    if isinstance(arguments, str):
        arguments = (
            _json(arguments, where, f"{label}: malformed tool call: the arguments of '{name}' are")
            if arguments.strip()
            else {}
        )
    if not isinstance(arguments, dict):
        raise DataError(
            f"{where}: {label}: malformed tool call: the arguments of '{name}' must be an object (or a JSON string of "
            f"one), got {type(arguments).__name__}."
        )
    call: dict[str, Any] = {"type": "function", "function": {"name": name, "arguments": arguments}}
    if isinstance(raw.get("id"), str):
        call["id"] = raw["id"]
    return call


def function_calls(value: Any, where: str, label: str) -> list[dict[str, Any]]:
    """The calls of a ShareGPT function_call turn or a tool_call part: a JSON call, or a list of them."""
    if isinstance(value, str):
        value = _json(value, where, f"{label}: malformed tool call:")
    calls = value if isinstance(value, list) else [value]
    if not calls:
        raise DataError(f"{where}: {label}: malformed tool call: an empty list of calls.")
    return [tool_call(c, where, label) for c in calls]


def tools_list(value: Any, where: str, what: str = "'tools'") -> Optional[list[dict[str, Any]]]:
    """The tool schemas offered: a list (or a JSON string of one) of OpenAI-style
    `{type: function, function: {name, description, parameters}}` or bare `{name, ...}` schemas."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        value = _json(value, where, f"{what} is")
    if not isinstance(value, list):
        raise DataError(f"{where}: {what} must be a list of tool schemas (or a JSON string of one).")
    tools = []
    for number, tool in enumerate(value, start=1):
        function = tool.get("function", tool) if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise DataError(f"{where}: {what}: tool {number} must be an object with a 'name' (a function schema).")
        tools.append({"type": "function", "function": function} if "function" not in tool else tool)
    return tools or None


def loss_weight(turn: dict[str, Any], where: str, label: str) -> Optional[int]:
    """0 when the message is kept out of the loss, None otherwise (1, or no weight given)."""
    for key in LOSS_WEIGHT_KEYS:
        if key in turn and turn[key] is not None:
            value = turn[key]
            if isinstance(value, bool) or value not in (0, 1):
                raise DataError(
                    f"{where}: {label}: '{key}' must be 0 (no loss on this message) or 1, got {value!r}; "
                    "fractional weights are not supported."
                )
            return 0 if value == 0 else None
    return None


# --------------------------------------------------------------------------- whole conversations


def _message(role: str, text: str, reasoning: str, calls: list, weight: Optional[int]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": role, "content": text}
    if calls:
        message["tool_calls"] = calls
    if reasoning:
        message["reasoning_content"] = reasoning
    if weight == 0:
        message["loss_weight"] = 0
    return message


def pair_tool_results(messages: list[dict[str, Any]], labels: list[str], where: str) -> list[dict[str, Any]]:
    """Every tool result answers a call of the assistant message before it: ids given to calls
    without one (9 alphanumerics, as Mistral's templates want), each result tied to its call."""
    pending: list[str] = []
    number = 0
    for message, label in zip(messages, labels, strict=True):
        if message.get("tool_calls"):
            pending = []
            for call in message["tool_calls"]:
                number += 1
                call.setdefault("id", f"call{number:05d}")
                pending.append(call["id"])
        elif message["role"] == "tool":
            if not pending:
                raise DataError(
                    f"{where}: {label} is a tool result without a call: no unanswered tool call comes before it (a "
                    "tool result must follow the assistant message, or function_call turn, that made the call)."
                )
            given = message.get("tool_call_id")
            if given is None:
                message["tool_call_id"] = pending.pop(0)
            elif given in pending:
                pending.remove(given)
            else:
                raise DataError(
                    f"{where}: {label} is a tool result without a call: its tool_call_id {given!r} matches no "
                    f"unanswered call of the assistant message before it ({pending})."
                )
        else:
            pending = []
    return messages


def openai_messages(turns: list[Any], where: str, column: str) -> list[dict[str, Any]]:
    """messages in the OpenAI / transformers shape (typed parts, tool calls, tool results)."""
    messages, labels = [], []
    for number, turn in enumerate(turns, start=1):
        label = f"message {number}"
        if not isinstance(turn, dict) or not isinstance(turn.get("role"), str):
            raise DataError(f"{where}: {label} of '{column}' must be an object with a 'role' and 'content'.")
        if "content" not in turn and not turn.get("tool_calls"):
            raise DataError(f"{where}: {label} ('{turn['role']}') has no 'content'.")
        text, reasoning, calls = content_text(turn.get("content"), where, label)
        raw_calls = turn.get("tool_calls")
        if raw_calls is not None:
            if not isinstance(raw_calls, list):
                raise DataError(f"{where}: {label}: malformed tool call: 'tool_calls' must be a list of calls.")
            calls += [tool_call(c, where, f"{label}, tool call {i}") for i, c in enumerate(raw_calls, start=1)]
        if calls and turn["role"] != "assistant":
            raise DataError(
                f"{where}: {label}: only assistant messages make tool calls (this one is '{turn['role']}')."
            )
        if isinstance(turn.get("reasoning_content"), str):
            reasoning = turn["reasoning_content"] + reasoning
        message = _message(turn["role"], text, reasoning, calls, loss_weight(turn, where, label))
        if turn["role"] == "tool":
            if isinstance(turn.get("tool_call_id"), str):
                message["tool_call_id"] = turn["tool_call_id"]
            if isinstance(turn.get("name"), str):
                message["name"] = turn["name"]
        messages.append(message)
        labels.append(label)
    return pair_tool_results(messages, labels, where)


def sharegpt_messages(
    turns: list[dict[str, Any]], roles: dict[str, str], where: str, system: Any = None
) -> list[dict[str, Any]]:
    """ShareGPT turns (checked to have from/value) as messages: function_call turns become assistant
    tool calls, observation turns tool results; a `system` column becomes the first message. A role
    in `roles` (data.sharegpt_roles) is mapped as it says, tool turns included."""
    messages, labels = [], []
    if isinstance(system, str) and system.strip() and (not turns or turns[0]["from"] != "system"):
        messages.append({"role": "system", "content": system})
        labels.append("the 'system' column")
    for number, turn in enumerate(turns, start=1):
        label = f"turn {number}"
        source = turn["from"]
        weight = loss_weight(turn, where, label)
        if source == FUNCTION_CALL and source not in roles:
            message = _message("assistant", "", "", function_calls(turn["value"], where, label), weight)
        elif source == OBSERVATION and source not in roles:
            value = turn["value"]
            message = _message("tool", value if isinstance(value, str) else json.dumps(value), "", [], weight)
        else:
            text, reasoning, calls = content_text(turn["value"], where, label)
            message = _message(roles[source], text, reasoning, calls, weight)
        messages.append(message)
        labels.append(label)
    return pair_tool_results(messages, labels, where)


def sharegpt_roles_allowed(roles: dict[str, str]) -> list[str]:
    return [*roles, *(r for r in (FUNCTION_CALL, OBSERVATION) if r not in roles)]


# --------------------------------------------------------------------------- what a record holds


def has_tool_turns(row: dict[str, Any]) -> bool:
    """A raw ShareGPT record with tool turns or tools (which a role/content mapping cannot render)."""
    turns = row.get("conversations")
    tool_turn = isinstance(turns, list) and any(
        isinstance(t, dict) and t.get("from") in (FUNCTION_CALL, OBSERVATION) for t in turns
    )
    tools = row.get(TOOLS_COLUMN)
    return (
        tool_turn
        or (isinstance(tools, list) and bool(tools))
        or (isinstance(tools, str) and tools.strip() not in ("", "[]"))
    )


def uses_tools(row: dict[str, Any]) -> bool:
    """A converted record that needs the chat template's tool support."""
    return bool(row.get(TOOLS_COLUMN)) or any(
        m.get("tool_calls") or m.get("role") == "tool" for m in row.get("messages", ())
    )


def uses_reasoning(row: dict[str, Any]) -> bool:
    return any("reasoning_content" in m for m in row.get("messages", ()))


@functools.lru_cache(maxsize=8)
def dataset_tools(path: str) -> Optional[list[dict[str, Any]]]:
    """`data.tools`: the tool schemas of every record without its own, from a JSON file (read once)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(
            f"data.tools={path}: no such file (relative to {Path.cwd()}). Give a .json file holding a list of tool "
            "schemas.",
            key="data.tools",
        )
    return tools_list(file.read_text(encoding="utf-8"), str(file), "data.tools")
