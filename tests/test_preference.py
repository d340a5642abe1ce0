"""trainer=dpo and trainer=orpo: real TRL trainers on the tiny model and the sample preference file."""

from __future__ import annotations

import json

import pytest

from conftest import PAIRS, read_run

# 32 pairs, cut to short prompts and replies, a few steps: seconds on CPU
SHORT = [
    "experiment=quickstart",
    f"data.path={PAIRS}",
    "data.format=auto",
    "data.max_samples=32",
    "trainer.max_prompt_length=48",
    "trainer.max_completion_length=32",
    "trainer.max_steps=4",
    "trainer.logging_steps=1",
    "trainer.batch_size=4",
    "trainer.samples=1",
    "trainer.sample_max_new_tokens=4",
]  # fmt: skip  (samples.md of preference pairs)


def imported(stderr: str) -> set[str]:
    return {line.split("|")[-1].strip() for line in stderr.splitlines() if line.startswith("import time:")}


@pytest.mark.slow
@pytest.mark.parametrize(
    "trainer,extra",
    [("dpo", []), ("orpo", []), ("simpo", ["trainer.simpo_gamma=1.0"]),
     ("dpo", ["trainer.loss_type=[sigmoid,sft]", "trainer.loss_weights=[1.0,0.5]"])],
)  # fmt: skip
def test_preference_trainers_train_and_the_adapter_loads(cli, tmp_path, trainer, extra):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = tmp_path / trainer
    result = cli(*SHORT, f"trainer={trainer}", "trainer.learning_rate=5e-4", f"output_dir={out}", *extra)
    assert result.returncode == 0, result.output[-3000:]
    run = read_run(out)
    assert run["trainer"] == trainer and run["data"]["format"] == "preference"
    assert run["data"]["pairs_cut"] > 0  # the sample's long replies were cut to 32 tokens
    assert run["loss"]["train_last"] == run["loss"]["train_last"]  # not NaN
    samples = (out / "samples.md").read_text()  # a pair's prompt, through the chat template, and its chosen reply
    assert run["prompt_style"] == "chat" and "<|im_start|>user" in samples and "**The data's answer**" in samples
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(run["model"]["path"]), out / "adapter")
    assert any("lora_B" in name for name, _ in model.named_parameters())


@pytest.mark.slow
def test_dpo_with_unsloth_requested_says_not_applied(cli, tmp_path):
    out = tmp_path / "dpo"
    result = cli(*SHORT, "trainer=dpo", "accel=unsloth", "trainer.max_steps=1", f"output_dir={out}")
    assert result.returncode == 0, result.output[-3000:]
    warnings = [line for line in result.stderr.splitlines() if "continuing without it" in line]
    assert len(warnings) == 1 and "Unsloth not applied: trainer 'dpo' is not supported" in warnings[0]
    accel = read_run(out)["accelerator"]
    assert accel["requested"] == "unsloth" and accel["used"] == "none" and "not applied" in accel["reason"]


@pytest.mark.slow
@pytest.mark.parametrize("trainer", ["dpo", "orpo"])
def test_quantized_preference_training(cli, tmp_path, trainer):
    out = tmp_path / trainer
    result = cli(*SHORT, f"trainer={trainer}", "quant=int4", "trainer.max_steps=2", f"output_dir={out}")
    assert result.returncode == 0, result.output[-3000:]
    assert read_run(out)["quant"] == "int4"


@pytest.mark.slow
def test_dpo_reward_margin_rises_on_a_learnable_set(cli, tmp_path):
    colours = ["red", "green", "blue", "black", "white", "pink", "grey", "brown"]
    pairs = [{"prompt": f"Question {i}: which word is kind?\nAnswer:", "chosen": " thank you",
              "rejected": f" {colours[i % len(colours)]} rock"} for i in range(64)]  # fmt: skip
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    out = tmp_path / "dpo"
    result = cli("experiment=quickstart", "trainer=dpo", f"data.path={path}", "data.format=preference",
                 "trainer.learning_rate=3e-3", "trainer.max_steps=16", "trainer.batch_size=4",
                 "trainer.logging_steps=1", f"output_dir={out}")  # fmt: skip
    assert result.returncode == 0, result.output[-3000:]
    margins = [m["rewards/margins"] for m in json.loads((out / "metrics.json").read_text()) if "rewards/margins" in m]
    assert len(margins) >= 10
    early, late = sum(margins[:3]) / 3, sum(margins[-3:]) / 3
    assert late > early and late > 0, margins


