"""`trainer=dpo`, `trainer=orpo` and `trainer=simpo`: TRL's DPOTrainer / ORPOTrainer / CPOTrainer (with
loss_type=simpo) on prompt/chosen/rejected pairs, rendered and length-limited by
aitraining/data/preference.py before the model loads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from aitraining.choices import DataFormat, DPOLoss, TrainerKind
from aitraining.errors import closest, require
from aitraining.trainers.base import TrainerConfig, TrainerSpec

if TYPE_CHECKING:
    from aitraining.config import Config


@dataclass
class PairTrainerConfig(TrainerConfig):
    """Fields of the trainers on prompt + reply data (preference pairs, unpaired examples, reward pairs)."""

    max_prompt_length: Optional[int] = None
    """Keep only the last N tokens of each prompt; None for no limit."""
    max_completion_length: Optional[int] = None
    """Keep only the first N tokens of each reply (chosen/rejected, or completion); None for no limit."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("max_prompt_length", "max_completion_length"):
            value = getattr(self, key)
            require(value is None or value >= 1, f"trainer.{key}", f"trainer.{key} must be >= 1 or null (got {value}).")


@dataclass
class PreferenceTrainerConfig(PairTrainerConfig):
    """Fields of the preference trainers."""

    beta: float = 0.1
    """Strength of the preference term (DPO's beta, ORPO's lambda); higher keeps closer to the reference."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.beta > 0, "trainer.beta", f"trainer.beta must be > 0 (got {self.beta}).")


@dataclass
class DPOTrainerConfig(PreferenceTrainerConfig):
    """`trainer=dpo`: direct preference optimisation."""

    kind: TrainerKind = TrainerKind.dpo
    learning_rate: float = 5e-5
    """For LoRA (the default peft); full fine-tuning wants ~5e-7."""
    ref_model: Optional[str] = None
    """A separate reference model (hub id or folder). None: with LoRA the base model with the
    adapters disabled (no second copy in memory); with full fine-tuning a frozen copy."""
    loss_type: Any = field(default_factory=lambda: [DPOLoss.sigmoid.value])
    """DPO's loss: sigmoid (the paper's), ipo, hinge, robust, apo_zero, sft, ... (TRL's list), or
    several, e.g. [sigmoid, sft], weighed by loss_weights."""
    loss_weights: Optional[list[float]] = None
    """One weight per loss_type when several are combined; None weighs each 1."""

    def __post_init__(self) -> None:
        super().__post_init__()
        losses = self.loss_type if isinstance(self.loss_type, list) else [self.loss_type]
        allowed = [loss.value for loss in DPOLoss]
        ok = require(
            bool(losses) and all(loss in allowed for loss in losses),
            "trainer.loss_type",
            f"trainer.loss_type={self.loss_type}: each must be one of {', '.join(allowed)}."
            + (closest(str(losses[0]), allowed) if losses else ""),
        )
        if ok:
            self.loss_type = list(losses)
        require(
            self.loss_weights is None or len(self.loss_weights) == len(losses),
            "trainer.loss_weights",
            f"trainer.loss_weights has {len(self.loss_weights or [])} weight(s) for {len(losses)} loss type(s) "
            f"({', '.join(map(str, losses))}): give one each, or null.",
        )


@dataclass
class ORPOTrainerConfig(PreferenceTrainerConfig):
    """`trainer=orpo`: odds-ratio preference optimisation (SFT and preference in one loss, no reference)."""

    kind: TrainerKind = TrainerKind.orpo
    learning_rate: float = 8e-5
    """For LoRA (the default peft); full fine-tuning wants ~8e-6."""


@dataclass
class SimPOTrainerConfig(PreferenceTrainerConfig):
    """`trainer=simpo`: simple preference optimisation (TRL's CPOTrainer with loss_type=simpo): a
    length-normalised reward and a target margin, no reference model."""

    kind: TrainerKind = TrainerKind.simpo
    learning_rate: float = 5e-5
    """For LoRA (the default peft); full fine-tuning wants ~5e-7 to 1e-6."""
    beta: float = 2.0
    """Reward scale (the SimPO paper uses 2.0 to 2.5)."""
    simpo_gamma: float = 0.5
    """Target reward margin between chosen and rejected (the paper's gamma; gamma/beta about 0.25-0.5)."""
    cpo_alpha: float = 0.0
    """Weight of an SFT term on the chosen reply: 0 is pure SimPO, > 0 is CPO-SimPO."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(
            self.simpo_gamma >= 0, "trainer.simpo_gamma", f"trainer.simpo_gamma must be >= 0 (got {self.simpo_gamma})."
        )
        require(self.cpo_alpha >= 0, "trainer.cpo_alpha", f"trainer.cpo_alpha must be >= 0 (got {self.cpo_alpha}).")


def preference_args(cfg: Config) -> dict[str, Any]:
    # The prompt/completion limits are applied to the data (TRL 1.14's DPOConfig has no max_prompt_length).
    return {"beta": cfg.trainer.beta}


def dpo_args(cfg: Config) -> dict[str, Any]:
    return {**preference_args(cfg), "loss_type": list(cfg.trainer.loss_type), "loss_weights": cfg.trainer.loss_weights}


def simpo_args(cfg: Config) -> dict[str, Any]:
    t = cfg.trainer
    return {**preference_args(cfg), "loss_type": "simpo", "simpo_gamma": t.simpo_gamma, "cpo_alpha": t.cpo_alpha}


PAIRS = "preference data with columns 'prompt' (or ShareGPT 'conversations') + 'chosen' + 'rejected'"
_OWNS = {"beta": "trainer.beta", "max_completion_length": "trainer.max_completion_length"}
_COMMON = dict(
    data_formats=frozenset({DataFormat.preference}),
    data_needs=PAIRS,
    prepare="aitraining.data.preference:prepare",
    unsloth=False,
)

DPO = TrainerSpec(
    kind=TrainerKind.dpo,
    schema=DPOTrainerConfig,
    summary="TRL's DPOTrainer; with LoRA the reference is the base model with the adapters disabled",
    trl_config="trl:DPOConfig",
    trl_trainer="trl:DPOTrainer",
    trainer_kwargs="aitraining.trainers.build:reference_model",
    config_args=dpo_args,
    owns={**_OWNS, "loss_type": "trainer.loss_type", "loss_weights": "trainer.loss_weights"},
    example="python -m aitraining trainer=dpo data=custom data.path=pairs.jsonl 'trainer.loss_type=[sigmoid,sft]'",
    logs="rewards/chosen, rewards/rejected, rewards/margins, rewards/accuracies",
    **_COMMON,
)
ORPO = TrainerSpec(
    kind=TrainerKind.orpo,
    schema=ORPOTrainerConfig,
    summary="TRL's ORPOTrainer (trl.experimental.orpo); no reference model",
    trl_config="trl.experimental.orpo:ORPOConfig",
    trl_trainer="trl.experimental.orpo:ORPOTrainer",
    config_args=preference_args,
    owns=_OWNS,
    example="python -m aitraining trainer=orpo data=custom data.path=pairs.jsonl",
    logs="rewards/margins, rewards/accuracies, log_odds_ratio, nll_loss",
    **_COMMON,
)
SIMPO = TrainerSpec(
    kind=TrainerKind.simpo,
    schema=SimPOTrainerConfig,
    summary="TRL's CPOTrainer (trl.experimental.cpo) with loss_type=simpo; no reference model",
    trl_config="trl.experimental.cpo:CPOConfig",
    trl_trainer="trl.experimental.cpo:CPOTrainer",
    config_args=simpo_args,
    owns={
        **_OWNS,
        "loss_type": "trainer=simpo (or trainer=dpo and trainer.loss_type)",
        "simpo_gamma": "trainer.simpo_gamma",
        "cpo_alpha": "trainer.cpo_alpha",
    },
    example="python -m aitraining trainer=simpo data=custom data.path=pairs.jsonl trainer.simpo_gamma=1.0",
    logs="rewards/margins, rewards/accuracies, nll_loss",
    **_COMMON,
)
