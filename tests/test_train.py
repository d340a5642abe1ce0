"""End-to-end runs on tiny offline models: real TRL, PEFT, bitsandbytes; real files."""

from __future__ import annotations

import importlib.util
import json

import pytest
import yaml

from conftest import ALPACA, PAIRS, QUICK, TEXT, read_run

pytestmark = pytest.mark.slow
UNSLOTH_INSTALLED = importlib.util.find_spec("unsloth") is not None


def train(cli, tmp_path, *args: str, name: str = "run"):
    out = tmp_path / name
    result = cli(*QUICK, f"output_dir={out}", *args)
    return result, out


def test_quickstart_trains_and_writes_a_self_describing_folder(cli, tmp_path):
    out = tmp_path / "quickstart"
    result = cli("experiment=quickstart", f"output_dir={out}")
    assert result.returncode == 0, result.output[-3000:]
    run = read_run(out)
    assert run["status"] == "succeeded"
    assert run["loss"]["train_last"] < run["loss"]["train_first"] - 0.3, run["loss"]
    assert run["steps"] == 150
    assert run["experiment"] == "quickstart"
    assert run["accelerator"] == {"requested": "none", "used": "none", "reason": None, "unsloth_version": None}
    assert run["model"]["type"] == "llama"
    assert 0 < run["parameters"]["trainable"] < run["parameters"]["total"]
    assert run["tokens_per_second"] > 0 and run["wall_seconds"] > 0
    assert run["seed"] == 42
    assert run["versions"]["trl"] and run["versions"]["torch"]
    assert set(run["git"]) == {"directory", "commit", "dirty"}
    # the folder: adapter + tokenizer, resolved config, metrics, run.json, log
    assert (out / "adapter" / "adapter_config.json").exists()
    assert (out / "adapter" / "adapter_model.safetensors").exists()
    assert (out / "adapter" / "tokenizer_config.json").exists()
    assert yaml.safe_load((out / "config.yaml").read_text())["model"]["name"] == "tiny:llama"
    metrics = json.loads((out / "metrics.json").read_text())
    assert any("loss" in m for m in metrics)
    assert (out / "train.log").exists()
    assert not (out / "checkpoints").exists()
    # the summary says where the result is
    assert "aitraining: succeeded" in result.stdout and str(out) in result.stdout


def test_adapter_loads_with_peft_and_generates(cli, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    result, out = train(cli, tmp_path)
    assert result.returncode == 0, result.output[-3000:]
    run = read_run(out)
    base = AutoModelForCausalLM.from_pretrained(run["model"]["path"])
    model = PeftModel.from_pretrained(base, out / "adapter")
    tokenizer = AutoTokenizer.from_pretrained(out / "adapter")
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b), "the adapter did not train"
    inputs = tokenizer("### Instruction:\nName a colour.\n\n### Response:\n", return_tensors="pt")
    with torch.no_grad():
        generated = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    assert generated.shape[1] > inputs["input_ids"].shape[1]


def test_a_second_run_never_overwrites_the_first(cli, tmp_path):
    result, out = train(cli, tmp_path)
    assert result.returncode == 0, result.output[-3000:]
    before = (out / "adapter" / "adapter_model.safetensors").read_bytes()
    again = cli(*QUICK, f"output_dir={out}", "seed=1")
    assert again.returncode != 0
    assert "already holds a run" in again.output and "overwrite=true" in again.output
    assert "Traceback" not in again.output
    assert (out / "adapter" / "adapter_model.safetensors").read_bytes() == before
    forced = cli(*QUICK, f"output_dir={out}", "seed=1", "overwrite=true")
    assert forced.returncode == 0, forced.output[-3000:]


def test_default_output_folders_are_fresh_per_run(cli, tmp_path):
    first = cli(*QUICK, "project_name=fresh")
    second = cli(*QUICK, "project_name=fresh")
    assert first.returncode == 0 and second.returncode == 0, second.output[-3000:]
    runs = sorted((tmp_path / "outputs" / "fresh").iterdir())
    assert len(runs) == 2 or "already holds a run" in second.output


def test_nan_loss_stops_with_an_error_and_saves_nothing(cli, tmp_path):
    result, out = train(cli, tmp_path, "trainer.learning_rate=1e38", "trainer.logging_steps=1")
    assert result.returncode != 0
    assert "training diverged" in result.output and "nan" in result.output
    assert "succeeded" not in result.output
    assert not (out / "adapter").exists()
    assert read_run(out)["status"] == "failed"


@pytest.mark.skipif(UNSLOTH_INSTALLED, reason="checks the not-installed fallback")
def test_unsloth_not_installed_falls_back_and_trains(cli, tmp_path):
    result, out = train(cli, tmp_path, "accel=unsloth")
    assert result.returncode == 0, result.output[-3000:]
    warnings = [line for line in result.stderr.splitlines() if "continuing without it" in line]
    assert len(warnings) == 1 and warnings[0].startswith("WARNING:") and "not installed" in warnings[0]
    run = read_run(out)
    assert run["accelerator"]["requested"] == "unsloth" and run["accelerator"]["used"] == "none"
    assert "not installed" in run["accelerator"]["reason"]
    assert yaml.safe_load((out / "config.yaml").read_text())["accel"]["kind"] == "none"


