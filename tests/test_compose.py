"""Every shipped config composes and validates; composing imports no torch."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from aitraining.compose import compose
from aitraining.conf_files import CONF_DIR
from aitraining.config import Accel, Config, PeftKind, Quant, TrainerKind

GROUPS = ["model", "trainer", "accel", "quant", "peft", "data", "dist", "logger", "export"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONF_DIR) / group).glob("*.yaml"))


def experiments() -> list[str]:
    return sorted(p.stem for p in (Path(CONF_DIR) / "experiment").glob("*.yaml"))


def compose_config(overrides: list[str]) -> Config:
    return compose(overrides)


# data=custom has a required path, data=mix required sources; the others compose as they are.
EXTRA = {
    ("data", "custom"): ["data.path=some/file.jsonl"],
    ("data", "mix"): ["data.mix=[{path: some/a.jsonl, weight: 0.7}, {path: some/b.json, weight: 0.3}]"],
}


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_group_option_composes_and_validates(group, option):
    cfg = compose_config([f"{group}={option}", *EXTRA.get((group, option), [])])
    assert isinstance(cfg, Config)


@pytest.mark.parametrize("name", experiments())
def test_every_experiment_composes_and_validates(name):
    cfg = compose_config([f"experiment={name}"])
    assert isinstance(cfg, Config)


def test_expected_options_exist():
    assert set(options("model")) >= {
        "llama3_2_1b", "llama3_2_3b", "llama3_1_8b", "mistral_7b", "mistral_nemo", "gemma_7b",
        "gemma2_2b", "gemma2_9b", "qwen2_5_0_5b", "qwen2_5_7b", "tiny",
    }  # fmt: skip
    assert set(options("trainer")) >= {"sft", "default"}
    assert set(options("accel")) == {"none", "unsloth"}
    assert set(options("quant")) == {"none", "int4", "int8"}
    assert set(options("peft")) == {"lora", "none"}
    assert set(options("dist")) == {"none", "ddp", "fsdp", "zero2", "zero3"}
    assert "quickstart" in experiments()


def test_defaults_and_typed_values():
    cfg = compose_config([])
    assert cfg.model.name == "meta-llama/Llama-3.2-1B"
    assert cfg.trainer.kind is TrainerKind.sft
    assert cfg.accel.kind is Accel.none
    assert cfg.quant.kind is Quant.none
    assert cfg.peft.kind is PeftKind.lora
    assert cfg.peft.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def test_product_page_combination():
    cfg = compose_config(["model=llama3_2_1b", "trainer=sft", "accel=unsloth", "quant=int4"])
    assert cfg.accel.kind is Accel.unsloth and cfg.quant.kind is Quant.int4
    assert cfg.accel.supported_model_types == ["llama", "mistral", "gemma", "gemma2", "qwen2"]


def test_experiment_values_win_over_primary_config():
    cfg = compose_config(["experiment=quickstart"])
    assert cfg.project_name == "quickstart"
    assert cfg.model.name == "tiny:llama"


def test_all_linear_string_accepted():
    cfg = compose_config(["peft.target_modules=all-linear"])
    assert cfg.peft.target_modules == ["all-linear"]


def test_seed_zero_is_kept():
    assert compose_config(["seed=0"]).seed == 0


def test_cfg_job_prints_config_without_importing_torch(cli):
    args = ["model=llama3_2_1b", "trainer=sft", "accel=unsloth", "quant=int4", "--cfg", "job"]
    result = cli(*args, python_flags=("-X", "importtime"))
    assert result.returncode == 0, result.output
    printed = OmegaConf.create(result.stdout)
    assert printed.accel.kind == "unsloth" and printed.quant.kind == "int4"
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert "hydra" in imported
    assert not {"torch", "transformers", "trl", "peft", "datasets"} & imported


def test_importing_aitraining_imports_no_torch():
    import subprocess
    import sys

    code = "import sys, aitraining, aitraining.compose, aitraining.app; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_help_lists_groups_and_options_quickly(cli):
    result = cli("--help", python_flags=("-X", "importtime"))
    assert result.returncode == 0
    assert "trainer         sft, default, dpo, grpo, kto, orpo, reward, simpo" in result.stdout
    assert "model           llama3_2_1b," in result.stdout and "experiment      " in result.stdout
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert not {"torch", "transformers"} & imported
