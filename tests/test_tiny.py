"""The offline tiny-model builder: every type builds, knows its type and has a chat template."""

from __future__ import annotations

import json

import pytest

from aitraining import tiny


@pytest.mark.parametrize("model_type", sorted(tiny.ARCHITECTURES))
def test_builds_offline_with_chat_template(model_type, cache_dir):
    from transformers import AutoTokenizer

    path = tiny.ensure_tiny(f"tiny:{model_type}")
    assert json.loads((path / "config.json").read_text())["model_type"] == model_type
    tokenizer = AutoTokenizer.from_pretrained(path)
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}], tokenize=False
    )
    assert "<|im_start|>assistant" in text and "{% generation %}" in tokenizer.chat_template
    assert tiny.ensure_tiny(f"tiny:{model_type}") == path  # cached


def test_types_cover_unsloth_list_and_beyond():
    assert {"llama", "mistral", "gemma", "gemma2", "qwen2"} <= set(tiny.ARCHITECTURES)
    assert {"phi3", "gpt2"} <= set(tiny.ARCHITECTURES)
