"""`trainer=dpo` and `trainer=orpo`: TRL's DPOTrainer / ORPOTrainer on prompt/chosen/rejected pairs,
rendered and length-limited by aitraining/data/preference.py before the model loads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from aitraining.choices import DataFormat, TrainerKind
from aitraining.errors import require
from aitraining.trainers.base import TrainerConfig, TrainerSpec

if TYPE_CHECKING:
    from aitraining.config import Config


@dataclass
class PreferenceTrainerConfig(TrainerConfig):
    """Fields of the preference trainers."""

    beta: float = 0.1
    """Strength of the preference term (DPO's beta, ORPO's lambda); higher keeps closer to the reference."""
    max_prompt_length: Optional[int] = None
    """Keep only the last N tokens of each prompt; None for no limit."""
    max_completion_length: Optional[int] = None
    """Keep only the first N tokens of each chosen/rejected reply; None for no limit."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.beta > 0, "trainer.beta", f"trainer.beta must be > 0 (got {self.beta}).")
        for key in ("max_prompt_length", "max_completion_length"):
            value = getattr(self, key)
            require(value is None or value >= 1, f"trainer.{key}", f"trainer.{key} must be >= 1 or null (got {value}).")


@dataclass
class DPOTrainerConfig(PreferenceTrainerConfig):
    """`trainer=dpo`: direct preference optimisation."""

    kind: TrainerKind = TrainerKind.dpo
    learning_rate: float = 5e-5
    """For LoRA (the default peft); full fine-tuning wants ~5e-7."""
    ref_model: Optional[str] = None
    """A separate reference model (hub id or folder). None: with LoRA the base model with the
    adapters disabled (no second copy in memory); with full fine-tuning a frozen copy."""


@dataclass
class ORPOTrainerConfig(PreferenceTrainerConfig):
    """`trainer=orpo`: odds-ratio preference optimisation (SFT and preference in one loss, no reference)."""

    kind: TrainerKind = TrainerKind.orpo
    learning_rate: float = 8e-5
    """For LoRA (the default peft); full fine-tuning wants ~8e-6."""


def preference_args(cfg: Config) -> dict[str, Any]:
    # The prompt/completion limits are applied to the data (TRL 1.14's DPOConfig has no max_prompt_length).
    return {"beta": cfg.trainer.beta}


_COMMON = dict(
    data_formats=frozenset({DataFormat.preference}),
    data_needs="preference data with columns 'prompt' (or ShareGPT 'conversations') + 'chosen' + 'rejected'",
    prepare="aitraining.data.preference:prepare",
    unsloth=False,
    config_args=preference_args,
    owns={"beta": "trainer.beta", "max_completion_length": "trainer.max_completion_length"},
)

DPO = TrainerSpec(
    kind=TrainerKind.dpo,
    schema=DPOTrainerConfig,
    summary="TRL's DPOTrainer; with LoRA the reference is the base model with the adapters disabled",
    trl_config="trl:DPOConfig",
    trl_trainer="trl:DPOTrainer",
    trainer_kwargs="aitraining.trainers.build:reference_model",
    **_COMMON,
)
ORPO = TrainerSpec(
    kind=TrainerKind.orpo,
    schema=ORPOTrainerConfig,
    summary="TRL's ORPOTrainer (trl.experimental.orpo); no reference model",
    trl_config="trl.experimental.orpo:ORPOConfig",
    trl_trainer="trl.experimental.orpo:ORPOTrainer",
    **_COMMON,
)