def test_dpo_on_sft_data_names_the_columns_it_needs(cli):
    result = cli("experiment=quickstart", "trainer=dpo", python_flags=("-X", "importtime"))
    assert result.returncode != 0 and "Traceback" not in result.output
    assert "trainer=dpo needs preference data with columns 'prompt' (or ShareGPT 'conversations')" in result.stderr
    assert "['input', 'instruction', 'output']" in result.stderr
    assert not {"torch", "transformers"} & imported(result.stderr)


def test_sft_on_preference_data_is_refused(cli):
    result = cli("experiment=quickstart", f"data.path={PAIRS}", "data.format=auto")
    assert result.returncode != 0 and "Data of this shape trains with trainer=dpo or trainer=orpo" in result.stderr


def test_preference_fields_are_refused_for_sft(cli):
    result = cli("experiment=quickstart", "trainer.beta=0.5")
    assert (
        result.returncode != 0
        and "trainer.beta applies to trainer=dpo, orpo, simpo, kto only, not to trainer=sft" in result.stderr
    )


def test_unknown_trainer_lists_the_options(cli):
    result = cli("experiment=quickstart", "trainer=rlhf")
    assert result.returncode != 0 and "Traceback" not in result.output
    for option in ("default", "dpo", "grpo", "kto", "orpo", "reward", "sft", "simpo"):
        assert option in result.stderr


def test_ppo_is_one_error_naming_grpo(cli):
    result = cli("experiment=quickstart", "trainer=ppo")
    assert result.returncode != 0 and "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
    assert errors == [
        "ERROR: trainer=ppo: TRL no longer ships a PPO trainer (removed in TRL 1.x), so aitraining has none. Its "
        "successor here is GRPO: reinforcement learning from your own reward functions (trainer.reward_funcs); "
        "TRL's RLOO is the other. Use trainer=grpo."
    ]


def test_dpo_loss_types_are_checked():
    from aitraining.compose import compose
    from aitraining.errors import ConfigError

    assert compose(["trainer=dpo", "trainer.loss_type=ipo"]).trainer.loss_type == ["ipo"]
    assert compose(["trainer=dpo", "trainer.loss_type=[sigmoid,sft]"]).trainer.loss_type == ["sigmoid", "sft"]
    with pytest.raises(ConfigError, match=r"trainer.loss_type=\['sigmod'\]: each must be one of sigmoid, hinge, ipo"):
        compose(["trainer=dpo", "trainer.loss_type=[sigmod]"])
    with pytest.raises(ConfigError, match=r"trainer.loss_weights has 1 weight\(s\) for 2 loss type\(s\)"):
        compose(["trainer=dpo", "trainer.loss_type=[sigmoid,sft]", "trainer.loss_weights=[1.0]"])
    with pytest.raises(ConfigError, match="trainer.args.loss_type is set by aitraining: set trainer=simpo"):
        compose(["trainer=simpo", "+trainer.args.loss_type=sigmoid"])


def test_dpo_args_are_checked_against_dpo_config(cli):
    result = cli("experiment=quickstart", "trainer=dpo", "+trainer.args.los_type=[sigmoid]")
    assert result.returncode != 0 and "DPOConfig" in result.stderr and "loss_type" in result.stderr


@pytest.mark.slow
def test_dpo_with_a_named_reference_model(cli, tmp_path, cache_dir):
    from aitraining import tiny

    reference = tiny.ensure_tiny("tiny:llama")  # a separate copy is loaded as the reference
    out = tmp_path / "dpo-ref"
    result = cli(*SHORT, "trainer=dpo", f"trainer.ref_model={reference}", "trainer.max_steps=2", f"output_dir={out}")
    assert result.returncode == 0, result.output[-3000:]
    assert read_run(out)["trainer"] == "dpo"


def test_ref_model_is_refused_for_orpo(cli):
    result = cli("experiment=quickstart", "trainer=orpo", "trainer.ref_model=some/model")
    assert (
        result.returncode != 0 and "trainer.ref_model applies to trainer=dpo only, not to trainer=orpo" in result.stderr
    )
