"""Bad input ends in one clear message: exit non-zero, the key or file (and line) named, what is
allowed said, no traceback, and nothing heavy imported (so it comes within about a second)."""

from __future__ import annotations

import json

import pytest

from aitraining.errors import ConfigError
from aitraining.trainers.sft import SFTTrainerConfig

HEAVY = {"torch", "transformers", "trl", "peft"}


def imported_modules(stderr: str) -> set[str]:
    return {line.split("|")[-1].strip() for line in stderr.splitlines() if line.startswith("import time:")}


def check_error(result, *needles: str) -> str:
    assert result.returncode != 0
    errors = "\n".join(line for line in result.output.splitlines() if not line.startswith("import time:"))
    assert "Traceback" not in errors, errors
    for needle in needles:
        assert needle in errors, errors
    assert not HEAVY & imported_modules(result.stderr), "torch or transformers was imported before the error"
    return errors


def bad(cli, *args: str):
    return cli("experiment=quickstart", *args, python_flags=("-X", "importtime"))


def test_lora_rank_zero(cli):
    check_error(bad(cli, "peft.r=0"), "peft.r must be >= 1 (got 0)")


def test_negative_learning_rate(cli):
    check_error(bad(cli, "trainer.learning_rate=-1e-4"), "trainer.learning_rate must be > 0")


def test_unknown_quant_option(cli):
    check_error(bad(cli, "quant=int3"), "quant/int3", "int4", "int8", "none")


def test_unknown_trainer_option(cli):
    check_error(bad(cli, "trainer=foo"), "trainer/foo", "sft", "default")


def test_misspelt_key_suggests_the_real_one(cli):
    check_error(bad(cli, "trainer.learnin_rate=1e-4"), "trainer.learnin_rate", "Did you mean 'learning_rate'?")


def test_misspelt_top_level_key(cli):
    check_error(bad(cli, "sead=1"), "unknown key 'sead'", "Did you mean 'seed'?")


def test_wrong_type(cli):
    check_error(bad(cli, "trainer.batch_size=four"), "trainer.batch_size", "four")


def test_unknown_trainer_arg_names_closest_field(cli):
    result = bad(cli, "+trainer.args.lr_scheduler_tpye=cosine")
    check_error(result, "trainer.args.lr_scheduler_tpye", "Did you mean 'lr_scheduler_type'?")


def test_trainer_arg_owned_by_aitraining(cli):
    check_error(bad(cli, "+trainer.args.learning_rate=0.1"), "set trainer.learning_rate instead")


def test_missing_data_path(cli):
    check_error(bad(cli, "data.path=nope/missing.jsonl"), "data.path=nope/missing.jsonl", "no such file")


def test_malformed_jsonl_line(cli, tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"text": "fine"}\n{"text": "also fine"}\n{"text": broken}\n')
    check_error(bad(cli, f"data.path={path}", "data.format=auto"), f"{path} line 3", "not valid JSON")


def test_malformed_json_file(cli, tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "c" "output": "d"}\n]\n')
    check_error(bad(cli, f"data.path={path}", "data.format=alpaca"), f"{path} line 3")


