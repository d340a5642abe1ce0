"""Chat data as people have it, read and converted in plain Python (no tokenizer, no model): typed
content parts, loss weights, tool calls in their common shapes, detection, and one clear line naming
the record for each kind of bad record. Real slices of public data live in tests/data (SOURCES.md)."""

from __future__ import annotations

import json
import logging

import pytest

from aitraining.config import DataConfig, DataFormat
from aitraining.data import load_examples
from aitraining.errors import ConfigError, DataError
from conftest import TEST_DATA

GLAIVE = TEST_DATA / "glaive_toolcall_en_demo.json"  # ShareGPT, function_call / observation, tools
REASON_TOOLS = TEST_DATA / "reason_tool_use_demo.jsonl"  # typed {type, value} parts: text, reasoning, tool_call
V1_SFT = TEST_DATA / "v1_sft_demo.jsonl"  # typed {type: text, value} parts, loss_weight per message
MULTIMODAL = TEST_DATA / "v1_multimodal_demo.jsonl"  # image_url parts

WEATHER = {"name": "get_weather", "description": "Weather of a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}  # fmt: skip


def examples(path, **kwargs):
    return load_examples(DataConfig(path=str(path), **kwargs))


def write_jsonl(path, *rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def call(name="get_weather", arguments='{"city": "Paris"}', **extra):
    return {"type": "function", "function": {"name": name, "arguments": arguments}, **extra}


# --------------------------------------------------------------------------- typed content parts


def test_text_parts_are_joined_under_either_key(tmp_path):
    path = write_jsonl(tmp_path / "m.jsonl", {"messages": [
        {"role": "user", "content": [{"type": "text", "text": "Name "}, {"type": "input_text", "text": "a colour."}]},
        {"role": "assistant", "content": [{"type": "text", "value": "Blue."}]},
    ]})  # fmt: skip
    assert examples(path).train[0]["messages"] == [
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Blue."},
    ]


def test_llama_factory_parts_and_loss_weights():
    ex = examples(V1_SFT)
    assert ex.format is DataFormat.messages and len(ex.train) == 16
    first = json.loads(V1_SFT.read_text().splitlines()[0])["messages"]
    assert ex.train[0]["messages"] == [
        {"role": "user", "content": first[0]["content"][0]["value"], "loss_weight": 0},  # loss_weight 0.0
        {"role": "assistant", "content": first[1]["content"][0]["value"]},  # loss_weight 1.0: the default
    ]


def test_openai_weight_key_and_fractional_weights(tmp_path):
    path = write_jsonl(tmp_path / "w.jsonl", {"messages": [
        {"role": "user", "content": "Q"}, {"role": "assistant", "content": "draft", "weight": 0},
        {"role": "user", "content": "Again"}, {"role": "assistant", "content": "final", "weight": 1},
    ]})  # fmt: skip
    messages = examples(path).train[0]["messages"]
    assert messages[1] == {"role": "assistant", "content": "draft", "loss_weight": 0}
    assert messages[3] == {"role": "assistant", "content": "final"}
    write_jsonl(path, {"messages": [{"role": "user", "content": "Q"},
                                    {"role": "assistant", "content": "A", "loss_weight": 0.5}]})  # fmt: skip
    with pytest.raises(DataError, match=r"line 1: message 2: 'loss_weight' must be 0 .* or 1, got 0.5"):
        examples(path)


def test_image_part_is_refused_as_multimodal():
    with pytest.raises(DataError) as error:
        examples(MULTIMODAL)
    assert str(error.value) == (
        f"{MULTIMODAL} line 1: message 1: content part 1 is of type 'image_url': multimodal training is not "
        "supported (yet); only text parts train. Drop the non-text parts or the record."
    )


def test_unknown_part_type_is_named(tmp_path):
    fine = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}
    path = write_jsonl(tmp_path / "m.jsonl", fine, {"messages": [{"role": "user", "content": [{"type": "txt"}]}]})
    with pytest.raises(DataError) as error:
        examples(path)
    message = str(error.value)
    assert message.startswith(f"{path} line 2: message 1: content part 1 has unknown type 'txt'. Allowed: text, ")
    assert "\n" not in message


# --------------------------------------------------------------------------- tool calls: OpenAI / transformers


def openai_conversation(**assistant_extra):
    return [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [call()], **assistant_extra},
        {"role": "tool", "content": '{"temp": 20}'},
        {"role": "assistant", "content": "20 degrees."},
    ]


def test_openai_tool_calls_are_normalized(tmp_path):
    tools = [{"type": "function", "function": WEATHER}]
    path = write_jsonl(tmp_path / "t.jsonl", {"messages": openai_conversation(), "tools": tools})
    row = examples(path).train[0]
    assert row["tools"] == tools
    normalized = {
        "type": "function",
        "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
        "id": "call00001",
    }
    assert row["messages"][1:3] == [
        {"role": "assistant", "content": "", "tool_calls": [normalized]},
        {"role": "tool", "content": '{"temp": 20}', "tool_call_id": "call00001"},
    ]


