"""Decide, before any weights load, whether the requested accelerator can be used.

`resolve` is a pure function of what it is given: the machine's facts come in an `Environment` of
callables, asked in order and only when needed (the import last, because importing Unsloth
patches transformers). When Unsloth
cannot be used the run goes on with standard transformers/PEFT loading, `apply` rewrites the config
to say so, and exactly one WARNING line says why.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional

from aitraining.config import Accel, Config, Quant, TrainerKind

log = logging.getLogger(__name__)

UNSLOTH_TRAINERS = (TrainerKind.sft, TrainerKind.default)


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
    world_size: int = 1


@dataclass(frozen=True)
class Decision:
    requested: Accel
    used: Accel
    reason: Optional[str] = None  # why `used` differs from `requested`
    unsloth_version: Optional[str] = None

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
) -> Decision:
    """The decision table. Checks run cheapest first; the import runs last, only when nothing
    else rules Unsloth out (importing it patches transformers)."""
    if requested is Accel.none:
        return Decision(requested, Accel.none)

    def fallback(reason: str, version: Optional[str] = None) -> Decision:
        return Decision(requested, Accel.none, reason, version)

    if trainer not in UNSLOTH_TRAINERS:
        return fallback(
            f"Unsloth not applied: trainer '{trainer.value}' is not supported "
            f"(Unsloth applies to {' and '.join(t.value for t in UNSLOTH_TRAINERS)} only)"
        )
    if model_type not in supported_model_types:
        return fallback(
            f"model type '{model_type}' is not supported by Unsloth "
            f"(accel.supported_model_types: {', '.join(supported_model_types)})"
        )
    if env.world_size > 1:
        return fallback(f"multi-process launch (WORLD_SIZE={env.world_size}) is not supported by the installed Unsloth")
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


def _installed() -> bool:
    return importlib.util.find_spec("unsloth") is not None


def _has_gpu() -> bool:
    import torch  # torch before Unsloth is fine; transformers, trl and peft must come after it

    return torch.cuda.is_available()


def _try_import() -> Imported:
    """`import unsloth` in this process. Every exception counts as a failure: without a GPU
    Unsloth can raise ImportError, NotImplementedError or RuntimeError."""
    try:
        import unsloth
    except Exception as exc:
        text = str(exc).strip()
        first = text.splitlines()[0] if text else ""
        return Imported(error=f"{type(exc).__name__}: {first}" if first else type(exc).__name__)
    return Imported(version=getattr(unsloth, "__version__", None))


def machine() -> Environment:
    return Environment(_installed, _has_gpu, _try_import, int(os.environ.get("WORLD_SIZE", "1")))


def decide(cfg: Config, model_type: str, env: Optional[Environment] = None) -> Decision:
    """Resolve `cfg.accel` and log the one WARNING line when falling back."""
    decision = resolve(
        requested=cfg.accel.kind,
        trainer=cfg.trainer.kind,
        model_type=model_type,
        supported_model_types=cfg.accel.supported_model_types,
        quant=cfg.quant.kind,
        env=env or machine(),
    )
    if decision.fell_back:
        reason = decision.reason or ""
        prefix = "" if reason.startswith("Unsloth not applied") else "Unsloth not available: "
        log.warning("%s%s; continuing without it (standard transformers/PEFT loading).", prefix, reason)
    return decision


def apply(cfg: Config, decision: Decision) -> Config:
    """The config as it will actually run: accel rewritten to what the decision chose."""
    if not decision.fell_back:
        return cfg
    return dataclasses.replace(cfg, accel=dataclasses.replace(cfg.accel, kind=decision.used))