def test_csv_missing_columns(cli, tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("question,answer\nwhat,that\n")
    check_error(
        bad(cli, f"data.path={path}", "data.format=alpaca"),
        str(path),
        "missing column(s) ['instruction', 'output']",
        "['answer', 'question']",
    )


def test_undetectable_format_lists_columns(cli, tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text('{"question": "q", "answer": "a"}\n')
    check_error(bad(cli, f"data.path={path}", "data.format=auto"), "cannot detect the data format", "question")


def test_empty_file(cli, tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    check_error(bad(cli, f"data.path={path}", "data.format=auto"), str(path), "no records")


def test_empty_after_filtering(cli, tmp_path):
    path = tmp_path / "blank.json"
    path.write_text(json.dumps([{"instruction": "x", "output": "  "}, {"instruction": "y", "output": ""}]))
    check_error(bad(cli, f"data.path={path}", "data.format=alpaca"), "empty after dropping 2 record(s)")


def test_quantized_full_finetuning_is_refused(cli):
    check_error(bad(cli, "quant=int4", "peft=none"), "quant=int4 needs peft=lora")


def test_unknown_tiny_model_type(cli):
    check_error(bad(cli, "model.name=tiny:falcon"), "unknown tiny model type 'falcon'", "tiny:gemma2")


def test_missing_local_model_folder(cli):
    check_error(bad(cli, "model.name=./no/such/model"), "model.name=./no/such/model", "no such folder")


def test_full_error_shows_traceback(cli):
    result = cli("experiment=quickstart", "peft.r=0", extra_env={"HYDRA_FULL_ERROR": "1"})
    assert result.returncode != 0 and "Traceback" in result.output


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        ({"max_steps": 0}, "trainer.max_steps must be -1"),
        ({"batch_size": 0}, "trainer.batch_size must be >= 1"),
        ({"args": {"num_train_epochs": 2}}, "set trainer.epochs instead"),
    ],
)
def test_trainer_validation_in_process(kwargs, needle):
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(")):
        SFTTrainerConfig(**kwargs)


def test_unknown_data_format_lists_the_formats(cli):
    check_error(bad(cli, "data.format=yaml"), "data.format", "yaml", "alpaca", "sharegpt", "prompt_completion")


def test_every_problem_is_reported_at_once(cli):
    errors = check_error(
        bad(cli, "peft.r=0", "trainer.learning_rate=-1", "model.max_seq_length=2", "data.max_samples=0"),
        "4 problems in the config",
        "peft.r must be >= 1 (got 0)",
        "trainer.learning_rate must be > 0",
        "model.max_seq_length must be >= 8",
        "data.max_samples must be >= 1",
    )
    assert errors.count("ERROR") == 1


def test_every_command_line_mistake_is_reported_at_once(cli):
    check_error(bad(cli, "trainer.learnin_rate=1", "peft.r=abc", "sead=1"), "3 problems", "learning_rate", "peft.r=abc",
                "'seed'")  # fmt: skip


def test_problems_carry_their_keys():
    from aitraining.compose import compose

    with pytest.raises(ConfigError) as caught:
        compose(["experiment=quickstart", "peft.r=0", "quant=int4", "peft=none"])
    keys = [p.key for p in caught.value.problems]
    assert keys == ["quant"] and caught.value.problems[0].fix == {"peft": "lora"}


# --------------------------------------------------------------------------- chat data: one line naming the record
# data.path alone (no data=custom, no data.format): the default data option detects the format.

BAD_CHAT = [
    ({"conversations": [{"from": "human", "value": "Q"}, {"from": "function_call", "value": "get_weather(Paris)"}]},
     "line 2: turn 2: malformed tool call: not valid JSON"),
    ({"messages": [{"role": "user", "content": "Q"}, {"role": "tool", "content": "20"}]},
     "line 2: message 2 is a tool result without a call"),
    ({"messages": [{"role": "user", "content": [{"type": "txt", "text": "Q"}]}]},
     "line 2: message 1: content part 1 has unknown type 'txt'"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x.png"}}]}]},
     "line 2: message 1: content part 1 is of type 'image_url': multimodal training is not supported (yet)"),
]  # fmt: skip


@pytest.mark.parametrize("record,needle", BAD_CHAT, ids=["bad-call", "result-without-call", "unknown-part", "image"])
def test_bad_chat_record(cli, tmp_path, record, needle):
    first = {key: [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}] for key in record}
    if "conversations" in record:
        first = {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]}
    path = tmp_path / "chat.jsonl"
    path.write_text(json.dumps(first) + "\n" + json.dumps(record) + "\n")
    errors = check_error(bad(cli, f"data.path={path}"), f"{path} {needle}")
    assert len([line for line in errors.splitlines() if "ERROR" in line]) == 1
    assert "Data format detected" in errors  # the log line, from the default data option
