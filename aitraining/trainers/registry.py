"""The trainer registry: one record per trainer kind (see TrainerSpec in base.py).

Adding a trainer: write its schema and record (a module beside this one), list the record here,
add conf/trainer/<kind>.yaml naming the schema, its TrainerKind member, and its tests.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from aitraining.choices import DataFormat, TrainerKind
from aitraining.trainers.base import TrainerSpec
from aitraining.trainers.grpo import GRPO
from aitraining.trainers.kto import KTO
from aitraining.trainers.preference import DPO, ORPO, SIMPO
from aitraining.trainers.reward import REWARD
from aitraining.trainers.sft import DEFAULT, SFT

TRAINERS: dict[TrainerKind, TrainerSpec] = {
    spec.kind: spec for spec in (SFT, DEFAULT, DPO, ORPO, SIMPO, KTO, GRPO, REWARD)
}

# Trainer names other tools know that aitraining has no record for: why, and the option to use instead.
RETIRED: dict[str, tuple[str, str]] = {
    "ppo": (
        "TRL no longer ships a PPO trainer (removed in TRL 1.x), so aitraining has none. Its successor here is "
        "GRPO: reinforcement learning from your own reward functions (trainer.reward_funcs); TRL's RLOO is the other.",
        "grpo",
    ),
}


def retired(name: str, option: str) -> str | None:
    """The error for a retired trainer name as the user wrote it (`option`: trainer= or --trainer ); else None."""
    if name not in RETIRED:
        return None
    why, instead = RETIRED[name]
    return f"{option}{name}: {why} Use {option}{instead}."


TRL_FIELDS_FILE = Path(__file__).with_name("trl_fields.json")


@functools.cache
def _trl_fields() -> dict[str, list[str]]:
    return json.loads(TRL_FIELDS_FILE.read_text(encoding="utf-8"))


def trl_fields(config_class: str) -> frozenset[str]:
    """Field names of a TRL config class (`module:Class`), from the generated trl_fields.json."""
    return frozenset(_trl_fields()["configs"][config_class])


def trl_version() -> str:
    return _trl_fields()["trl_version"]


def kinds_for(data_format: DataFormat) -> list[TrainerKind]:
    """The trainer kinds that train on data of this shape."""
    return [spec.kind for spec in TRAINERS.values() if data_format in spec.data_formats]
