"""Chat data through the chat template, token by token: which tokens carry loss on tool-call
conversations (decoded and asserted exactly), the built-in templates' tool formats against the
official ones (TRL ships the original Qwen 2.5 and Llama 3.1 templates), batches with per-record
tools against transformers' apply_chat_template, loss weights, and the template errors."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from test_chat_data import GLAIVE, REASON_TOOLS, V1_SFT, WEATHER
from test_encode import config

from aitraining import chat_templates
from aitraining.config import DataConfig, DataFormat
from aitraining.data import Examples, load_examples
from aitraining.data.chat import openai_messages, tools_list
from aitraining.data.encode import IGNORE, prepare
from aitraining.errors import ConfigError, DataError


def trl_template(name: str) -> Path:
    """A template file TRL ships (trl/chat_templates/): the models' originals and training variants."""
    import trl

    return Path(trl.__file__).parent / "chat_templates" / name


def trained_spans(tokenizer, ids: list[int], labels: list[int]) -> list[str]:
    """The runs of tokens that carry loss, each decoded."""
    spans, run = [], []
    for token, label in zip(ids, labels, strict=True):
        if label != IGNORE:
            run.append(token)
        elif run:
            spans.append(tokenizer.decode(run))
            run = []
    return spans + ([tokenizer.decode(run)] if run else [])


def encode(tokenizer, rows, cfg=None, fmt=DataFormat.messages):
    cfg = cfg or config()
    template = chat_templates.setup(tokenizer, cfg, fmt)
    prepared = prepare(Examples(fmt, rows, None, ["test"]), tokenizer, cfg, template)
    return [(r["input_ids"], r["labels"]) for r in prepared.train], prepared


TOOLS = tools_list([WEATHER], "test")
CONVERSATION = openai_messages([
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": None,
     "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
    {"role": "tool", "content": '{"temp": 20}'},
    {"role": "assistant", "content": "20 degrees."},
], "test", "messages")  # fmt: skip

EXPECTED = {
    "qwen2.5": [
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>',
        "20 degrees.<|im_end|>",
    ],
    "llama3": ['{"name": "get_weather", "parameters": {"city": "Paris"}}<|eot_id|>', "20 degrees.<|eot_id|>"],
}
OFFICIAL = {"qwen2.5": "qwen2_5.jinja", "llama3": "llama3_1.jinja"}


@pytest.mark.parametrize("name", ["qwen2.5", "llama3"])
def test_tool_conversation_trains_on_the_calls_and_replies_only(tokenizer, name):
    [(ids, labels)], prepared = encode(tokenizer, [{"messages": CONVERSATION, "tools": TOOLS}], config(name))
    assert trained_spans(tokenizer, ids, labels) == EXPECTED[name]
    text = tokenizer.decode(ids)
    assert "temp" in text and "get_weather" in text.split("Weather in Paris?")[0]  # result and schema rendered
    # the text is the official template's (the marks aside), tool results included
    official = tokenizer.apply_chat_template(
        CONVERSATION, tools=TOOLS, tokenize=False, chat_template=trl_template(OFFICIAL[name]).read_text()
    )
    assert text == official
    assert prepared.stats["chat_template"] == f"built-in {name}"


def test_qwen_renders_parallel_calls_and_results_as_the_official_template(tokenizer):
    calls = [{"name": "get_weather", "arguments": {"city": city}} for city in ("Rome", "Oslo")]
    messages = openai_messages([
        {"role": "user", "content": "Rome and Oslo?"},
        {"role": "assistant", "content": "Checking both.", "tool_calls": calls},
        {"role": "tool", "content": "warm"}, {"role": "tool", "content": "cold"},
        {"role": "assistant", "content": "Warm and cold."},
    ], "test", "messages")  # fmt: skip
    for tools in (TOOLS, None):
        row = {"messages": messages, **({"tools": tools} if tools else {})}
        [(ids, labels)], _ = encode(tokenizer, [row], config("qwen2.5"))
        official = trl_template("qwen2_5.jinja").read_text()
        assert tokenizer.decode(ids) == tokenizer.apply_chat_template(messages, tools=tools, tokenize=False,
                                                                      chat_template=official)  # fmt: skip
        assert trained_spans(tokenizer, ids, labels) == [
            'Checking both.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call>\n'
            '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call><|im_end|>',
            "Warm and cold.<|im_end|>",
        ]


