"""Rendering and loss masks: one example per format through its template, asserting the exact text
and which tokens carry labels. Uses the tiny llama's tokenizer (ChatML with generation marks)."""

from __future__ import annotations

import json
import logging

import pytest

from aitraining import chat_templates
from aitraining.config import Config, DataConfig, DataFormat, ModelConfig
from aitraining.data import Examples, load_examples
from aitraining.data.encode import IGNORE, prepare
from aitraining.errors import DataError
from aitraining.trainers.sft import SFTTrainerConfig


def config(chat_template=None, response_only=True, max_len=2048, use_sharegpt_mapping=False) -> Config:
    return Config(
        model=ModelConfig(name="tiny:llama", max_seq_length=max_len, chat_template=chat_template),
        trainer=SFTTrainerConfig(response_only_loss=response_only),
        data=DataConfig(path="unused", use_sharegpt_mapping=use_sharegpt_mapping),
    )


def render(tokenizer, fmt, rows, cfg=None):
    cfg = cfg or config()
    template = chat_templates.setup(tokenizer, cfg, fmt)
    encoded = prepare(Examples(fmt, rows, None, ["test"]), tokenizer, cfg, template)
    ids, labels = encoded.train[0]["input_ids"], encoded.train[0]["labels"]
    trained = [t for t in labels if t != IGNORE]
    return tokenizer.decode(ids), tokenizer.decode(trained), encoded


CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Name a colour."},
    {"role": "assistant", "content": "Blue."},
]


def test_alpaca_trains_on_the_response_and_eos(tokenizer, tmp_path):
    path = tmp_path / "a.json"
    path.write_text(json.dumps([{"instruction": "Name a colour.", "input": "", "output": "Blue."}]))
    examples = load_examples(DataConfig(path=str(path)))
    text, trained, _ = render(tokenizer, examples.format, examples.train)
    assert text == "### Instruction:\nName a colour.\n\n### Response:\nBlue.</s>"
    assert trained == "Blue.</s>"


def test_prompt_completion_masking_off_trains_everything(tokenizer):
    rows = [{"prompt": "Q: 2+2?\nA: ", "completion": "4"}]
    text, trained, _ = render(tokenizer, DataFormat.prompt_completion, rows, config(response_only=False))
    assert text == trained == "Q: 2+2?\nA: 4</s>"


def test_text_trains_every_token(tokenizer):
    text, trained, _ = render(tokenizer, DataFormat.text, [{"text": "Plain words."}])
    assert text == trained == "Plain words.</s>"


def test_messages_train_on_assistant_turns_only(tokenizer):
    text, trained, encoded = render(tokenizer, DataFormat.messages, [{"messages": CHAT}])
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nName a colour.<|im_end|>\n"
        "<|im_start|>assistant\nBlue.<|im_end|>\n"
    )
    assert trained == "Blue.<|im_end|>"
    assert encoded.stats["chat_template"] == "tokenizer"


def test_sharegpt_converted_and_mapped_give_the_same_tokens(tokenizer, tmp_path):
    convo = [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "Name a colour."},
             {"from": "gpt", "value": "Blue."}]  # fmt: skip
    path = tmp_path / "s.json"
    path.write_text(json.dumps([{"conversations": convo}]))
    converted = load_examples(DataConfig(path=str(path)))
    mapped = load_examples(DataConfig(path=str(path), use_sharegpt_mapping=True))
    assert converted.format is DataFormat.messages and mapped.format is DataFormat.sharegpt
    assert mapped.train[0] == {"conversations": convo}  # kept as they are
    a = render(tokenizer, converted.format, converted.train)
    b = render(tokenizer, mapped.format, mapped.train, config(use_sharegpt_mapping=True))
    assert a[0] == b[0] and a[1] == b[1] == "Blue.<|im_end|>"
    assert a[2].train[0] == b[2].train[0]


def test_extra_sharegpt_roles_are_mapped_when_configured(tokenizer, tmp_path):
    convo = [{"from": "human", "value": "Weather?"}, {"from": "observation", "value": "sunny"},
             {"from": "gpt", "value": "Sunny."}]  # fmt: skip
    path = tmp_path / "s.json"
    path.write_text(json.dumps([{"conversations": convo}]))
    with pytest.raises(DataError, match="record 1: turn 2 is a tool result without a call"):
        load_examples(DataConfig(path=str(path)))  # observation is ShareGPT's tool result
    examples = load_examples(DataConfig(path=str(path), sharegpt_roles={"observation": "user"}))
    assert examples.train[0]["messages"][1] == {"role": "user", "content": "sunny"}


