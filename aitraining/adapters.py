"""The LoRA adapter beyond its rank: DoRA, rsLoRA, how A and B start, the modules trained in full; how
it is saved, and what run.json says about it. Both loaders (loading.py, unsloth_accel.py) take their
LoRA arguments from `lora_kwargs`.

PiSSA and OLoRA start the adapter from the base weights' SVD / QR and leave the base holding the
residual, so an adapter saved as it is would only fit that changed base. As PEFT documents, the
adapter is saved once before training (`save_initial`) and the trained one converted against it
(`save`: `path_initial_model_for_weight_conversion`) into a plain LoRA of rank 2r that loads with
`PeftModel.from_pretrained` on the unchanged base model.

Importing this imports nothing heavy.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Union

from aitraining.choices import LoraInit, PeftKind
from aitraining.config.peft import RESIDUAL_INITS
from aitraining.errors import ConfigError

if TYPE_CHECKING:
    from aitraining.config import Config

INITIAL_DIR = "adapter_init"  # the PiSSA/OLoRA adapter as initialised, inside the run folder while it trains


def lora_kwargs(cfg: Config) -> dict[str, Any]:
    """PEFT LoraConfig / Unsloth get_peft_model keyword arguments from peft.* (target modules apart)."""
    p = cfg.peft
    return {
        "r": p.r,
        "lora_alpha": p.alpha,
        "lora_dropout": p.dropout,
        "bias": "none",
        "use_dora": p.use_dora,
        "use_rslora": p.use_rslora,
        "init_lora_weights": True if p.init_lora_weights is LoraInit.default else p.init_lora_weights.value,
        "modules_to_save": list(p.modules_to_save) or None,
    }


def check_modules(key: str, requested: list[str], available: set[str], other: str = "") -> None:
    """Every module named in `key` (peft.target_modules, peft.modules_to_save) exists in the model."""
    missing = [m for m in requested if m not in available]
    if missing:
        raise ConfigError(
            f"{key}: the model has no module named {missing}. "
            f"Its modules include: {', '.join(sorted(available)[:40])}{other}.",
            key=key,
        )


def converts(cfg: Config) -> bool:
    """Whether the trained adapter is saved converted to a plain LoRA (PiSSA, OLoRA)."""
    return cfg.peft.kind is PeftKind.lora and cfg.peft.init_lora_weights in RESIDUAL_INITS


def save_initial(model, cfg: Config, out_dir: Path) -> Optional[Path]:
    """PiSSA/OLoRA: the adapter as initialised, saved before training (the conversion needs it)."""
    if not converts(cfg) or not hasattr(model, "peft_config"):
        return None
    path = out_dir / INITIAL_DIR
    config = model.peft_config["default"]
    init, config.init_lora_weights = config.init_lora_weights, True  # loading it must not rerun the SVD
    try:
        model.save_pretrained(str(path))
    finally:
        config.init_lora_weights = init
    return path


def save(model, weights_dir: Path, initial: Optional[Path]) -> None:
    """The trained weights; a PiSSA/OLoRA adapter converted to a plain LoRA (and its initial copy removed)."""
    if initial is None:
        model.save_pretrained(weights_dir)
        return
    with warnings.catch_warnings():  # PEFT loads the initial adapter beside the trained one to convert it,
        warnings.filterwarnings("ignore", message="PiSSA changes the base weights")  # and warns about that pair
        model.save_pretrained(weights_dir, path_initial_model_for_weight_conversion=str(initial))
    shutil.rmtree(initial, ignore_errors=True)


def describe(cfg: Config, targets: Union[list[str], str, None]) -> str:
    """run.json's `peft` line, e.g. `DoRA r=16 (rsLoRA) on [...]`."""
    p = cfg.peft
    extras = [x for x, on in (("rsLoRA", p.use_rslora), (f"init {p.init_lora_weights.value}",
              p.init_lora_weights is not LoraInit.default)) if on]  # fmt: skip
    return (
        f"{'DoRA' if p.use_dora else 'LoRA'} r={p.r}" + (f" ({', '.join(extras)})" if extras else "") + f" on {targets}"
    )


def record(cfg: Config, targets: Union[list[str], str, None], model) -> dict[str, Any]:
    """run.json's `lora`: the adapter as trained and as saved."""
    p = cfg.peft
    saved = getattr(model, "peft_config", {}).get("default")
    return {
        "r": p.r,
        "alpha": p.alpha,
        "dropout": p.dropout,
        "target_modules": targets,
        "use_dora": p.use_dora,
        "use_rslora": p.use_rslora,
        "init_lora_weights": p.init_lora_weights.value,
        "modules_to_save": sorted(saved.modules_to_save or []) if saved is not None else list(p.modules_to_save),
        "saved_as": f"plain LoRA r={2 * p.r} converted from {p.init_lora_weights.value} (loads on the unchanged base)"
        if converts(cfg)
        else None,
    }
