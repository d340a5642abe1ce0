"""`quant=` and `peft=`: how the base weights are held, and what trains on top of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aitraining.choices import Bnb4bitType, LoraInit, PeftKind, Quant
from aitraining.errors import require

SEVEN_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

# Initialisations that move part of the base weights into the adapter (the base keeps the residual).
RESIDUAL_INITS = (LoraInit.pissa, LoraInit.olora)
# Initialisations PEFT cannot run on quantized weights (measured with peft 0.21.2 on bitsandbytes 4/8-bit:
# pissa refuses, orthogonal fails; olora runs but its converted adapter no longer matches the quantized base).
FULL_PRECISION_INITS = (LoraInit.pissa, LoraInit.olora, LoraInit.orthogonal)


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
    use_dora: bool = False
    """DoRA (weight-decomposed LoRA): trains each weight's magnitude apart from its direction;
    closer to full fine-tuning at low ranks, slower per step."""
    use_rslora: bool = False
    """rsLoRA: scale the adapter by alpha / sqrt(r) instead of alpha / r (steadier at high ranks)."""
    init_lora_weights: LoraInit = LoraInit.default
    """How A and B start: default (B zero), gaussian, orthogonal, or pissa / olora (from the base
    weights' SVD / QR; the base keeps the residual, and the saved adapter is converted to a plain
    LoRA of rank 2r that loads on the unchanged base model)."""
    modules_to_save: list[str] = field(default_factory=list)
    """Modules trained in full and saved with the adapter, e.g. [embed_tokens, lm_head] when the
    tokenizer gains tokens. A reward model's score head is always saved."""

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
        require(
            all(isinstance(m, str) and m.strip() for m in self.modules_to_save),
            "peft.modules_to_save",
            f"peft.modules_to_save must be a list of module names, e.g. [embed_tokens, lm_head] "
            f"(got {self.modules_to_save!r}).",
        )
        init = self.init_lora_weights.value
        require(
            not (self.use_dora and self.init_lora_weights in RESIDUAL_INITS),
            "peft.use_dora",
            f"peft.use_dora=true with peft.init_lora_weights={init}: the {init} adapter is saved converted to a "
            "plain LoRA, which cannot hold DoRA's magnitudes. Choose one of them.",
        )
