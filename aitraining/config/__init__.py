"""The typed config: one small dataclass per config group (a module each), enums for every choice.

Hydra composes YAML from `conf/` onto these schemas (registered in its ConfigStore by
aitraining/compose.py), so a misspelt key or a wrong type fails at composition. Validation turns
the composed DictConfig into these dataclasses, which runs each `__post_init__`: that is where
values are checked, every problem collected (aitraining.errors). Nothing here imports torch.

The trainer group's schemas are per trainer kind and live with their records in
aitraining/trainers/.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import MISSING

from aitraining.choices import Accel, Bnb4bitType, DataFormat, DistKind, DType, PeftKind, Quant, TrainerKind
from aitraining.config.accel import AccelConfig
from aitraining.config.data import DataConfig
from aitraining.config.dist import DistConfig
from aitraining.config.export import ExportConfig
from aitraining.config.logger import LoggerConfig
from aitraining.config.model import ModelConfig
from aitraining.config.peft import FULL_PRECISION_INITS, RESIDUAL_INITS, SEVEN_PROJECTIONS, PeftConfig, QuantConfig
from aitraining.errors import require
from aitraining.trainers.base import TrainerConfig

__all__ = [
    "GROUP_SCHEMAS",
    "SEVEN_PROJECTIONS",
    "Accel",
    "AccelConfig",
    "Bnb4bitType",
    "Config",
    "DType",
    "DataConfig",
    "DataFormat",
    "DistConfig",
    "DistKind",
    "ExportConfig",
    "LoggerConfig",
    "ModelConfig",
    "PeftConfig",
    "PeftKind",
    "Quant",
    "QuantConfig",
    "TrainerConfig",
    "TrainerKind",
]

_PROJECT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass
class Config:
    """The whole run. Top-level keys plus one node per group."""

    model: ModelConfig = field(default_factory=ModelConfig)
    trainer: TrainerConfig = MISSING
    """One of the trainer schemas (aitraining/trainers/registry.py), chosen by trainer=NAME."""
    accel: AccelConfig = field(default_factory=AccelConfig)
    quant: QuantConfig = field(default_factory=QuantConfig)
    peft: PeftConfig = field(default_factory=PeftConfig)
    data: DataConfig = field(default_factory=DataConfig)
    dist: DistConfig = field(default_factory=DistConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    project_name: str = "aitraining"
    """Names the run; the default output folder is outputs/<project_name>/<time>."""
    output_dir: str = "outputs"
    """Where a single run writes (conf/config.yaml: a fresh outputs/<project_name>/<time>, the time
    of the launch: the same in every process of a multi-process launch, see aitraining/dist.py). A
    folder that already holds a run is refused unless overwrite=true. Sweep jobs write into
    their own numbered folders under the sweep folder instead."""
    overwrite: bool = False
    """Allow writing into an output_dir that already holds a run."""
    seed: int = 42
    """Seeds Python, NumPy, torch, data shuffling and LoRA init. 0 is a valid seed."""
    resume: Any = False
    """true: continue the run in output_dir from its newest complete checkpoint; a path: from that
    checkpoint (<run folder>/checkpoints/checkpoint-N); false: a new run. The config given must
    match the folder's config.yaml except for harmless keys (aitraining/resume.py)."""

    @property
    def resume_from(self) -> Optional[str]:
        """None (a new run), "latest" (resume=true) or the checkpoint path given."""
        if self.resume is False or self.resume is None:
            return None
        return "latest" if self.resume is True else str(self.resume)

    def __post_init__(self) -> None:
        require(
            bool(_PROJECT_NAME.match(self.project_name)),
            "project_name",
            f"project_name '{self.project_name}' must be a folder name: letters, digits, '.', '_' or '-'.",
        )
        require(
            self.quant.kind is Quant.none or self.peft.kind is PeftKind.lora,
            "quant",
            f"quant={self.quant.kind.value} needs peft=lora: quantized weights cannot be fully fine-tuned.",
            fix={"peft": "lora"},
        )
        init = self.peft.init_lora_weights
        require(
            self.quant.kind is Quant.none or self.peft.kind is PeftKind.none or init not in FULL_PRECISION_INITS,
            "peft.init_lora_weights",
            f"peft.init_lora_weights={init.value} needs full-precision base weights (quant={self.quant.kind.value}): "
            "PEFT computes it from the unquantized weights. Use quant=none, or init_lora_weights=default or gaussian.",
        )
        require(
            not self.data.streaming or self.trainer.max_steps > 0,
            "trainer.max_steps",
            "data.streaming=true needs trainer.max_steps (a streamed dataset has no length to count epochs by): "
            "set trainer.max_steps=N.",
        )
        require(
            self.dist.kind not in (DistKind.fsdp, DistKind.zero3)
            or init not in RESIDUAL_INITS
            or self.peft.kind is PeftKind.none,
            "peft.init_lora_weights",
            f"peft.init_lora_weights={init.value} with dist={self.dist.kind.value}: the adapter is converted "
            "to a plain LoRA when saved, which needs the whole adapter in one process. Use dist=ddp or zero2, "
            "or another init.",
        )
        require(
            not (self.model.liger_kernel and self.accel.kind is Accel.unsloth),
            "model.liger_kernel",
            "model.liger_kernel=true with accel=unsloth: Unsloth brings its own fused kernels. Choose one of them.",
        )
        require(
            not self.export.merge or self.peft.kind is PeftKind.lora,
            "export.merge",
            "export.merge=true needs peft=lora: a full fine-tune has no adapter to merge (model/ is the whole model).",
            fix={"peft": "lora"},
        )
        from aitraining.export import wanted
        from aitraining.trainers.registry import TRAINERS

        require(
            not (TRAINERS[self.trainer.kind].sequence_classification and wanted(self.export)),
            "export",
            f"trainer={self.trainer.kind.value} trains a scorer (a sequence classifier), which the export's merged "
            "causal model, GGUF files and Hub model card are not for: leave export=none.",
            fix={"export": "none"},
        )
        require(
            isinstance(self.resume, bool) or (isinstance(self.resume, str) and self.resume.strip() != ""),
            "resume",
            f"resume must be true, false or the path of a checkpoint (got {self.resume!r}).",
        )
        require(
            not (self.resume_from and self.overwrite),
            "resume",
            "resume and overwrite=true contradict each other: resume continues the run in output_dir, "
            "overwrite starts a new one there.",
        )


# The config groups and their schemas (the trainer's: the base every kind's schema extends).
GROUP_SCHEMAS: dict[str, type] = {
    "model": ModelConfig,
    "trainer": TrainerConfig,
    "accel": AccelConfig,
    "quant": QuantConfig,
    "peft": PeftConfig,
    "data": DataConfig,
    "dist": DistConfig,
    "logger": LoggerConfig,
    "export": ExportConfig,
}