def test_batches_render_each_record_with_its_own_tools(tokenizer):
    """apply_chat_template takes one tools list per call (checked here on transformers 5.17): rows are
    rendered per tools group, and each gives the ids and assistant mask apply_chat_template gives it."""
    other = tools_list([{"name": "get_time", "parameters": {"type": "object"}}], "test")
    rows = [{"messages": CONVERSATION, "tools": TOOLS}, {"messages": CONVERSATION},
            {"messages": CONVERSATION, "tools": other}, {"messages": CONVERSATION[:3], "tools": TOOLS}]  # fmt: skip
    encoded, _ = encode(tokenizer, rows, config("qwen2.5"))
    for row, (ids, labels) in zip(rows, encoded, strict=True):
        out = tokenizer.apply_chat_template([row["messages"]], tools=row.get("tools"), return_dict=True,
                                            return_assistant_tokens_mask=True)  # fmt: skip
        assert ids == out["input_ids"][0]
        assert labels == [t if keep else IGNORE for t, keep in zip(ids, out["assistant_masks"][0], strict=True)]
    texts = [tokenizer.decode(ids) for ids, _ in encoded]
    assert "get_weather" in texts[0] and "<tools>" not in texts[1] and "get_time" in texts[2]


def test_loss_weight_zero_keeps_an_assistant_message_out_of_the_loss(tokenizer):
    messages = openai_messages([
        {"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Bleu.", "weight": 0},
        {"role": "user", "content": "In English?"}, {"role": "assistant", "content": "Blue.", "loss_weight": 1.0},
    ], "test", "messages")  # fmt: skip
    [(ids, labels)], _ = encode(tokenizer, [{"messages": messages}])
    assert trained_spans(tokenizer, ids, labels) == ["Blue.<|im_end|>"]
    assert "Bleu." in tokenizer.decode(ids)
    # the tool-call turn of a conversation can be kept out of the loss too
    weighted = [dict(m) for m in CONVERSATION]
    weighted[2]["loss_weight"] = 0
    [(ids, labels)], _ = encode(tokenizer, [{"messages": weighted, "tools": TOOLS}], config("llama3"))
    assert trained_spans(tokenizer, ids, labels) == ["20 degrees.<|eot_id|>"]


def test_llama_factory_loss_weights_on_user_turns_change_nothing(tokenizer):
    examples = load_examples(DataConfig(path=str(V1_SFT)))
    encoded, _ = encode(tokenizer, examples.train)
    for row, (ids, labels) in zip(examples.train, encoded, strict=True):
        assert trained_spans(tokenizer, ids, labels) == [row["messages"][1]["content"] + "<|im_end|>"]


