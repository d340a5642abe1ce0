"""`trainer=reward`: TRL's RewardTrainer trains a reward model (a sequence classifier with one output)
on preference pairs; the run reports its accuracy on the validation pairs (chosen scored above rejected)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from aitraining.choices import DataFormat, TrainerKind
from aitraining.errors import require
from aitraining.trainers.base import TrainerSpec
from aitraining.trainers.preference import PAIRS, PairTrainerConfig

if TYPE_CHECKING:
    from aitraining.config import Config


@dataclass
class RewardTrainerConfig(PairTrainerConfig):
    """`trainer=reward`: a reward model scoring prompt + reply, trained so that chosen beats rejected."""

    kind: TrainerKind = TrainerKind.reward
    learning_rate: float = 1e-4
    """For LoRA (the default peft); full fine-tuning wants ~1e-5."""
    valid_size: float = 0.1
    """When the data has no validation pairs (a validation file or data.valid_size), hold out this
    fraction of the pairs (seeded) to measure accuracy on."""
    center_rewards_coefficient: Optional[float] = None
    """Pull the mean reward towards 0 with this weight (TRL's, e.g. 0.01); None for off."""
    samples: int = 0
    """A reward model scores text and does not generate: no samples.md (must stay 0)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(0 < self.valid_size < 1, "trainer.valid_size",
                f"trainer.valid_size must be a fraction in (0, 1) (got {self.valid_size}).")  # fmt: skip
        require(self.samples == 0 and not self.sample_prompts, "trainer.samples",
                "trainer=reward trains a scorer, which does not generate: leave trainer.samples=0 and "
                "trainer.sample_prompts empty (its eval_accuracy in run.json is the measure).")  # fmt: skip


def reward_args(cfg: Config) -> dict[str, Any]:
    return {"center_rewards_coefficient": cfg.trainer.center_rewards_coefficient}


def results(cfg: Config, history: list[dict[str, Any]]) -> dict[str, Any]:
    """The validation pairs' accuracy and margin (TRL's eval metrics of the final evaluation)."""
    final = next((h for h in reversed(history) if "eval_accuracy" in h), {})
    return {"eval_accuracy": final.get("eval_accuracy"), "eval_margin": final.get("eval_margin")}


REWARD = TrainerSpec(
    kind=TrainerKind.reward,
    schema=RewardTrainerConfig,
    summary="TRL's RewardTrainer on a sequence classifier with one output; reports validation accuracy",
    trl_config="trl:RewardConfig",
    trl_trainer="trl:RewardTrainer",
    data_formats=frozenset({DataFormat.preference}),
    data_needs=PAIRS,
    prepare="aitraining.data.preference:prepare_reward",
    unsloth=False,
    config_args=reward_args,
    owns={"center_rewards_coefficient": "trainer.center_rewards_coefficient"},
    sequence_classification=True,
    results="aitraining.trainers.reward:results",
    example="python -m aitraining trainer=reward data=custom data.path=pairs.jsonl",
    logs="accuracy, margin, mean_reward (eval_accuracy on the validation pairs in run.json)",
)
