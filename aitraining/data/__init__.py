"""The training data: its sources located, their formats detected or checked, and the first rows of
each read, converted and checked against the trainer, all in plain Python before torch is imported
or weights load (`load_examples`). The rest is read lazily, source by source, when the trainer's
data is made ready (prepare.py): no list of the whole data is ever held.

- read.py: locating and reading the records (files, folders, hub, save_to_disk, shipped samples);
- formats.py: format detection and conversion to the trainers' shapes;
- prepare.py: each source read, converted and made ready in batches into an Arrow file (cached on
  disk, keyed by everything that changes it), then mixed by weight; or all of it lazily (streaming);
- encode.py: SFT examples tokenized once with their loss masks (after the tokenizer loads);
- preference.py: preference pairs rendered and length-limited (after the tokenizer loads);
- unpaired.py: unpaired examples (kto) rendered, length-limited and counted (after the tokenizer loads);
- prompts.py: prompts (grpo) and the columns passed to reward functions (after the tokenizer loads).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Optional

from aitraining.choices import DataFormat, MixStopping, TrainerKind
from aitraining.config.data import DataConfig, SourceConfig
from aitraining.data import chat
from aitraining.data.formats import columns_read, converter, detect_format, rename_columns, required, trl_format
from aitraining.data.read import Location, fingerprint, locate, records
from aitraining.errors import ConfigError, DataError

log = logging.getLogger(__name__)

# Records of each source read, converted and checked before the model loads (the whole of a smaller source).
HEAD_ROWS = 1000
CHAT_SHAPES = (DataFormat.preference, DataFormat.unpaired, DataFormat.prompt)


@dataclass
class Source:
    """One source of training (or validation) examples, read lazily: where it is, the config it is read
    with, its format, and its first rows, converted and checked before the model loads."""

    location: Optional[Location]
    cfg: DataConfig  # this source's own format, columns, split, ... resolved
    raw_format: DataFormat  # as read: detected or given (alpaca, sharegpt, ...)
    head: list[dict[str, Any]] = field(default_factory=list)  # its first converted rows
    columns: list[str] = field(default_factory=list)  # of its first raw record, for error messages
    weight: float = 1.0
    max_samples: Optional[int] = None
    streaming: bool = False
    given: Optional[list[dict[str, Any]]] = None  # rows already in the trainer's shape (from_rows)
    label: str = ""  # a name for rows given in memory
    # Counted by the last whole pass over `rows()`:
    rows_read: Optional[int] = None
    examples: Optional[int] = None
    dropped: Optional[int] = None
    content_hash: Optional[str] = field(default=None, repr=False)  # fingerprint(), once computed

    @property
    def name(self) -> str:
        return self.location.name if self.location is not None else self.label

    @property
    def format(self) -> DataFormat:
        """The trainer's shape its rows are converted to (rows given in memory already are)."""
        return self.raw_format if self.given is not None else trl_format(self.raw_format, self.cfg)

    @property
    def is_chat(self) -> bool:
        """Rendered through a chat template (message lists, ShareGPT, conversational pairs)."""
        if self.format in CHAT_SHAPES:
            return bool(self.head) and isinstance(self.head[0]["prompt"], list)
        return self.format in (DataFormat.messages, DataFormat.sharegpt)

    def rows(self, report: bool = True) -> Iterator[tuple[dict[str, Any], str]]:
        """Its converted rows with where each came from, lazily; empty records dropped and counted (and,
        with `report`, the count logged once the pass is whole)."""
        if self.given is not None:
            for number, row in enumerate(self.given[: self.max_samples], start=1):
                yield row, f"{self.name} example {number}"
            self.rows_read = self.examples = min(len(self.given), self.max_samples or len(self.given))
            self.dropped = 0
            return
        assert self.location is not None
        convert = converter(self.raw_format, self.cfg)
        read = kept = 0
        for record in records(self.location, self.streaming):
            read += 1
            row = convert(rename_columns(record, self.cfg.columns))
            if row is None:
                continue
            kept += 1
            yield row, record.where
            if self.max_samples is not None and kept >= self.max_samples:
                break
        self.rows_read, self.examples, self.dropped = read, kept, read - kept
        what = required(self.raw_format, self.cfg)
        if not read:
            raise DataError(f"{self.name}: holds no records.")
        if not kept:
            raise DataError(f"{self.name}: empty after dropping {read} record(s) with empty {what}.")
        if read > kept and report:
            log.warning("Dropped %d of %d record(s) in %s with empty %s.", read - kept, read, self.name, what)

    def fingerprint(self) -> str:
        """A hash of its content (the cache key's and the checkpoints' record of the data), read once:
        the resume check and the cache share it, and other processes receive it with the source."""
        if self.content_hash is None:
            if self.location is None:
                import hashlib
                import json

                self.content_hash = hashlib.blake2b(
                    json.dumps(self.given, sort_keys=True, default=str).encode(), digest_size=16
                ).hexdigest()
            else:
                self.content_hash = fingerprint(self.location)
        return self.content_hash


