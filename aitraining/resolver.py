"""Decide, before any weights load, whether the requested accelerator can be used.

`resolve` is a pure function of what it is given (the probe is passed in and called last, and only
when everything else allows Unsloth, because importing Unsloth patches transformers). When Unsloth
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

from aitraining.config import Accel, Config, PeftKind, Quant, TrainerKind

log = logging.getLogger(__name__)

UNSLOTH_TRAINERS = (TrainerKind.sft, TrainerKind.default)


@dataclass(frozen=True)
class Probe:
    """What importing Unsloth told us."""

    installed: bool
    error: Optional[str] = None  # first line of the exception `import unsloth` raised
    version: Optional[str] = None
    cpu_only: bool = False  # Unsloth runs its own CPU mode (no GPU present)


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
    peft: PeftKind,
    quant: Quant,
    world_size: int,
    probe: Callable[[], Probe],
) -> Decision:
    """The decision table. Checks run cheapest first; `probe` (the import) runs last."""
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
    if world_size > 1:
        return fallback(f"multi-process launch (WORLD_SIZE={world_size}) is not supported by the installed Unsloth")
    result = probe()
    if not result.installed:
        return fallback("Unsloth is not installed (pip install unsloth)")
    if result.error is not None:
        return fallback(f"Unsloth is installed but failed to import: {result.error}", result.version)
    if result.cpu_only and quant is not Quant.none:
        return fallback(
            f"quant={quant.value} is not supported by Unsloth's CPU mode (no GPU found); "
            "use quant=none with Unsloth on CPU",
            result.version,
        )
    if peft is PeftKind.none and result.cpu_only:
        return fallback("peft=none (full fine-tuning) is not supported by Unsloth's CPU mode", result.version)
    return Decision(requested, Accel.unsloth, None, result.version)


def probe_unsloth() -> Probe:
    """Try `import unsloth` in this process (it must come before transformers, trl and peft).

    Every exception counts as a failure: without a GPU Unsloth can raise ImportError,
    NotImplementedError or RuntimeError.
    """
    if importlib.util.find_spec("unsloth") is None:
        return Probe(installed=False)
    try:
        import unsloth
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        text = str(exc).strip()
        first = text.splitlines()[0] if text else ""
        return Probe(installed=True, error=f"{type(exc).__name__}: {first}".rstrip(": "))
    import torch

    version = getattr(unsloth, "__version__", None)
    return Probe(installed=True, version=version, cpu_only=not torch.cuda.is_available())


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def decide(cfg: Config, model_type: str, probe: Callable[[], Probe] = probe_unsloth) -> Decision:
    """Resolve `cfg.accel` and log the one WARNING line when falling back."""
    decision = resolve(
        requested=cfg.accel.kind,
        trainer=cfg.trainer.kind,
        model_type=model_type,
        supported_model_types=cfg.accel.supported_model_types,
        peft=cfg.peft.kind,
        quant=cfg.quant.kind,
        world_size=world_size(),
        probe=probe,
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
