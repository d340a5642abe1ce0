"""`quant=` and `peft=`: how the base weights are held, and what trains on top of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aitraining.choices import Bnb4bitType, PeftKind, Quant
from aitraining.errors import require

SEVEN_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class QuantConfig:
    """`quant=`: load the base model quantized with bitsandbytes (LoRA trains on top)."""

    kind: Quant = Quant.none
    quant_type: Bnb4bitType = Bnb4bitType.nf4
    """4-bit only: nf4 (QLoRA's choice) or fp4."""
    double_quant: bool = True
    """4-bit only: quantize the quantization constants too (saves ~0.4 bit/param)."""


@dataclass
class PeftConfig:
    """`peft=`: LoRA adapters (`lora`) or full fine-tuning (`none`)."""

    kind: PeftKind = PeftKind.lora
    r: int = 16
    """LoRA rank."""
    alpha: int = 32
    """LoRA scaling numerator (scale = alpha / r)."""
    dropout: float = 0.05
    target_modules: Any = field(default_factory=lambda: list(SEVEN_PROJECTIONS))
    """Module names to adapt, `all-linear`, or a comma-separated string. The default seven
    projections are narrowed to those the model has (all linear layers if it has none of them)."""

    def __post_init__(self) -> None:
        if self.kind is PeftKind.none:
            return
        require(self.r >= 1, "peft.r", f"peft.r must be >= 1 (got {self.r}).")
        require(self.alpha > 0, "peft.alpha", f"peft.alpha must be > 0 (got {self.alpha}).")
        require(0 <= self.dropout < 1, "peft.dropout", f"peft.dropout must be in [0, 1) (got {self.dropout}).")
        modules = self.target_modules
        if isinstance(modules, str):
            modules = [m.strip() for m in modules.split(",") if m.strip()]
        ok = require(
            isinstance(modules, list) and bool(modules) and all(isinstance(m, str) for m in modules),
            "peft.target_modules",
            f"peft.target_modules must be a list of module names or 'all-linear' (got {self.target_modules!r}).",
        ) and require(
            "all-linear" not in modules or modules == ["all-linear"],
            "peft.target_modules",
            "peft.target_modules: 'all-linear' cannot be combined with module names.",
        )
        if ok:
            self.target_modules = list(modules)
