"""`accel=`: an optional accelerator; the resolver checks it can be used before weights load."""

from __future__ import annotations

from dataclasses import dataclass, field

from aitraining.choices import Accel
from aitraining.errors import require


@dataclass
class AccelConfig:
    """`accel=`: an optional accelerator; the resolver checks it can be used before weights load."""

    kind: Accel = Accel.none
    supported_model_types: list[str] = field(default_factory=list)
    """Model types (config.json `model_type`) the accelerator may be used with."""

    def __post_init__(self) -> None:
        require(
            self.kind is Accel.none or bool(self.supported_model_types),
            "accel.supported_model_types",
            f"accel.supported_model_types is empty: list the model types {self.kind.value} may be used with.",
        )