@pytest.mark.parametrize(
    "name,expected_text,expected_trained",
    [
        (
            "chatml",
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nName a colour.<|im_end|>\n"
            "<|im_start|>assistant\nBlue.<|im_end|>\n",
            "Blue.<|im_end|>",
        ),
        (
            "llama3",
            "<s><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user"
            "<|end_header_id|>\n\nName a colour.<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
            "Blue.<|eot_id|>",
            "Blue.<|eot_id|>",
        ),
        ("mistral", "<s>[INST] Be brief.\n\nName a colour. [/INST] Blue.</s>", " Blue.</s>"),
        (
            "gemma",
            "<s><start_of_turn>user\nBe brief.\n\nName a colour.<end_of_turn>\n<start_of_turn>model\n"
            "Blue.<end_of_turn>\n",
            "Blue.<end_of_turn>",
        ),
        (
            "qwen2.5",
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nName a colour.<|im_end|>\n"
            "<|im_start|>assistant\nBlue.<|im_end|>\n",
            "Blue.<|im_end|>",
        ),
    ],
)
def test_built_in_templates_render_and_mask(tokenizer, name, expected_text, expected_trained):
    text, trained, encoded = render(tokenizer, DataFormat.messages, [{"messages": CHAT}], config(chat_template=name))
    assert text == expected_text
    assert trained.strip() == expected_trained.strip()
    assert encoded.stats["chat_template"] == f"built-in {name}"


def test_qwen_template_adds_its_default_system_prompt(tokenizer):
    text, _, _ = render(tokenizer, DataFormat.messages, [{"messages": CHAT[1:]}], config(chat_template="qwen2.5"))
    assert text.startswith("<|im_start|>system\nYou are Qwen")


def test_every_built_in_template_carries_generation_marks():
    assert all(chat_templates.has_generation_markers(t) for t in chat_templates.TEMPLATES.values())


def test_template_without_marks_warns_and_trains_everything(tokenizer, tmp_path, caplog):
    plain = tmp_path / "plain.jinja"
    plain.write_text("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}")
    with caplog.at_level(logging.WARNING):
        text, trained, _ = render(
            tokenizer, DataFormat.messages, [{"messages": CHAT}], config(chat_template=str(plain))
        )
    assert text == trained
    assert "no {% generation %} markers" in caplog.text


def test_every_example_too_long_is_an_error(tokenizer):
    with pytest.raises(DataError, match="every one of the 1 examples is longer than model.max_seq_length=8"):
        render(tokenizer, DataFormat.text, [{"text": "a rather long sentence of plain words " * 3}], config(max_len=8))


def test_some_examples_too_long_warn_with_the_count(tokenizer, caplog):
    rows = [{"text": "short"}, {"text": "a rather long sentence of plain words " * 3}]
    with caplog.at_level(logging.WARNING):
        _, _, encoded = render(tokenizer, DataFormat.text, rows, config(max_len=16))
    assert "1 of 2 examples are longer than model.max_seq_length=16" in caplog.text
    assert encoded.stats["truncated"] == 1


def test_padding_share_is_reported(tokenizer):
    rows = [{"text": "a"}, {"text": "a much longer piece of text than the first one"}]
    _, _, encoded = render(tokenizer, DataFormat.text, rows)
    assert 0 < encoded.stats["padding_share_without_packing"] < 1
    assert encoded.stats["padding_share_with_packing"] == 0.0


def test_valid_size_carves_a_seeded_split(tmp_path):
    from conftest import ALPACA

    a = load_examples(DataConfig(path=str(ALPACA), valid_size=0.1), seed=3)
    b = load_examples(DataConfig(path=str(ALPACA), valid_size=0.1), seed=3)
    c = load_examples(DataConfig(path=str(ALPACA), valid_size=0.1), seed=4)
    assert len(a.valid) == 100 and len(a.train) == 899
    assert a.valid == b.valid and a.valid != c.valid


def test_columns_are_renamed(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"question": "Why?", "answer": "Because."}) + "\n")
    examples = load_examples(DataConfig(path=str(path), columns={"question": "prompt", "answer": "completion"}))
    assert examples.format is DataFormat.prompt_completion
    assert examples.train == [{"prompt": "Why?", "completion": "Because."}]


def test_fast_batch_path_gives_the_tokenizers_own_ids(tokenizer):
    from tokenizers import processors

    from aitraining.data.encode import token_ids

    texts = ["Name a colour.", "### Response:\nBlue.", ""]
    assert token_ids(tokenizer, texts) == tokenizer(texts)["input_ids"]
    # with a post-processor that adds BOS (as llama's tokenizers do), with and without special tokens
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tokenizer.bos_token_id)]
    )
    for special in (True, False):
        expected = tokenizer(texts, add_special_tokens=special)["input_ids"]
        assert token_ids(tokenizer, texts, add_special_tokens=special) == expected
    assert token_ids(tokenizer, texts)[0][0] == tokenizer.bos_token_id