def test_parallel_calls_pair_with_results_by_id(tmp_path):
    calls = [
        call(arguments={"city": "Rome"}, id="a"),
        {"name": "get_weather", "arguments": {"city": "Oslo"}, "id": "b"},
    ]
    path = write_jsonl(tmp_path / "t.jsonl", {"messages": [
        {"role": "user", "content": "Rome and Oslo?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": calls},
        {"role": "tool", "tool_call_id": "b", "content": "cold"},
        {"role": "tool", "tool_call_id": "a", "content": "warm"},
        {"role": "assistant", "content": "Rome is warm, Oslo cold."},
    ]})  # fmt: skip
    messages = examples(path).train[0]["messages"]
    assert [c["function"]["arguments"] for c in messages[1]["tool_calls"]] == [{"city": "Rome"}, {"city": "Oslo"}]
    assert [m["tool_call_id"] for m in messages[2:4]] == ["b", "a"]


def test_dataset_tools_file_for_records_without_their_own(tmp_path):
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps([WEATHER]))
    own = [{"type": "function", "function": {"name": "other", "parameters": {}}}]
    path = write_jsonl(tmp_path / "t.jsonl", {"messages": openai_conversation()},
                       {"messages": openai_conversation(), "tools": json.dumps(own)})  # fmt: skip
    rows = examples(path, tools=str(tools)).train
    assert rows[0]["tools"] == [{"type": "function", "function": WEATHER}]  # bare schema, wrapped
    assert rows[1]["tools"] == own  # the record's own (a JSON string) wins
    with pytest.raises(ConfigError, match=r"data.tools=.*missing.json: no such file"):
        examples(path, tools=str(tmp_path / "missing.json"))
    with pytest.raises(ConfigError, match="data.tools is set, but the data is 'text'"):
        examples(TEST_DATA / "c4_demo.jsonl", tools=str(tools))


# --------------------------------------------------------------------------- tool calls: ShareGPT (Glaive)


def test_glaive_function_calls_become_tool_calls():
    ex = examples(GLAIVE)
    assert ex.format is DataFormat.messages and len(ex.train) == 32 and ex.uses_tools
    raw = json.loads(GLAIVE.read_text())[3]  # the calculate_area conversation
    row = ex.train[3]
    assert row["tools"] == [{"type": "function", "function": t} for t in json.loads(raw["tools"])]
    assert [m["role"] for m in row["messages"]] == ["user", "assistant", "tool", "assistant"] * 3
    assert row["messages"][1]["tool_calls"] == [{"type": "function", "id": "call00001", "function": {
        "name": "calculate_area", "arguments": {"shape": "rectangle", "dimensions": [5, 3]}}}]  # fmt: skip
    assert row["messages"][2] == {"role": "tool", "content": '{"area": 15}', "tool_call_id": "call00001"}
    assert "tools" not in ex.train[1]  # "tools": "[]"


def test_sharegpt_system_column_and_parallel_calls(tmp_path):
    path = tmp_path / "s.json"
    calls = json.dumps([{"name": "f", "arguments": {"x": 1}}, {"name": "g", "arguments": "{}"}])
    path.write_text(json.dumps([{"system": "Be brief.", "tools": [WEATHER], "conversations": [
        {"from": "human", "value": "Q"}, {"from": "function_call", "value": calls},
        {"from": "observation", "value": "1"}, {"from": "observation", "value": "2"}, {"from": "gpt", "value": "A"},
    ]}]))  # fmt: skip
    messages = examples(path).train[0]["messages"]
    assert messages[0] == {"role": "system", "content": "Be brief."}
    assert [c["function"] for c in messages[2]["tool_calls"]] == [{"name": "f", "arguments": {"x": 1}},
                                                                 {"name": "g", "arguments": {}}]  # fmt: skip
    assert [m["tool_call_id"] for m in messages[3:5]] == ["call00001", "call00002"]


def test_llama_factory_tool_call_parts_and_reasoning():
    ex = examples(REASON_TOOLS)
    assert ex.uses_tools and ex.uses_reasoning
    raw = json.loads(REASON_TOOLS.read_text().splitlines()[2])["messages"][2]["content"]
    assistant = ex.train[2]["messages"][2]
    assert assistant["reasoning_content"] == raw[0]["value"]
    assert [c["function"]["arguments"] for c in assistant["tool_calls"]] == [{"radius": 1.5}, {"radius": 3}]
    assert ex.train[2]["tools"][0]["function"]["name"] == "circle_area"


# --------------------------------------------------------------------------- bad tool data: one line naming the record


