"""`trainer=grpo`: TRL's GRPOTrainer. For each prompt the model samples `num_generations` completions,
the reward functions (aitraining/rewards.py) score them, and each completion is pushed up or down by
how it scored against the others of its group. Prompts come from any shape aitraining reads
(aitraining/data/prompts.py); the data's other columns go to the reward functions."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from aitraining.choices import DataFormat, TrainerKind
from aitraining.errors import require
from aitraining.trainers.base import TrainerConfig, TrainerSpec

if TYPE_CHECKING:
    from aitraining.config import Config


@dataclass
class GRPOTrainerConfig(TrainerConfig):
    """`trainer=grpo`: reinforcement learning from reward functions (group relative policy optimisation)."""

    kind: TrainerKind = TrainerKind.grpo
    learning_rate: float = 1e-5
    """For LoRA (the default peft); full fine-tuning wants ~1e-6."""
    reward_funcs: list[str] = field(default_factory=lambda: ["answer_match"])
    """The rewards: built-ins (answer_format, answer_match, length) and your own functions as
    path/to/file.py:function or module:function (see aitraining/rewards.py for what they receive)."""
    reward_weights: Optional[list[float]] = None
    """One weight per reward function in the total reward; None weighs each 1."""
    num_generations: int = 4
    """Completions sampled per prompt (the group). batch_size x gradient_accumulation must be a multiple."""
    max_completion_length: int = 256
    """Longest completion sampled, in tokens."""
    temperature: float = 1.0
    """Sampling temperature: higher gives more varied completions in a group."""
    max_prompt_length: Optional[int] = None
    """Keep only the last N tokens of each prompt; None: model.max_seq_length - max_completion_length."""
    answer_pattern: str = r"<answer>(.*?)</answer>"
    """Regex of the answer format (built-ins answer_format and answer_match; the first group is the answer)."""
    target_length: int = 64
    """Completion length in tokens that the built-in `length` rewards most."""

    def __post_init__(self) -> None:
        from aitraining import rewards  # the reward functions' checks, only when trainer=grpo is composed

        super().__post_init__()
        if rewards.check(self.reward_funcs):
            require(
                self.reward_weights is None or len(self.reward_weights) == len(self.reward_funcs),
                "trainer.reward_weights",
                f"trainer.reward_weights has {len(self.reward_weights or [])} weight(s) for "
                f"{len(self.reward_funcs)} reward function(s): give one each, or null.",
            )
        require(self.num_generations >= 2, "trainer.num_generations",
                f"trainer.num_generations must be >= 2 (got {self.num_generations}): GRPO compares completions "
                "within a group.")  # fmt: skip
        generation_batch = self.batch_size * self.gradient_accumulation
        require(
            self.num_generations < 2 or generation_batch % self.num_generations == 0,
            "trainer.num_generations",
            f"trainer.batch_size x trainer.gradient_accumulation ({self.batch_size} x {self.gradient_accumulation} = "
            f"{generation_batch} completions per step) must be a multiple of trainer.num_generations "
            f"({self.num_generations}), so that every prompt's group is whole.",
        )
        require(self.max_completion_length >= 1, "trainer.max_completion_length",
                f"trainer.max_completion_length must be >= 1 (got {self.max_completion_length}).")  # fmt: skip
        require(
            self.temperature > 0, "trainer.temperature", f"trainer.temperature must be > 0 (got {self.temperature})."
        )
        require(self.max_prompt_length is None or self.max_prompt_length >= 1, "trainer.max_prompt_length",
                f"trainer.max_prompt_length must be >= 1 or null (got {self.max_prompt_length}).")  # fmt: skip
        require(self.target_length >= 1, "trainer.target_length",
                f"trainer.target_length must be >= 1 (got {self.target_length}).")  # fmt: skip
        try:
            re.compile(self.answer_pattern)
        except re.error as exc:
            require(False, "trainer.answer_pattern", f"trainer.answer_pattern is not a valid regex: {exc}.")


def grpo_args(cfg: Config) -> dict[str, Any]:
    t = cfg.trainer
    return {
        "num_generations": t.num_generations,
        "max_completion_length": t.max_completion_length,
        "temperature": t.temperature,
        "reward_weights": t.reward_weights,
    }


def trainer_kwargs(cfg: Config, loaded: Any) -> dict[str, Any]:
    from aitraining import rewards

    return {"reward_funcs": rewards.load(cfg.trainer)}


def results(cfg: Config, history: list[dict[str, Any]]) -> dict[str, Any]:
    from aitraining import rewards

    """The reward functions and the last mean TRL logged for each (and for their weighted total)."""

    def last(key: str) -> Optional[float]:
        return next((h[key] for h in reversed(history) if key in h), None)

    return {
        "reward_funcs": list(cfg.trainer.reward_funcs),
        "reward_weights": cfg.trainer.reward_weights,
        "rewards": {name: last(f"rewards/{name}/mean") for name in rewards.names(cfg.trainer)},
        "reward": last("reward"),
    }


GRPO = TrainerSpec(
    kind=TrainerKind.grpo,
    schema=GRPOTrainerConfig,
    summary="TRL's GRPOTrainer: samples num_generations completions per prompt and learns from their rewards",
    trl_config="trl:GRPOConfig",
    trl_trainer="trl:GRPOTrainer",
    data_formats=frozenset({DataFormat.prompt, DataFormat.prompt_completion, DataFormat.messages}),
    data_needs="prompts: a 'prompt' column (text or messages), Alpaca 'instruction' (+ 'input'), or chat "
    "'messages' (a final assistant turn becomes the reference answer)",
    prepare="aitraining.data.prompts:prepare",
    unsloth=False,
    config_args=grpo_args,
    owns={
        "num_generations": "trainer.num_generations",
        "max_completion_length": "trainer.max_completion_length",
        "temperature": "trainer.temperature",
        "reward_weights": "trainer.reward_weights",
    },
    trainer_kwargs="aitraining.trainers.grpo:trainer_kwargs",
    results="aitraining.trainers.grpo:results",
    example="python -m aitraining trainer=grpo data=custom data.path=prompts.jsonl "
    "'trainer.reward_funcs=[answer_format,my_rewards.py:correct]'",
    logs="reward, rewards/NAME/mean and /std for each function NAME, completions/mean_length (run.json: each mean)",
)
