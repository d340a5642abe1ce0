"""`trainer=kto`: TRL's KTOTrainer on unpaired examples (a prompt, a completion, and whether it is
desirable), rendered, length-limited and counted by aitraining/data/unpaired.py before the model loads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aitraining.choices import DataFormat, KTOLoss, TrainerKind
from aitraining.errors import require
from aitraining.trainers.base import TrainerSpec
from aitraining.trainers.preference import PreferenceTrainerConfig, preference_args

if TYPE_CHECKING:
    from aitraining.config import Config


@dataclass
class KTOTrainerConfig(PreferenceTrainerConfig):
    """`trainer=kto`: Kahneman-Tversky optimisation; each example is good or bad on its own (no pairs)."""

    kind: TrainerKind = TrainerKind.kto
    learning_rate: float = 5e-5
    """For LoRA (the default peft); full fine-tuning wants ~5e-7 to 5e-6."""
    desirable_weight: float = 1.0
    """Weight of the desirable examples' loss. With unequal counts, KTO wants
    desirable_weight x n_desirable / (undesirable_weight x n_undesirable) in [1, 4/3]; the run
    warns, with the range for your data, when it is outside."""
    undesirable_weight: float = 1.0
    """Weight of the undesirable examples' loss (see desirable_weight)."""
    loss_type: KTOLoss = KTOLoss.kto
    """kto (the paper's, with a KL term estimated within each batch: batch_size >= 2), or
    apo_zero_unpaired."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("desirable_weight", "undesirable_weight"):
            value = getattr(self, key)
            require(value > 0, f"trainer.{key}", f"trainer.{key} must be > 0 (got {value}).")
        require(
            self.loss_type is not KTOLoss.kto or self.batch_size >= 2,
            "trainer.batch_size",
            f"trainer=kto needs trainer.batch_size >= 2 (got {self.batch_size}): its KL term pairs each prompt with "
            "another example's completion in the same batch. Or set trainer.loss_type=apo_zero_unpaired.",
        )


def kto_args(cfg: Config) -> dict[str, Any]:
    t = cfg.trainer
    return {
        **preference_args(cfg),
        "desirable_weight": t.desirable_weight,
        "undesirable_weight": t.undesirable_weight,
        "loss_type": t.loss_type.value,
    }


KTO = TrainerSpec(
    kind=TrainerKind.kto,
    schema=KTOTrainerConfig,
    summary="TRL's KTOTrainer; with LoRA the reference is the base model with the adapters disabled",
    trl_config="trl:KTOConfig",
    trl_trainer="trl:KTOTrainer",
    data_formats=frozenset({DataFormat.unpaired, DataFormat.preference}),
    data_needs="unpaired data: 'prompt' + 'completion' + 'label' (true/false), or 'messages' ending with the "
    "assistant's reply + 'label' (preference pairs are split into one good and one bad example)",
    prepare="aitraining.data.unpaired:prepare",
    unsloth=False,
    config_args=kto_args,
    owns={
        "beta": "trainer.beta",
        "desirable_weight": "trainer.desirable_weight",
        "undesirable_weight": "trainer.undesirable_weight",
        "loss_type": "trainer.loss_type",
    },
    example="python -m aitraining trainer=kto data=custom data.path=feedback.jsonl trainer.undesirable_weight=1.5",
    logs="rewards/chosen, rewards/rejected, rewards/margins, kl",
)
