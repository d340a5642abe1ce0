"""Decide, before any weights load, whether the requested accelerator can be used.

`resolve` is a pure function of what it is given: the machine's facts come in an `Environment` of
callables (aitraining/unsloth_accel.py probes them), asked in order and only when needed (the import
last, because importing Unsloth patches transformers). When Unsloth cannot be used the run goes on
with standard transformers/PEFT loading, `apply` rewrites the config to say so, and exactly one
WARNING line says why.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional

from aitraining.choices import Accel, DistKind, Quant, TrainerKind
from aitraining.config import Config
from aitraining.trainers.registry import TRAINERS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Imported:
    """What `import unsloth` did: its version, or the first line of the exception it raised."""

    version: Optional[str] = None
    error: Optional[str] = None


@dataclass(frozen=True)
class Environment:
    """The facts the decision needs from the machine, each asked only when needed (in order)."""

    installed: Callable[[], bool]
    has_gpu: Callable[[], bool]
    try_import: Callable[[], Imported]  # imports Unsloth into this process when it succeeds


@dataclass(frozen=True)
class Decision:
    requested: Accel
    used: Accel
    reason: Optional[str] = None  # why `used` differs from `requested`
    unsloth_version: Optional[str] = None
    not_applied: bool = False  # the trainer is outside Unsloth's scope (not a failure to load it)

    @property
    def fell_back(self) -> bool:
        return self.used is not self.requested

    def as_dict(self) -> dict:
        return {
            "requested": self.requested.value,
            "used": self.used.value,
            "reason": self.reason,
            "unsloth_version": self.unsloth_version,
        }


def resolve(
    requested: Accel,
    trainer: TrainerKind,
    model_type: str,
    supported_model_types: list[str],
    quant: Quant,
    env: Environment,
    dist: DistKind = DistKind.none,
) -> Decision:
    """The decision table. Checks run cheapest first; the import runs last, only when nothing
    else rules Unsloth out (importing it patches transformers).

    Several processes are no reason to fall back: unsloth 2026.10.9 trains under DDP (torchrun /
    accelerate launch; unsloth/models/_ddp_defaults.py, and its CPU mode too, measured), FSDP2
    (unsloth/fsdp2_launch.py, models/fsdp2.py; QLoRA too, models/fsdp2_qlora.py) and DeepSpeed ZeRO
    (models/loader_utils.py:234-290). The one combination it leaves out is QLoRA under ZeRO-3: it
    stores 4-bit weights in a float dtype (bnb_4bit_quant_storage, which ZeRO-3 needs to partition
    them) only under FSDP2 (models/llama.py:4022-4025); the standard loader sets it (dist.py).
    FSDP and DeepSpeed themselves need GPUs, with or without Unsloth (aitraining.dist.problem)."""
    if requested is Accel.none:
        return Decision(requested, Accel.none)

    def fallback(reason: str, version: Optional[str] = None) -> Decision:
        return Decision(requested, Accel.none, reason, version)

    if not TRAINERS[trainer].unsloth:
        applies = " and ".join(spec.kind.value for spec in TRAINERS.values() if spec.unsloth)
        reason = f"Unsloth not applied: trainer '{trainer.value}' is not supported (Unsloth applies to {applies} only)"
        return Decision(requested, Accel.none, reason, not_applied=True)
    if model_type not in supported_model_types:
        return fallback(
            f"model type '{model_type}' is not supported by Unsloth "
            f"(accel.supported_model_types: {', '.join(supported_model_types)})"
        )
    if dist is DistKind.zero3 and quant is Quant.int4:
        return fallback(
            "quant=int4 under dist=zero3: Unsloth stores 4-bit weights in the compute dtype "
            "(bnb_4bit_quant_storage, which ZeRO-3 needs to partition them) only under FSDP2"
        )
    if not env.installed():
        return fallback("Unsloth is not installed (pip install unsloth)")
    if quant is Quant.int8 and not env.has_gpu():
        # Measured with unsloth 2026.10.9: its CPU mode loads 16-bit weights instead, saying so only
        # in a print. Standard loading does real bitsandbytes int8 on CPU.
        return fallback("quant=int8 is not supported by Unsloth's CPU mode (no GPU found)")
    imported = env.try_import()
    if imported.error is not None:
        return fallback(f"Unsloth is installed but failed to import: {imported.error}")
    return Decision(requested, Accel.unsloth, None, imported.version)


def decide(cfg: Config, model_type: str, env: Optional[Environment] = None) -> Decision:
    """Resolve `cfg.accel` and log the one WARNING line when falling back."""
    from aitraining import unsloth_accel

    decision = resolve(
        requested=cfg.accel.kind,
        trainer=cfg.trainer.kind,
        model_type=model_type,
        supported_model_types=cfg.accel.supported_model_types,
        quant=cfg.quant.kind,
        env=env or unsloth_accel.environment(),
        dist=cfg.dist.kind,
    )
    if decision.fell_back:
        prefix = "" if decision.not_applied else "Unsloth not available: "
        log.warning("%s%s; continuing without it (standard transformers/PEFT loading).", prefix, decision.reason)
    return decision


def apply(cfg: Config, decision: Decision) -> Config:
    """The config as it will actually run: accel rewritten to what the decision chose."""
    if not decision.fell_back:
        return cfg
    return dataclasses.replace(cfg, accel=dataclasses.replace(cfg.accel, kind=decision.used))
