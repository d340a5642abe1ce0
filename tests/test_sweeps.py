"""Experiments: the shipped overlays, a user's own repository, and the git state run.json records."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Optional

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from aitraining.app import CONF_DIR, experiment_git
from aitraining.config import Accel, DataFormat, PeftKind, Quant, TrainerKind, register_configs, to_config
from conftest import REPO

SHIPPED = ["fast_model", "quantized_model", "quickstart", "sharegpt_chat"]


def compose_cfg(overrides: list[str], hydra: bool = False):
    register_configs()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("config", overrides=overrides, return_hydra_config=hydra)


def git_head(folder: Path) -> Optional[str]:
    done = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else None


def user_experiments(root: Path, git: bool) -> Path:
    """A user's experiments repository: experiment/my_exp.yaml building on the shipped quickstart."""
    (root / "experiment").mkdir(parents=True)
    (root / "experiment" / "my_exp.yaml").write_text(
        "# @package _global_\n"
        "# python -m aitraining --config-dir THIS_FOLDER experiment=my_exp\n"
        "defaults:\n  - quickstart\n\nproject_name: my-exp\npeft:\n  r: 8\n"
    )
    if git:
        for args in (["init", "-q"], ["add", "."], ["commit", "-q", "-m", "my experiments"]):
            subprocess.run(
                ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-C", str(root), *args], check=True
            )
    return root


# --------------------------------------------------------------------------- experiments (fast)


def test_shipped_experiments_state_the_product_page_examples():
    fast = to_config(compose_cfg(["experiment=fast_model"]))
    assert fast.model.name == "meta-llama/Llama-3.2-1B" and fast.trainer.kind is TrainerKind.sft
    assert fast.accel.kind is Accel.unsloth and fast.quant.kind is Quant.none
    assert fast.peft.kind is PeftKind.lora and fast.peft.r == 16 and fast.peft.alpha == 32
    assert fast.project_name == "fast-model" and fast.trainer.epochs == 3 and fast.data.path == "./data"

    quantized = to_config(compose_cfg(["experiment=quantized_model"]))
    assert quantized.model.name == "meta-llama/Llama-3.2-3B" and quantized.quant.kind is Quant.int4
    assert quantized.accel.kind is Accel.unsloth and quantized.peft.r == 16
    assert quantized.project_name == "quantized-model"

    chat = to_config(compose_cfg(["experiment=sharegpt_chat"]))
    assert chat.data.format is DataFormat.sharegpt and chat.data.use_sharegpt_mapping is True
    assert chat.data.path == "./sharegpt_data.json" and chat.accel.kind is Accel.unsloth


@pytest.mark.parametrize("name", SHIPPED)
def test_experiment_files_are_overlays_with_their_command(name):
    text = (REPO / "experiments" / f"{name}.yaml").read_text()
    assert text.startswith("# @package _global_\n")
    assert f"python -m aitraining experiment={name}" in text
    if name == "quickstart":
        return  # older than this rule: it states trainer.logging_steps=10, the default, too
    # only what differs: no value that the defaults already give
    overlay = yaml.safe_load(text)
    defaults = OmegaConf.to_container(compose_cfg([]))
    for group, values in overlay.items():
        if isinstance(values, dict):
            same = {k for k, v in values.items() if defaults.get(group, {}).get(k) == v}
            assert not same, f"{name}.yaml repeats defaults: {group}.{same}"


@pytest.mark.parametrize("where", ["repo", "elsewhere"])
def test_experiment_is_selected_from_any_working_directory(cli, tmp_path, where):
    cwd = REPO if where == "repo" else tmp_path
    result = cli("experiment=fast_model", "--cfg", "job", cwd=cwd)
    assert result.returncode == 0, result.output
    printed = OmegaConf.create(result.stdout)
    assert printed.project_name == "fast-model" and printed.accel.kind == "unsloth"


@pytest.mark.parametrize("how", ["--config-dir", "hydra.searchpath"])
def test_user_experiments_repository(cli, tmp_path, how):
    mine = user_experiments(tmp_path / "my-experiments", git=False)
    flag = ["--config-dir", str(mine)] if how == "--config-dir" else [f"hydra.searchpath=[file://{mine}]"]
    result = cli(*flag, "experiment=my_exp", "--cfg", "job")
    assert result.returncode == 0, result.output
    printed = OmegaConf.create(result.stdout)
    # my_exp builds on the shipped quickstart and changes two values
    assert printed.project_name == "my-exp" and printed.peft.r == 8 and printed.model.name == "tiny:llama"
    shipped = cli(*flag, "experiment=quantized_model", "--cfg", "job")
    assert shipped.returncode == 0 and OmegaConf.create(shipped.stdout).quant.kind == "int4"


def test_experiment_git_names_the_file_and_its_repository(tmp_path):
    assert experiment_git(None) is None
    outside = tmp_path / "loose.yaml"
    outside.write_text("# @package _global_\n")
    state = experiment_git(outside)
    assert state is not None and state["file"] == str(outside)
    if git_head(tmp_path) is None:  # tmp is not inside a repository
        assert state["commit"] is None and state["dirty"] is None
    shipped = REPO / "experiments" / "quickstart.yaml"
    state = experiment_git(shipped)
    assert state is not None and state["commit"] == git_head(REPO)
