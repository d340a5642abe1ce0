"""What the model is, read from its config.json without loading weights (or importing torch)."""

from __future__ import annotations

import json
from pathlib import Path

from aitraining import tiny
from aitraining.config import ModelConfig
from aitraining.errors import ConfigError


def model_type(cfg: ModelConfig) -> str:
    """`model_type` from config.json: tiny models by name, local folders directly, hub ids via
    a download of config.json alone."""
    if tiny.is_tiny(cfg.name):
        return tiny.tiny_type(cfg.name)
    local = Path(cfg.name).expanduser()
    if local.is_dir():
        path = local / "config.json"
        if not path.exists():
            raise ConfigError(
                f"model.name={cfg.name}: the folder has no config.json (is it a model folder?).", key="model.name"
            )
    elif local.exists():
        raise ConfigError(f"model.name={cfg.name}: is a file; give a model folder or a hub id.", key="model.name")
    elif cfg.name.startswith((".", "/", "~")) or cfg.name.count("/") > 1:
        raise ConfigError(f"model.name={cfg.name}: no such folder (relative to {Path.cwd()}).", key="model.name")
    else:
        path = _hub_config(cfg)
    try:
        config = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"model.name={cfg.name}: cannot read {path}: {exc}", key="model.name") from None
    if "model_type" not in config:
        raise ConfigError(f"model.name={cfg.name}: {path} has no 'model_type'.", key="model.name")
    return str(config["model_type"])


def _hub_config(cfg: ModelConfig) -> str:
    from huggingface_hub import hf_hub_download

    try:
        return hf_hub_download(cfg.name, "config.json", revision=cfg.revision)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"model.name={cfg.name}: cannot read its config.json from the hub ({type(exc).__name__}: {first}). "
            "Check the id, your network, and `huggingface-cli login` for gated models.",
            key="model.name",
        ) from None


def local_path(cfg: ModelConfig) -> str:
    """What to pass to from_pretrained: builds a tiny model on first use."""
    if tiny.is_tiny(cfg.name):
        return str(tiny.ensure_tiny(cfg.name))
    return cfg.name
