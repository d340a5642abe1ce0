"""`data=`: where the training examples come from and what shape they have."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from omegaconf import MISSING

from aitraining.choices import DataFormat
from aitraining.errors import require


@dataclass
class DataConfig:
    """`data=`: where the training examples come from and what shape they have."""

    path: str = MISSING
    """A file (.json/.jsonl/.csv/.parquet), a folder with train.* (and validation.*), a hub
    dataset id, or `pkg:samples/<file>` for data shipped with aitraining."""
    format: DataFormat = DataFormat.auto
    text_column: str = "text"
    """Column holding raw text (format=text)."""
    messages_column: str = "messages"
    """Column holding role/content lists (format=messages)."""
    tools: Optional[str] = None
    """A .json file holding the tool schemas (a list of OpenAI-style function schemas) offered in
    every conversation that has no `tools` column of its own; None for none."""
    train_split: str = "train"
    valid_split: Optional[str] = None
    """Split (or folder file) used for evaluation; None for no evaluation set."""
    valid_size: Optional[float] = None
    """Carve this fraction of the training data out as the evaluation set (shuffled with the
    run's seed), when there is no validation split."""
    max_samples: Optional[int] = None
    """Use only the first N training examples; None for all."""
    columns: dict[str, str] = field(default_factory=dict)
    """Rename columns before anything else, e.g. {question: instruction, answer: output}."""
    use_sharegpt_mapping: bool = False
    """ShareGPT data: keep the from/value records and render them through a role/content mapping
    (Unsloth's get_chat_template mapping when Unsloth is used) instead of converting them."""
    sharegpt_roles: dict[str, str] = field(default_factory=dict)
    """Extra ShareGPT roles and the chat roles they become, e.g. {observation: tool}. human, gpt
    and system are always mapped."""

    def __post_init__(self) -> None:
        require(bool(self.path.strip()), "data.path", "data.path is empty: give a file, a folder or a hub dataset id.")
        require(
            self.valid_size is None or 0 < self.valid_size < 1,
            "data.valid_size",
            f"data.valid_size must be a fraction in (0, 1) or null (got {self.valid_size}).",
        )
        require(
            self.valid_size is None or self.valid_split is None,
            "data.valid_size",
            "data.valid_size and data.valid_split are both set: choose one source for the evaluation set.",
        )
        require(
            self.max_samples is None or self.max_samples >= 1,
            "data.max_samples",
            f"data.max_samples must be >= 1 or null (got {self.max_samples}).",
        )
        require(
            self.tools is None or self.tools.endswith(".json"),
            "data.tools",
            f"data.tools must be a .json file holding a list of tool schemas, or null (got {self.tools}).",
        )
