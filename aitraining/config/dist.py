"""`dist=`: how the processes of a multi-process launch share the work (conf/dist/<option>.yaml).

The launch itself is torchrun's, accelerate's or SLURM's (README, "More than one GPU"); this group
only says what each process does. Applied through TRL's config (TrainingArguments `fsdp` /
`fsdp_config` / `deepspeed`): aitraining/dist.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aitraining.choices import DistKind
from aitraining.errors import require

ZERO_STAGES = {DistKind.zero2: 2, DistKind.zero3: 3}


@dataclass
class DistConfig:
    """`dist=`: none (default), ddp, fsdp, zero2, zero3."""

    kind: DistKind = DistKind.none
    """none: no sharding (a multi-process launch runs plain DDP); ddp: the same, said explicitly;
    fsdp: FSDP2 (needs GPUs); zero2/zero3: DeepSpeed ZeRO (needs GPUs and `pip install deepspeed`)."""
    fsdp_config: dict[str, Any] = field(default_factory=dict)
    """dist=fsdp: transformers' `fsdp_config` (version 2; auto_wrap_policy, reshard_after_forward,
    state_dict_type, cpu_ram_efficient_loading, activation_checkpointing, cpu_offload)."""
    deepspeed: dict[str, Any] = field(default_factory=dict)
    """dist=zero2/zero3: the DeepSpeed config (transformers fills its "auto" values from the trainer's)."""

    def __post_init__(self) -> None:
        require(
            not self.fsdp_config or self.kind is DistKind.fsdp,
            "dist.fsdp_config",
            f"dist.fsdp_config applies to dist=fsdp only (this is dist={self.kind.value}).",
        )
        require(
            not self.deepspeed or self.kind in ZERO_STAGES,
            "dist.deepspeed",
            f"dist.deepspeed applies to dist=zero2|zero3 only (this is dist={self.kind.value}).",
        )
        if self.kind is DistKind.fsdp:
            version = self.fsdp_config.get("version", 2)
            require(
                version == 2,
                "dist.fsdp_config.version",
                f"dist.fsdp_config.version={version}: only FSDP2 (version 2) is supported "
                "(FSDP1 is deprecated in transformers 5 and Unsloth declines its fused LoRA kernels under it).",
            )
        if self.kind in ZERO_STAGES:
            stage = (self.deepspeed.get("zero_optimization") or {}).get("stage")
            require(
                stage == ZERO_STAGES[self.kind],
                "dist.deepspeed.zero_optimization.stage",
                f"dist={self.kind.value} needs dist.deepspeed.zero_optimization.stage={ZERO_STAGES[self.kind]} "
                f"(got {stage}).",
            )
