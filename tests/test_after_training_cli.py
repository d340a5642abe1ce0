"""`aitraining chat` and `export` start fast and fail in one line; the logger and export config;
prompt rendering. No training here (tests/test_after_training.py trains)."""

from __future__ import annotations

import importlib.util
import json

import pytest
from test_cli import HEAVY, imported, one_error

from aitraining import inference, trackers
from aitraining.choices import GgufQuant, LoggerKind, PromptStyle
from aitraining.compose import compose
from aitraining.errors import ConfigError
from conftest import read_run


@pytest.mark.parametrize("command", ["chat", "export"])
def test_chat_and_export_help_start_without_torch(console, command):
    result = console(command, "--help", extra_env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert result.returncode == 0 and "RUN_DIR" in result.stdout, result.output
    assert not (HEAVY | {"hydra"}) & imported(result.stderr)


def test_console_help_lists_chat_and_export(console):
    out = console("--help").stdout
    assert "chat       talk to a trained model" in out and "export     merge, convert to GGUF" in out


def test_export_mistakes_are_one_line_before_anything_loads(console, tmp_path):
    one_error(console("export", str(tmp_path)), "nothing to do: add --merge, --gguf TYPE or --push-to-hub REPO")
    one_error(console("export", str(tmp_path), "--gguf", "q4_k"), "'q4_k' is not a GGUF type.", "Did you mean",
              "Allowed: f16, q8_0, q4_k_m")  # fmt: skip
    one_error(console("export", str(tmp_path), "--push-to-hub", "no spaces/allowed here"), "not a Hub repo id")
    one_error(console("export", str(tmp_path / "missing"), "--merge"), "no such folder")
    (tmp_path / "run.json").write_text(json.dumps({"status": "running"}))
    one_error(console("export", str(tmp_path), "--merge"), "the run did not finish (run.json status: running)")


def test_chat_on_a_running_run_is_one_error(console, tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"status": "succeeded", "weights_dir": str(tmp_path / "adapter")}))
    one_error(console("chat", str(tmp_path)), "the run's weights folder", "is missing")
    one_error(console("chat"), "the following arguments are required: RUN_DIR")


# --------------------------------------------------------------------------- config


def test_logger_and_export_compose_with_their_defaults():
    cfg = compose([])
    assert cfg.logger.kind is LoggerKind.none and not cfg.export.merge and cfg.export.private
    cfg = compose(["logger=wandb", "export=gguf", "export.gguf=[q8_0,q4_k_m]", "export.push_to_hub=me/model"])
    assert cfg.logger.kind is LoggerKind.wandb and cfg.export.merge
    assert cfg.export.gguf == [GgufQuant.q8_0, GgufQuant.q4_k_m] and cfg.export.push_to_hub == "me/model"
    with pytest.raises(ConfigError, match="export.gguf lists a file type twice"):
        compose(["export.gguf=[f16,f16]"])
    with pytest.raises(ConfigError, match=r"Invalid value 'q5', expected one of \[f16, q8_0, q4_k_m\]"):
        compose(["export.gguf=[q5]"])
    with pytest.raises(ConfigError, match="export.merge=true needs peft=lora: a full fine-tune has no adapter"):
        compose(["export=merged", "peft=none"])
    with pytest.raises(ConfigError, match="trainer.samples must be >= 0"):
        compose(["trainer.samples=-1"])
    with pytest.raises(ConfigError, match=r"trainer.args.report_to is set by aitraining: set logger instead"):
        compose(["+trainer.args.report_to=wandb"])


@pytest.mark.parametrize("kind", [k for k in LoggerKind if k is not LoggerKind.none])
def test_a_missing_tracker_names_its_extra(kind, monkeypatch):
    cfg = compose([f"logger={kind.value}"])
    monkeypatch.setattr(trackers.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError) as caught:
        trackers.check(cfg)
    assert f"pip install 'aitraining[{kind.value}]'" in str(caught.value) and caught.value.key == "logger"
    assert trackers.TRACKERS[kind].requirement.split("==")[1] in str(caught.value)  # the pinned version


@pytest.mark.skipif(importlib.util.find_spec("trackio") is not None, reason="trackio is installed here")
def test_a_run_with_a_missing_tracker_stops_before_weights_load(cli, tmp_path):
    result = cli("experiment=quickstart", "logger=trackio", f"output_dir={tmp_path / 'run'}",
                 python_flags=("-X", "importtime"))  # fmt: skip
    assert result.returncode == 2 and "pip install 'aitraining[trackio]'" in result.output
    assert "Loading tiny:llama" not in result.output and "Traceback" not in result.output
    assert not {"transformers", "trl", "peft"} & imported(result.stderr)


def test_tracker_arguments_for_transformers(tmp_path):
    off = compose([])
    assert trackers.trl_args(off, tmp_path) == {"report_to": "none"}
    on = compose(["logger=wandb", "project_name=demo"])
    assert trackers.trl_args(on, tmp_path / "7") == {"report_to": ["wandb"], "run_name": "7", "project": "demo"}
    named = compose(["logger=mlflow", "logger.project=p", "logger.run_name=r"])
    assert trackers.trl_args(named, tmp_path) == {"report_to": ["mlflow"], "run_name": "r", "project": "p"}


# --------------------------------------------------------------------------- prompts


@pytest.fixture(scope="module")
def tokenizer():
    from aitraining import tiny

    return tiny.build_tokenizer()


def test_prompts_render_the_way_the_training_data_was(tokenizer):
    messages = inference.conversation("Name a colour.", system="Be brief.")
    chat = inference.render(PromptStyle.chat, tokenizer, messages)
    assert chat == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nName a colour.<|im_end|>\n"
                    "<|im_start|>assistant\n")  # fmt: skip
    alpaca = inference.render(PromptStyle.alpaca, tokenizer, messages)
    assert alpaca == "Be brief.\n\n### Instruction:\nName a colour.\n\n### Response:\n"
    assert inference.render(PromptStyle.plain, tokenizer, inference.conversation("Once upon")) == "Once upon"
    tokenizer_sharegpt = type("T", (), {"apply_chat_template": lambda self, turns, **kw: json.dumps(turns)})()
    rendered = json.loads(inference.render(PromptStyle.chat_sharegpt, tokenizer_sharegpt, messages))
    assert rendered == [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "Name a colour."}]


def test_prompt_style_follows_the_data_format():
    from aitraining.choices import DataFormat

    assert inference.style_for(DataFormat.alpaca, False, False) is PromptStyle.alpaca
    assert inference.style_for(DataFormat.sharegpt, True, True) is PromptStyle.chat_sharegpt
    assert inference.style_for(DataFormat.messages, True, False) is PromptStyle.chat
    assert inference.style_for(DataFormat.text, False, False) is PromptStyle.plain
    assert inference.style_for(DataFormat.prompt_completion, False, False) is PromptStyle.plain


def test_stop_tokens_include_the_templates_end_of_turn(tokenizer):
    ids = inference.stop_token_ids(tokenizer)
    assert ids[0] == tokenizer.eos_token_id and tokenizer.convert_tokens_to_ids("<|im_end|>") in ids


def test_a_finished_run_reads_back(tmp_path):
    from aitraining import record

    (tmp_path / "adapter").mkdir()
    record.write(tmp_path, record.RunRecord(status=record.Status.succeeded, weights_dir="/elsewhere/adapter",
                                            data={"format": "prompt_completion"}))  # fmt: skip
    run = inference.finished_run(tmp_path)
    assert run.weights == tmp_path / "adapter" and run.is_adapter and run.style is PromptStyle.plain
    assert read_run(tmp_path)["export"]["gguf"] == {}