def test_loss_weight_without_the_assistant_mask_warns(tokenizer, caplog):
    messages = openai_messages([{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A", "weight": 0}],
                               "test", "messages")  # fmt: skip
    with caplog.at_level(logging.WARNING):
        [(ids, labels)], _ = encode(tokenizer, [{"messages": messages}], config(response_only=False))
    assert ids == labels
    assert "1 message(s) with loss_weight 0 are trained anyway: trainer.response_only_loss=false" in caplog.text


@pytest.mark.parametrize("name,source", [(None, "tokenizer"), ("mistral", "built-in mistral")])
def test_template_without_tool_support_is_one_clear_error(tokenizer, name, source):
    with pytest.raises(ConfigError) as error:
        encode(tokenizer, [{"messages": CONVERSATION, "tools": TOOLS}], config(name))
    assert str(error.value) == (
        f"model.chat_template: the chat template ({source}) has no tool support, and the data has tool calls or "
        "tools. Set model.chat_template to a built-in with tool support (qwen2.5, llama3), a .jinja file that renders "
        "tools, tool_calls and tool messages, or use a model whose own template does (Llama 3.1+, Qwen 2.5, Mistral, "
        "Hermes-style)."
    )


def test_tokenizers_own_qwen_template_gets_trls_training_variant(tokenizer):
    """A tokenizer shipping Qwen 2.5's template (tool support, no generation marks): TRL's training
    variant takes its place, so the loss stays off the tool results."""
    tokenizer.chat_template = trl_template("qwen2_5.jinja").read_text()
    [(ids, labels)], prepared = encode(tokenizer, [{"messages": CONVERSATION, "tools": TOOLS}])
    assert prepared.stats["chat_template"] == "tokenizer, as TRL's training variant (with generation marks)"
    spans = trained_spans(tokenizer, ids, labels)
    assert [s.strip() for s in spans] == [s.strip() for s in EXPECTED["qwen2.5"]]  # TRL's marks take the newlines too
    assert not any("tool_response" in s or "temp" in s for s in spans)


def test_reasoning_needs_a_template_that_renders_it(tokenizer):
    examples = load_examples(DataConfig(path=str(REASON_TOOLS)))
    with pytest.raises(ConfigError, match=r"the chat template \(built-in qwen2.5\) does not render reasoning"):
        encode(tokenizer, examples.train, config("qwen2.5"))
    qwen3 = str(trl_template("qwen3_training.jinja"))  # Qwen 3's template, TRL's training variant: renders reasoning
    encoded, _ = encode(tokenizer, examples.train, config(qwen3))
    ids, labels = encoded[2]
    spans = trained_spans(tokenizer, ids, labels)
    reasoning = examples.train[2]["messages"][2]["reasoning_content"]
    assert spans[0].startswith("<think>\n" + reasoning.strip()) and '{"radius": 1.5}' in spans[0]
    assert not any("tool_response" in s for s in spans)


def test_glaive_trains_on_every_call_and_reply_and_on_no_tool_result(tokenizer):
    examples = load_examples(DataConfig(path=str(GLAIVE)))
    encoded, _ = encode(tokenizer, examples.train, config("qwen2.5"))
    raw = json.loads(GLAIVE.read_text())
    for record, (ids, labels) in zip(raw, encoded, strict=True):
        spans = trained_spans(tokenizer, ids, labels)
        turns = [t for t in record["conversations"] if t["from"] in ("gpt", "function_call")]
        assert len(spans) == len(turns)
        for turn, span in zip(turns, spans, strict=True):
            if turn["from"] == "gpt":
                assert span == turn["value"] + "<|im_end|>"
            else:
                called = json.loads(turn["value"])
                assert span == (f'<tool_call>\n{{"name": "{called["name"]}", "arguments": '
                                f'{json.dumps(called["arguments"])}}}\n</tool_call><|im_end|>')  # fmt: skip


def test_a_template_error_names_the_example(tokenizer):
    parallel = openai_messages([
        {"role": "user", "content": "Rome and Oslo?"},
        {"role": "assistant", "tool_calls": [{"name": "get_weather", "arguments": {"city": "Rome"}},
                                             {"name": "get_weather", "arguments": {"city": "Oslo"}}]},
    ], "test", "messages")  # fmt: skip
    rows = [{"messages": CONVERSATION, "tools": TOOLS}, {"messages": parallel, "tools": TOOLS}]
    with pytest.raises(DataError) as error:
        encode(tokenizer, rows, config("llama3"))
    assert str(error.value) == (
        "test example 2: the chat template cannot render it: Llama 3 makes one tool call per assistant turn; "
        "this turn has 2."
    )


def test_loss_weight_on_the_runners_sharegpt_mapping(tokenizer, tmp_path):
    turns = [{"from": "human", "value": "Name a colour."}, {"from": "gpt", "value": "Bleu.", "loss_weight": 0},
             {"from": "human", "value": "In English?"}, {"from": "gpt", "value": "Blue."}]  # fmt: skip
    path = tmp_path / "s.json"
    path.write_text(json.dumps([{"conversations": turns}]))
    examples = load_examples(DataConfig(path=str(path), use_sharegpt_mapping=True))
    assert examples.format is DataFormat.sharegpt  # kept as turns, mapped when rendered
    [(ids, labels)], _ = encode(tokenizer, examples.train, config(use_sharegpt_mapping=True), DataFormat.sharegpt)
    assert trained_spans(tokenizer, ids, labels) == ["Blue.<|im_end|>"]