@dataclass
class Examples:
    """The training data's sources (a mixture when several), read lazily, with their first rows
    converted to the trainers' shape (see formats.py) and checked."""

    sources: list[Source]
    valid_sources: list[Source] = field(default_factory=list)
    valid_size: Optional[float] = None
    seed: int = 42
    streaming: bool = False
    mix_stopping: MixStopping = MixStopping.first_exhausted

    @classmethod
    def from_rows(
        cls, fmt: DataFormat, rows: list[dict], valid: Optional[list[dict]] = None, name: str = "data", **kwargs
    ) -> Examples:
        """Examples from rows already in the trainer's shape `fmt` (tests, and data built in memory)."""
        cfg = DataConfig(path=name)

        def source(given: list[dict]) -> Source:
            return Source(None, cfg, fmt, head=given[:HEAD_ROWS], given=given, label=name)

        return cls([source(rows)], [source(valid)] if valid else [], **kwargs)

    @property
    def format(self) -> DataFormat:
        """The trainer's shape of the (first) source: check_trainer checks each."""
        return self.sources[0].format

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.sources + self.valid_sources]

    @property
    def is_chat(self) -> bool:
        return any(s.is_chat for s in self.sources + self.valid_sources)

    @property
    def uses_tools(self) -> bool:
        """A conversation among the first rows offers tools or holds tool calls (encode.py checks every
        batch as it renders it)."""
        return any(s.format is DataFormat.messages and any(chat.uses_tools(r) for r in s.head) for s in self._all)

    @property
    def uses_reasoning(self) -> bool:
        """A message among the first rows carries reasoning (reasoning parts or reasoning_content)."""
        return any(s.format is DataFormat.messages and any(chat.uses_reasoning(r) for r in s.head) for s in self._all)

    @property
    def _all(self) -> list[Source]:
        return self.sources + self.valid_sources

    @property
    def chat_format(self) -> DataFormat:
        """The shape the chat template is set up for: the first chat source's."""
        return next((s.format for s in self.sources + self.valid_sources if s.is_chat), self.format)

    @property
    def source_format(self) -> DataFormat:
        """The format the (first) source was read in (alpaca), before conversion (prompt_completion)."""
        return self.sources[0].raw_format

    @property
    def has_valid(self) -> bool:
        """An evaluation set: validation sources, or data.valid_size carved from the training rows."""
        return self.valid_size is not None or bool(self.valid_sources)

    def first_rows(self, count: int) -> tuple[list[dict[str, Any]], str]:
        """Up to `count` converted rows of the validation set (its sources, or the first rows data.valid_size
        carved from one source once prepared), else of the training set, and which set they are."""
        if self.valid_sources:
            return self.valid_sources[0].head[:count], "the validation set"
        source = self.sources[0]
        if self.valid_size is not None and len(self.sources) == 1 and source.examples and count:
            wanted = set(holdout(source.examples, self.valid_size, self.seed)[1][:count])
            rows = itertools.islice(source.rows(report=False), max(wanted) + 1)
            return [row for i, (row, _) in enumerate(rows) if i in wanted], "the validation set"
        return source.head[:count], "the training set"

    def fingerprint(self) -> str:
        """The content of every source (file hashes, datasets' fingerprints) and how each is read."""
        import hashlib
        import json

        parts = [(s.name, s.fingerprint(), s.max_samples, s.weight) for s in self._all]
        parts += [("valid_size", self.valid_size, self.seed)]
        return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]

    @property
    def train(self) -> list[dict[str, Any]]:
        """Every training row in a list, source after source, data.valid_size carved out: for small data
        and tests. The runner never holds the whole data (prepare.py reads it in batches)."""
        rows = [row for source in self.sources for row, _ in source.rows()]
        if self.valid_size is None:
            return rows
        keep, _ = holdout(len(rows), self.valid_size, self.seed)
        return [rows[i] for i in keep]

    @property
    def valid(self) -> Optional[list[dict[str, Any]]]:
        """The validation rows in a list (see `train`), or None."""
        if self.valid_size is not None:
            rows = [row for source in self.sources for row, _ in source.rows()]
            return [rows[i] for i in holdout(len(rows), self.valid_size, self.seed)[1]]
        if not self.valid_sources:
            return None
        return [row for source in self.valid_sources for row, _ in source.rows()]


