"""The training data: read, format detected or checked, converted, and checked against the trainer,
all in plain Python before torch is imported or weights load (`load_examples`).

- read.py: locating and reading the records (files, folders, hub, shipped samples);
- formats.py: format detection and conversion to the trainers' shapes;
- encode.py: SFT examples tokenized once with their loss masks (after the tokenizer loads);
- preference.py: preference pairs rendered and length-limited (after the tokenizer loads);
- unpaired.py: unpaired examples (kto) rendered, length-limited and counted (after the tokenizer loads);
- prompts.py: prompts (grpo) and the columns passed to reward functions (after the tokenizer loads).
"""

from __future__ import annotations

import dataclasses
import logging
import random
from dataclasses import dataclass, field
from typing import Any, Optional

from aitraining.choices import DataFormat, TrainerKind
from aitraining.config.data import DataConfig
from aitraining.data import chat
from aitraining.data.formats import columns_read, convert, detect_format, rename_columns, trl_format
from aitraining.data.read import SUFFIXES, VALID_NAMES, Record, read_file, read_hub, resolve_path, split_file
from aitraining.errors import ConfigError, DataError

log = logging.getLogger(__name__)


@dataclass
class Examples:
    """Validated examples in the trainers' shape (see formats.py), ready for encoding."""

    format: DataFormat
    train: list[dict[str, Any]]
    valid: Optional[list[dict[str, Any]]] = None
    sources: list[str] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)  # of the first raw record, for error messages
    source_format: Optional[DataFormat] = None  # the format read (alpaca), before conversion (prompt_completion)

    @property
    def is_chat(self) -> bool:
        """Rendered through a chat template (message lists, ShareGPT, conversational pairs)."""
        if self.format in (DataFormat.preference, DataFormat.unpaired, DataFormat.prompt):
            return bool(self.train) and isinstance(self.train[0]["prompt"], list)
        return self.format in (DataFormat.messages, DataFormat.sharegpt)

    @property
    def uses_tools(self) -> bool:
        """Some conversation offers tools or holds tool calls: the chat template must render them."""
        return self.format is DataFormat.messages and any(chat.uses_tools(r) for r in self.train + (self.valid or []))

    @property
    def uses_reasoning(self) -> bool:
        """Some message carries reasoning (reasoning parts or reasoning_content)."""
        rows = self.train + (self.valid or [])
        return self.format is DataFormat.messages and any(chat.uses_reasoning(r) for r in rows)


@dataclass
class Prepared:
    """The data made ready for the trainer before the model loads (a trainer record's `prepare`)."""

    train: Any  # datasets.Dataset
    valid: Any  # datasets.Dataset or None
    stats: dict[str, Any] = field(default_factory=dict)  # goes into run.json's data section


def split_valid(rows: list[dict[str, Any]], size: float, seed: int) -> tuple[list, list]:
    """Carve a shuffled fraction out as the evaluation set (at least one example each side)."""
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_valid = min(max(1, round(len(rows) * size)), len(rows) - 1)
    if n_valid < 1:
        raise DataError(f"data.valid_size={size}: {len(rows)} example(s) are too few to carve an evaluation set.")
    valid = set(order[:n_valid])
    return [r for i, r in enumerate(rows) if i not in valid], [rows[i] for i in sorted(valid)]


def load_examples(cfg: DataConfig, seed: int = 42) -> Examples:
    """Read, detect, validate and convert the train (and validation) data. No torch."""
    location = resolve_path(cfg.path)
    valid_records: Optional[list[Record]] = None
    if isinstance(location, str):
        train_records = read_hub(location, cfg.train_split)
        if cfg.valid_split:
            valid_records = read_hub(location, cfg.valid_split)
        sources = [location]
    elif location.is_dir():
        train_file = split_file(location, (cfg.train_split,))
        if train_file is None:
            raise DataError(
                f"data.path={cfg.path}: the folder holds no {cfg.train_split}.* file "
                f"({', '.join(SUFFIXES)}); it has {sorted(p.name for p in location.iterdir())}."
            )
        valid_file = split_file(location, (cfg.valid_split,) if cfg.valid_split else VALID_NAMES)
        train_records = read_file(train_file)
        valid_records = read_file(valid_file) if valid_file else None
        sources = [str(train_file)] + ([str(valid_file)] if valid_file else [])
    else:
        if cfg.valid_split:
            raise ConfigError(
                f"data.valid_split={cfg.valid_split}: data.path is a single file with no splits; "
                "use a folder with train.* and validation.* files, or set data.valid_split=null.",
                key="data.valid_split",
            )
        train_records = read_file(location)
        sources = [str(location)]

    train_records = rename_columns(train_records, cfg.columns)
    valid_records = rename_columns(valid_records, cfg.columns) if valid_records is not None else None
    fmt = cfg.format
    if fmt is DataFormat.auto:
        if not train_records:
            raise DataError(f"{sources[0]}: holds no records.")
        columns = set(train_records[0].row)
        fmt = detect_format(columns, cfg)
        log.info("Data format detected: %s, from column(s) %s (the first record has %s).", fmt.value,
                 columns_read(fmt, cfg, columns), sorted(columns))  # fmt: skip
    if cfg.tools and fmt not in (DataFormat.messages, DataFormat.sharegpt):
        raise ConfigError(
            f"data.tools is set, but the data is '{fmt.value}': tools go with chat data (messages or sharegpt).",
            key="data.tools",
        )
    if cfg.use_sharegpt_mapping and fmt is not DataFormat.sharegpt:
        raise ConfigError(
            f"data.use_sharegpt_mapping=true needs ShareGPT data; this data is '{fmt.value}'.",
            key="data.use_sharegpt_mapping",
        )
    if cfg.use_sharegpt_mapping and any(chat.has_tool_turns(r.row) for r in train_records + (valid_records or [])):
        log.warning(
            "data.use_sharegpt_mapping=true: the records have tool turns (function_call / observation) or tools, "
            "which a role/content mapping (Unsloth's get_chat_template(mapping=...) included) cannot render; they are "
            "converted to messages with tool calls and rendered through the chat template's tool support instead."
        )
        cfg = dataclasses.replace(cfg, use_sharegpt_mapping=False)
    train = convert(train_records, fmt, cfg, sources[0])
    valid = convert(valid_records, fmt, cfg, sources[-1]) if valid_records is not None else None
    if cfg.valid_size is not None:
        if valid is not None:
            raise ConfigError(
                f"data.valid_size is set, but {sources[-1]} already is a validation set.", key="data.valid_size"
            )
        train, valid = split_valid(train, cfg.valid_size, seed)
    if cfg.max_samples is not None:
        train = train[: cfg.max_samples]
    columns = sorted(train_records[0].row) if train_records else []
    return Examples(format=trl_format(fmt, cfg), train=train, valid=valid, sources=sources, columns=columns,
                    source_format=fmt)  # fmt: skip


def check_trainer(kind: TrainerKind, examples: Examples) -> None:
    """The data has a shape the trainer trains on (its record's data_formats), or one clear error."""
    from aitraining.trainers.registry import TRAINERS, kinds_for

    spec = TRAINERS[kind]
    if examples.format in spec.data_formats:
        return
    others = [k.value for k in kinds_for(examples.format)]
    raise DataError(
        f"{examples.sources[0]}: trainer={kind.value} needs {spec.data_needs}; this data is "
        f"'{examples.format.value}' with columns {examples.columns}."
        + (f" Data of this shape trains with trainer={' or trainer='.join(others)}." if others else "")
    )