@pytest.mark.parametrize(
    "conversation,needle",
    [
        ([{"from": "human", "value": "Q"}, {"from": "function_call", "value": '{"name": "f", "arguments": {'}],
         "record 1: turn 2: malformed tool call: not valid JSON"),
        ([{"from": "human", "value": "Q"}, {"from": "function_call", "value": '{"arguments": {}}'}],
         "record 1: turn 2: malformed tool call: no function 'name'"),
        ([{"from": "human", "value": "Q"}, {"from": "function_call", "value": '{"name": "f", "arguments": "[1]"}'}],
         "record 1: turn 2: malformed tool call: the arguments of 'f' must be an object"),
        ([{"from": "human", "value": "Q"}, {"from": "observation", "value": "sunny"}, {"from": "gpt", "value": "A"}],
         "record 1: turn 2 is a tool result without a call"),
        ([{"from": "human", "value": "Q"}, {"from": "function_call", "value": '{"name": "f"}'},
          {"from": "observation", "value": "1"}, {"from": "observation", "value": "2"}],
         "record 1: turn 4 is a tool result without a call"),
    ],
)  # fmt: skip
def test_bad_sharegpt_tool_turns(tmp_path, conversation, needle):
    path = tmp_path / "s.json"
    path.write_text(json.dumps([{"conversations": conversation}]))
    with pytest.raises(DataError) as error:
        examples(path)
    assert str(error.value).startswith(f"{path} {needle}") and "\n" not in str(error.value)


@pytest.mark.parametrize(
    "messages,needle",
    [
        ([{"role": "user", "content": "Q"}, {"role": "assistant", "tool_calls": [call(arguments="{city: Paris}")]}],
         "line 1: message 2, tool call 1: malformed tool call: the arguments of 'get_weather' are not valid JSON"),
        ([{"role": "user", "content": "Q"}, {"role": "assistant", "tool_calls": {"name": "f"}}],
         "line 1: message 2: malformed tool call: 'tool_calls' must be a list"),
        ([{"role": "user", "content": "Q"}, {"role": "tool", "content": "20"}],
         "line 1: message 2 is a tool result without a call"),
        ([{"role": "user", "content": "Q"}, {"role": "assistant", "tool_calls": [call(id="a")]},
          {"role": "tool", "tool_call_id": "b", "content": "20"}],
         "line 1: message 3 is a tool result without a call: its tool_call_id 'b' matches no unanswered call"),
    ],
)  # fmt: skip
def test_bad_openai_tool_messages(tmp_path, messages, needle):
    path = write_jsonl(tmp_path / "t.jsonl", {"messages": messages})
    with pytest.raises(DataError) as error:
        examples(path)
    assert str(error.value).startswith(f"{path} {needle}") and "\n" not in str(error.value)


# --------------------------------------------------------------------------- detection and the mapping road


@pytest.mark.parametrize(
    "path,expected,columns",
    [
        (GLAIVE, DataFormat.sharegpt, ["conversations", "tools"]),
        (REASON_TOOLS, DataFormat.messages, ["messages", "tools"]),
        (V1_SFT, DataFormat.messages, ["messages"]),
    ],
)
def test_auto_detects_each_shape_and_says_from_which_columns(path, expected, columns, caplog):
    with caplog.at_level(logging.INFO):
        examples(path)
    assert f"Data format detected: {expected.value}, from column(s) {columns}" in caplog.text


def test_sharegpt_mapping_converts_tool_data_instead(caplog):
    with caplog.at_level(logging.WARNING):
        ex = examples(GLAIVE, use_sharegpt_mapping=True)
    assert ex.format is DataFormat.messages and ex.train[3]["messages"][1]["tool_calls"]
    assert "a role/content mapping (Unsloth's get_chat_template(mapping=...) included) cannot render" in caplog.text


def test_sharegpt_mapping_keeps_tool_free_records_with_their_system_column(tmp_path):
    path = tmp_path / "s.json"
    turns = [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A", "loss_weight": 0}]
    path.write_text(json.dumps([{"system": "S", "conversations": turns}]))
    ex = examples(path, use_sharegpt_mapping=True)
    assert ex.format is DataFormat.sharegpt
    assert ex.train[0] == {"conversations": [{"from": "system", "value": "S"}, *turns]}


def test_data_path_alone_detects_the_format(tmp_path):
    """`data.path=FILE` without data=custom: the default data option detects like data=custom does;
    the shipped sample is detected as alpaca when it is what is read."""
    from aitraining.compose import compose

    default = compose(["experiment=quickstart"])
    assert default.data.format is DataFormat.auto
    assert load_examples(default.data).format is DataFormat.prompt_completion  # alpaca, converted
    for overrides in (["experiment=quickstart"], [], ["data=custom"]):
        cfg = compose([*overrides, f"data.path={GLAIVE}"])
        assert cfg.data.format is DataFormat.auto
        assert load_examples(cfg.data).format is DataFormat.messages