@dataclass
class Prepared:
    """The data made ready for the trainer before the model loads (a trainer record's `prepare`)."""

    train: Any  # datasets.Dataset, or datasets.IterableDataset when streaming
    valid: Any  # the same, or None
    stats: dict[str, Any] = field(default_factory=dict)  # goes into run.json's data section
    sources: list[Any] = field(default_factory=list)  # run.json's data.sources: a record.SourceRecord each


def holdout(n: int, size: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices kept and held out: a shuffled fraction `size` (at least one example each side), seeded."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    n_valid = min(max(1, round(n * size)), n - 1)
    if n_valid < 1:
        raise DataError(f"valid_size={size}: {n} example(s) are too few to carve an evaluation set.")
    held = sorted(order[:n_valid])
    held_set = set(held)
    return [i for i in range(n) if i not in held_set], held


def load_examples(cfg: DataConfig, seed: int = 42) -> Examples:
    """Locate every source, detect or check its format, and read, convert and check its first rows. No torch."""
    specs = cfg.mix or [SourceConfig(path=cfg.path or "")]
    if cfg.mix and cfg.path:
        log.info("Data: a mixture of %d sources (data.mix); data.path is not used.", len(cfg.mix))
    train, valid = [], []
    for number, spec in enumerate(specs):
        key = f"data.mix.{number}.path" if cfg.mix else "data.path"
        source_cfg = dataclasses.replace(
            cfg,
            path=spec.path,
            mix=[],
            format=spec.format or cfg.format,
            columns=dict(spec.columns) if spec.columns is not None else cfg.columns,
            train_split=spec.split or cfg.train_split,
            subset=spec.subset or cfg.subset,
            revision=spec.revision or cfg.revision,
            max_samples=spec.max_samples if cfg.mix else cfg.max_samples,
        )
        train_at, valid_at = locate(spec.path, source_cfg.train_split, cfg.valid_split, source_cfg.subset,
                                    source_cfg.revision, key)  # fmt: skip
        source = _open(train_at, source_cfg, spec.weight, cfg.streaming, None)
        train.append(source)
        if valid_at is not None:
            valid.append(_open(valid_at, source.cfg, 1.0, cfg.streaming, source.raw_format, validation=True))
    if cfg.valid_size is not None and valid:
        raise ConfigError(
            f"data.valid_size is set, but {valid[0].name} already is a validation set.", key="data.valid_size"
        )
    return Examples(train, valid, cfg.valid_size, seed, cfg.streaming, cfg.mix_stopping)


def _open(
    location: Location,
    cfg: DataConfig,
    weight: float,
    streaming: bool,
    fmt: Optional[DataFormat],
    validation: bool = False,
) -> Source:
    """A source with its format settled and its first rows read, converted and checked."""
    raw_head = [rename_columns(r, cfg.columns) for r in itertools.islice(records(location, streaming), HEAD_ROWS)]
    if not raw_head:
        raise DataError(f"{location.name}: holds no records.")
    columns = set(raw_head[0].row)
    fmt = fmt or cfg.format
    if fmt is DataFormat.auto:
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
    if cfg.use_sharegpt_mapping and any(chat.has_tool_turns(r.row) for r in raw_head):
        log.warning(
            "data.use_sharegpt_mapping=true: the records have tool turns (function_call / observation) or tools, "
            "which a role/content mapping (Unsloth's get_chat_template(mapping=...) included) cannot render; they are "
            "converted to messages with tool calls and rendered through the chat template's tool support instead."
        )
        cfg = dataclasses.replace(cfg, use_sharegpt_mapping=False)
    source = Source(location, cfg, fmt, columns=sorted(columns), weight=weight, streaming=streaming,
                    max_samples=None if validation else cfg.max_samples)  # fmt: skip
    convert = converter(fmt, cfg)
    source.head = [row for row in map(convert, raw_head) if row is not None][: source.max_samples]
    if len(raw_head) < HEAD_ROWS and not source.head:  # the whole source read, nothing left
        what = required(fmt, cfg)
        raise DataError(f"{source.name}: empty after dropping {len(raw_head)} record(s) with empty {what}.")
    return source


def check_trainer(kind: TrainerKind, examples: Examples) -> None:
    """Each source has a shape the trainer trains on (its record's data_formats), or one clear error."""
    from aitraining.trainers.registry import TRAINERS, kinds_for

    spec = TRAINERS[kind]
    for source in examples.sources + examples.valid_sources:
        if source.format in spec.data_formats:
            continue
        others = [k.value for k in kinds_for(source.format)]
        raise DataError(
            f"{source.name}: trainer={kind.value} needs {spec.data_needs}; this data is "
            f"'{source.format.value}' with columns {source.columns}."
            + (f" Data of this shape trains with trainer={' or trainer='.join(others)}." if others else "")
        )