def test_unsloth_with_unsupported_model_type_says_so(cli, tmp_path):
    result, out = train(cli, tmp_path, "accel=unsloth", "model.name=tiny:phi3")
    assert result.returncode == 0, result.output[-3000:]
    warnings = [line for line in result.stderr.splitlines() if "continuing without it" in line]
    assert len(warnings) == 1 and "model type 'phi3' is not supported" in warnings[0]
    run = read_run(out)
    assert run["accelerator"]["used"] == "none" and "phi3" in run["accelerator"]["reason"]
    # phi3 fuses qkv and gate/up: LoRA targets every linear layer instead of two of seven
    assert "all-linear" in run["peft"]


def test_accel_none_never_mentions_unsloth(cli, tmp_path):
    result, _ = train(cli, tmp_path, "accel=none")
    assert result.returncode == 0 and "nsloth" not in result.output


@pytest.mark.parametrize("quant", ["int4", "int8"])
def test_quantized_lora_trains_with_finite_loss(cli, tmp_path, quant):
    result, out = train(cli, tmp_path, f"quant={quant}")
    assert result.returncode == 0, result.output[-3000:]
    run = read_run(out)
    assert run["quant"] == quant and run["loss"]["train_last"] == run["loss"]["train_last"]  # not NaN
    assert (out / "adapter" / "adapter_model.safetensors").exists()


def test_full_finetuning_saves_a_model(cli, tmp_path):
    result, out = train(cli, tmp_path, "peft=none", "trainer.learning_rate=1e-4")
    assert result.returncode == 0, result.output[-3000:]
    run = read_run(out)
    assert run["peft"] == "full" and run["parameters"]["trainable"] == run["parameters"]["total"]
    assert (out / "model" / "config.json").exists()


def test_default_trainer_trains_on_every_token(cli, tmp_path):
    result, out = train(cli, tmp_path, "trainer=default", "trainer.max_steps=4", "trainer.learning_rate=5e-3")
    assert result.returncode == 0, result.output[-3000:]
    assert read_run(out)["trainer"] == "default"


def test_gpt2_gets_all_linear_lora(cli, tmp_path):
    result, out = train(cli, tmp_path, "model.name=tiny:gpt2")
    assert result.returncode == 0, result.output[-3000:]
    assert "all-linear" in read_run(out)["peft"]


def test_plain_text_sample_trains(cli, tmp_path):
    result, out = train(cli, tmp_path, f"data.path={TEXT}", "data.format=auto")
    assert result.returncode == 0, result.output[-3000:]
    assert read_run(out)["data"]["format"] == "text"
    assert "Data format detected: text" in result.stderr


def test_sharegpt_conversations_train_through_the_chat_template(cli, tmp_path):
    rows = json.loads(PAIRS.read_text())[:48]
    sft = [{"conversations": [*r["conversations"], r["chosen"]]} for r in rows]
    path = tmp_path / "sharegpt.json"
    path.write_text(json.dumps(sft))
    result, out = train(cli, tmp_path, f"data.path={path}", "data.format=auto")
    assert result.returncode == 0, result.output[-3000:]
    assert read_run(out)["data"]["format"] == "messages"


def test_folder_with_train_and_validation_files_reports_eval_loss(cli, tmp_path):
    rows = json.loads(ALPACA.read_text())
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "train.json").write_text(json.dumps(rows[:64]))
    (folder / "validation.jsonl").write_text("\n".join(json.dumps(r) for r in rows[900:916]))
    result, out = train(cli, tmp_path, f"data.path={folder}", "data.format=auto")
    assert result.returncode == 0, result.output[-3000:]
    run = read_run(out)
    assert run["data"]["valid_examples"] == 16 and run["loss"]["eval"] is not None


def test_tool_calling_data_trains_through_the_templates_tool_support(cli, tmp_path):
    """Glaive function-calling records (ShareGPT function_call / observation turns, a tools column),
    given by data.path alone, trained through the built-in Qwen 2.5 template's tool support."""
    from test_chat_data import GLAIVE

    result, out = train(cli, tmp_path, f"data.path={GLAIVE}", "model.chat_template=qwen2.5",
                        "model.max_seq_length=2048", "trainer.max_steps=2", "trainer.batch_size=2",
                        "data.max_samples=8")  # fmt: skip
    assert result.returncode == 0, result.output[-3000:]
    assert "Data format detected: sharegpt, from column(s) ['conversations', 'tools']" in result.stderr
    run = read_run(out)
    assert run["data"]["format"] == "messages" and run["data"]["train_examples"] == 8
    assert run["data"]["chat_template"] == "built-in qwen2.5"
    assert 0 < run["data"]["trained_tokens"] < run["data"]["tokens"]


def test_template_without_tool_support_stops_before_the_model_loads(cli, tmp_path):
    from test_chat_data import GLAIVE

    result, _ = train(cli, tmp_path, f"data.path={GLAIVE}")  # the tiny model's ChatML has no tool support
    assert result.returncode != 0 and "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "the chat template (tokenizer) has no tool support" in errors[0]
    assert "model.chat_template to a built-in with tool support (qwen2.5, llama3)" in errors[0]
    assert "Loading tiny:llama" not in result.output
