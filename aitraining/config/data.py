"""`data=`: where the training examples come from and what shape they have."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from omegaconf import MISSING

from aitraining.choices import DataFormat, MixStopping
from aitraining.errors import require


@dataclass
class SourceConfig:
    """One source of a mixture (`data.mix`): what it is and how much of the mixture it makes.
    Keys left out take data.<key>'s value (format, columns, split)."""

    path: str = MISSING
    """A file, a folder (train.* files, a hub-style dataset folder, or a `save_to_disk` folder), or a
    hub dataset id."""
    weight: float = 1.0
    """Sampling weight: the mixture draws from this source with probability weight / sum of weights."""
    format: Optional[DataFormat] = None
    """This source's format; None: data.format (auto: detected from its columns)."""
    columns: Optional[dict[str, str]] = None
    """Rename its columns first; None: data.columns."""
    split: Optional[str] = None
    """Its training split (a hub dataset's split, a folder's train.* file); None: data.train_split."""
    subset: Optional[str] = None
    """A hub dataset's subset (configuration); None: data.subset."""
    revision: Optional[str] = None
    """A hub dataset's revision (branch, tag or commit); None: data.revision."""
    max_samples: Optional[int] = None
    """Use only its first N examples; None: all."""


@dataclass
class DataConfig:
    """`data=`: where the training examples come from and what shape they have."""

    path: Optional[str] = MISSING
    """A file (.json/.jsonl/.csv/.parquet), a folder with train.* (and validation.*), a hub-style
    dataset folder or a `save_to_disk` folder, a hub dataset id, or `pkg:samples/<file>` for data
    shipped with aitraining. Not used when data.mix lists sources."""
    mix: list[SourceConfig] = field(default_factory=list)
    """A weighted mixture of sources, e.g. [{path: a.jsonl, weight: 0.7}, {path: b.json, weight: 0.3}]:
    each is read and converted to the trainer's shape on its own, then interleaved by weight
    (datasets.interleave_datasets). Empty: data.path is the one source."""
    mix_stopping: MixStopping = MixStopping.first_exhausted
    """When the mixture ends: first_exhausted (a source runs out) or all_exhausted (every source
    was seen whole; the smaller ones repeat)."""
    format: DataFormat = DataFormat.auto
    text_column: str = "text"
    """Column holding raw text (format=text)."""
    messages_column: str = "messages"
    """Column holding role/content lists (format=messages)."""
    tools: Optional[str] = None
    """A .json file holding the tool schemas (a list of OpenAI-style function schemas) offered in
    every conversation that has no `tools` column of its own; None for none."""
    subset: Optional[str] = None
    """A hub dataset's subset (its configuration name); None for its default."""
    revision: Optional[str] = None
    """A hub dataset's revision (branch, tag or commit); None for the main branch."""
    train_split: str = "train"
    valid_split: Optional[str] = None
    """Split (or folder file) used for evaluation; None for no evaluation set."""
    valid_size: Optional[float] = None
    """Carve this fraction of the training data out as the evaluation set (shuffled with the
    run's seed), when there is no validation split."""
    max_samples: Optional[int] = None
    """Use only the first N training examples (of each source); None for all."""
    columns: dict[str, str] = field(default_factory=dict)
    """Rename columns before anything else, e.g. {question: instruction, answer: output}."""
    use_sharegpt_mapping: bool = False
    """ShareGPT data: keep the from/value records and render them through a role/content mapping
    (Unsloth's get_chat_template mapping when Unsloth is used) instead of converting them."""
    sharegpt_roles: dict[str, str] = field(default_factory=dict)
    """Extra ShareGPT roles and the chat roles they become, e.g. {observation: tool}. human, gpt
    and system are always mapped."""
    streaming: bool = False
    """Read, convert and tokenize lazily while training (a datasets.IterableDataset): memory and
    start-up do not grow with the data. Needs trainer.max_steps; the first rows are checked before
    the model loads, a bad row later stops the run with its file and line."""
    cache: bool = True
    """Keep the data made ready for the trainer (tokenized, rendered) on disk, keyed by everything
    that changes it, so that reruns, sweep jobs and resumes skip that work (not with streaming)."""
    cache_dir: Optional[str] = None
    """Where the cache lives; None: $AITRAINING_CACHE/data (default ~/.cache/aitraining/data)."""

    def __post_init__(self) -> None:
        require(
            bool(self.mix) or bool((self.path or "").strip()),
            "data.path",
            "data.path is empty: give a file, a folder or a hub dataset id (or list sources in data.mix).",
        )
        for number, source in enumerate(self.mix):
            key = f"data.mix.{number}"
            require(
                bool(source.path.strip()), f"{key}.path", f"{key}.path is empty: give a file, a folder or a hub id."
            )
            require(source.weight > 0, f"{key}.weight", f"{key}.weight must be > 0 (got {source.weight}).")
            require(
                source.max_samples is None or source.max_samples >= 1,
                f"{key}.max_samples",
                f"{key}.max_samples must be >= 1 or null (got {source.max_samples}).",
            )
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
            not (self.streaming and self.valid_size is not None),
            "data.valid_size",
            "data.valid_size needs the whole data to carve an evaluation set from, which data.streaming=true never "
            "holds: give a validation file or split (data.valid_split), or set data.streaming=false.",
        )
        require(
            self.tools is None or self.tools.endswith(".json"),
            "data.tools",
            f"data.tools must be a .json file holding a list of tool schemas, or null (got {self.tools}).",
        )
