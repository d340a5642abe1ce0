"""Data reading, detection and conversion: plain Python, no model."""

from __future__ import annotations

import json

import pytest

from aitraining.config import DataConfig, DataFormat
from aitraining.data import load_examples
from aitraining.errors import ConfigError, DataError
from conftest import ALPACA, TEXT


def examples(path, fmt=DataFormat.auto, **kwargs):
    return load_examples(DataConfig(path=str(path), format=fmt, **kwargs))


def test_alpaca_sample_becomes_prompt_completion():
    ex = examples(ALPACA)
    assert ex.format is DataFormat.prompt_completion and len(ex.train) == 999
    first = json.loads(ALPACA.read_text())[0]
    assert ex.train[0]["prompt"].startswith("### Instruction:\n" + first["instruction"])
    assert ex.train[0]["prompt"].endswith("### Response:\n") and ex.train[0]["completion"] == first["output"]


def test_alpaca_input_and_system_are_kept(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps({"instruction": "Add", "input": "2 and 2", "output": "4", "system": "Be brief."}))
    row = examples(path).train[0]
    assert row["prompt"] == "Be brief.\n\n### Instruction:\nAdd\n\n### Input:\n2 and 2\n\n### Response:\n"


def test_shipped_sample_path():
    assert len(examples("pkg:samples/alpaca_en_demo.json", DataFormat.alpaca).train) == 999


def test_text_sample():
    ex = examples(TEXT)
    assert ex.format is DataFormat.text and len(ex.train) == 64


def test_sharegpt_converted_to_messages(tmp_path):
    path = tmp_path / "s.json"
    convo = [{"from": "system", "value": "S"}, {"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]
    path.write_text(json.dumps([{"conversations": convo}]))
    assert examples(path).train[0]["messages"] == [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "Q"},
        {"role": "assistant", "content": "A"},
    ]


def test_sharegpt_role_outside_mapping_is_named(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps([{"conversations": [{"from": "bot", "value": "Hi."}]}]))
    with pytest.raises(DataError, match=r"record 1: turn 1 has role 'bot', outside the ShareGPT mapping \(human, gpt, "
                                        r"system, function_call, observation\)"):  # fmt: skip
        examples(path)


def test_empty_conversation(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps({"messages": []}) + "\n")
    with pytest.raises(DataError, match="line 1: 'messages' is an empty conversation"):
        examples(path)


def test_max_samples(tmp_path):
    assert len(examples(ALPACA, max_samples=10).train) == 10


def test_csv_and_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    csv_path = tmp_path / "d.csv"
    csv_path.write_text('prompt,completion\n"Hi, there",Hello\n')
    assert examples(csv_path).train == [{"prompt": "Hi, there", "completion": "Hello"}]
    pq_path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": ["one", "two"]}), pq_path)
    assert examples(pq_path).train == [{"text": "one"}, {"text": "two"}]


def test_folder_without_train_file(tmp_path):
    (tmp_path / "other.json").write_text("[]")
    with pytest.raises(DataError, match=r"holds no train\.\* file"):
        examples(tmp_path)


def test_wrong_value_type_is_named(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"text": 3}) + "\n")
    with pytest.raises(DataError, match="line 1: 'text' must be a string, got int"):
        examples(path)


def test_valid_split_on_single_file_is_refused():
    with pytest.raises(ConfigError, match=r"data\.valid_split"):
        examples(ALPACA, valid_split="validation")
