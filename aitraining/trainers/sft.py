"""`trainer=sft` and `trainer=default`: TRL's SFTTrainer on data tokenized by aitraining/data/encode.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aitraining.choices import DataFormat, TrainerKind
from aitraining.trainers.base import TrainerConfig, TrainerSpec

if TYPE_CHECKING:
    from aitraining.config import Config


@dataclass
class SFTTrainerConfig(TrainerConfig):
    """`trainer=sft`: supervised fine-tuning, loss on the response only where the data marks one."""

    kind: TrainerKind = TrainerKind.sft
    packing: bool = False
    """Pack several examples into each max_seq_length row (TRL bfd): faster, same tokens."""
    response_only_loss: bool = True
    """Loss on the response only (Alpaca output, completion, assistant turns); false trains on
    every token, prompt included."""


@dataclass
class DefaultTrainerConfig(SFTTrainerConfig):
    """`trainer=default`: plain causal-LM fine-tuning (the existing tool's default), every token trains."""

    kind: TrainerKind = TrainerKind.default
    response_only_loss: bool = False


def sft_args(cfg: Config) -> dict[str, Any]:
    return {
        "packing": cfg.trainer.packing,
        # aitraining/data/encode.py hands TRL input_ids + labels with the loss mask already applied
        "completion_only_loss": False,
        "assistant_only_loss": False,
    }


_COMMON = dict(
    trl_config="trl:SFTConfig",
    trl_trainer="trl:SFTTrainer",
    data_formats=frozenset({DataFormat.text, DataFormat.prompt_completion, DataFormat.messages, DataFormat.sharegpt}),
    data_needs="text, Alpaca, prompt/completion, chat messages or ShareGPT records",
    prepare="aitraining.data.encode:prepare",
    unsloth=True,
    config_args=sft_args,
    owns={"packing": "trainer.packing"},
    logs="mean_token_accuracy, entropy, num_tokens",
)

SFT = TrainerSpec(
    kind=TrainerKind.sft,
    schema=SFTTrainerConfig,
    summary="TRL's SFTTrainer; loss on the response (Alpaca output, completion, assistant turns)",
    example="python -m aitraining model=qwen2_5_0_5b data=custom data.path=chats.jsonl accel=unsloth",
    **_COMMON,
)
DEFAULT = TrainerSpec(
    kind=TrainerKind.default,
    schema=DefaultTrainerConfig,
    summary="TRL's SFTTrainer as plain causal-LM fine-tuning; loss on every token",
    example="python -m aitraining trainer=default data=custom data.path=corpus.jsonl",
    **_COMMON,
)
