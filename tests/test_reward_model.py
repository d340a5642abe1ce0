"""trainer=reward: a sequence classifier with LoRA trained on preference pairs (TRL's RewardTrainer),
saved so that AutoModelForSequenceClassification + PeftModel load it, with its validation accuracy."""

from __future__ import annotations

import json

import pytest

from aitraining.compose import compose
from aitraining.errors import ConfigError
from conftest import read_run

COLOURS = ["red", "green", "blue", "black", "white", "pink", "grey", "brown"]


def learnable_pairs(n: int) -> list[dict]:
    return [{"prompt": f"Question {i}: which word is kind?\nAnswer:", "chosen": " thank you",
             "rejected": f" {COLOURS[i % len(COLOURS)]} rock"} for i in range(n)]  # fmt: skip


def test_reward_fields_are_checked():
    with pytest.raises(ConfigError, match=r"trainer.valid_size must be a fraction in \(0, 1\)"):
        compose(["trainer=reward", "trainer.valid_size=1.5"])
    with pytest.raises(ConfigError, match="trainer.beta applies to trainer=dpo, orpo, simpo, kto only"):
        compose(["trainer=reward", "trainer.beta=0.2"])
    assert compose(["trainer=reward"]).trainer.samples == 0  # a scorer writes no samples.md
    with pytest.raises(ConfigError, match="trainer=reward trains a scorer, which does not generate"):
        compose(["trainer=reward", "trainer.samples=2"])
    with pytest.raises(ConfigError, match="trains a scorer .* leave export=none"):
        compose(["trainer=reward", "export=merged"])


@pytest.mark.slow
def test_reward_model_learns_the_pairs_and_loads_as_a_classifier(cli, console, tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in learnable_pairs(64)))
    out = tmp_path / "rm"
    result = cli("experiment=quickstart", "trainer=reward", f"data.path={path}", "data.format=auto",
                 "trainer.learning_rate=3e-3", "trainer.max_steps=12", "trainer.logging_steps=1",
                 f"output_dir={out}")  # fmt: skip
    assert result.returncode == 0, result.output[-3000:]
    assert "held out (trainer.valid_size=0.1)" in result.stderr
    run = read_run(out)
    assert run["trainer"] == "reward" and run["data"]["valid_pairs_held_out"] == 6
    assert run["results"]["eval_accuracy"] == 1.0 and run["results"]["eval_margin"] > 0
    assert run["loss"]["eval"] is not None and "score" in run["lora"]["modules_to_save"]
    history = json.loads((out / "metrics.json").read_text())
    assert any("accuracy" in h for h in history) and any("eval_accuracy" in h for h in history)

    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    base = AutoModelForSequenceClassification.from_pretrained(run["model"]["path"], num_labels=1)
    model = PeftModel.from_pretrained(base, out / "adapter").eval()
    tokenizer = AutoTokenizer.from_pretrained(out / "adapter")
    prompt = "Question 99: which word is kind?\nAnswer:"  # not a training prompt

    def score(reply: str) -> float:
        with torch.no_grad():
            return model(**tokenizer(prompt + reply + tokenizer.eos_token, return_tensors="pt")).logits[0, 0].item()

    assert score(" thank you") > score(" green rock")
    untrained = AutoModelForSequenceClassification.from_pretrained(run["model"]["path"], num_labels=1)
    assert not torch.equal(untrained.score.weight, model.base_model.model.score.modules_to_save["default"].weight)
    assert not (out / "samples.md").exists()
    refused = console("chat", str(out))
    assert refused.returncode != 0 and "trained a reward model (trainer=reward)" in refused.stderr
    assert "Traceback" not in refused.stderr


@pytest.mark.slow
def test_quantized_reward_model(cli, tmp_path):
    """QLoRA: TRL keeps the trainable weights (the score head too) in bfloat16 over 4-bit float32 layers."""
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in learnable_pairs(16)))
    out = tmp_path / "rm4"
    result = cli("experiment=quickstart", "trainer=reward", f"data.path={path}", "data.format=auto", "quant=int4",
                 "trainer.max_steps=2", f"output_dir={out}")  # fmt: skip
    assert result.returncode == 0, result.output[-3000:]
    run = read_run(out)
    assert run["quant"] == "int4" and run["results"]["eval_accuracy"] is not None
