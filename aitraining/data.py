"""Read training data, detect or check its format, and turn it into TRL's dataset shapes.

Everything here up to `to_datasets` is plain Python (json, csv): bad data is reported within a
second, naming the file and line or record, before torch is imported or weights load.

Shapes handed on to encode.py:
- text              -> {"text": str}
- alpaca, prompt_completion -> {"prompt": str, "completion": str}
- messages, sharegpt -> {"messages": [{"role", "content"}, ...]}  (rendered by the chat template)
- sharegpt with data.use_sharegpt_mapping=true -> {"conversations": [{"from", "value"}, ...]}, kept as
  they are (roles checked against the mapping) and rendered through a role/content mapping.
"""

from __future__ import annotations

import csv
import json
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from aitraining.config import DataConfig, DataFormat
from aitraining.errors import ConfigError, DataError

log = logging.getLogger(__name__)

PKG_SCHEME = "pkg:"
SUFFIXES = (".json", ".jsonl", ".csv", ".parquet")
VALID_NAMES = ("validation", "valid", "val", "test")
SHAREGPT_ROLES = {"human": "user", "gpt": "assistant", "system": "system"}

ALPACA_PROMPT = "### Instruction:\n{instruction}\n\n### Response:\n"
ALPACA_PROMPT_WITH_INPUT = "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"


@dataclass
class Record:
    """One raw example and where it came from (for error messages)."""

    row: dict[str, Any]
    where: str  # "file.jsonl line 12" or "file.json record 3"


@dataclass
class Examples:
    """Validated examples in TRL's shape, ready for `to_datasets`."""

    format: DataFormat
    train: list[dict[str, Any]]
    valid: Optional[list[dict[str, Any]]] = None
    sources: list[str] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)  # of the first raw record, for error messages

    @property
    def is_chat(self) -> bool:
        """Rendered through a chat template (message lists, ShareGPT, conversational pairs)."""
        if self.format is DataFormat.preference:
            return bool(self.train) and isinstance(self.train[0]["prompt"], list)
        return self.format in (DataFormat.messages, DataFormat.sharegpt)


# --------------------------------------------------------------------------- locating


def resolve_path(path: str) -> Path | str:
    """A local Path (checked to exist), or the string itself when it looks like a hub dataset id."""
    if path.startswith(PKG_SCHEME):
        local = Path(__file__).parent / path[len(PKG_SCHEME) :]
        if not local.exists():
            raise ConfigError(f"data.path={path}: no such file shipped with aitraining ({local}).")
        return local
    local = Path(path).expanduser()
    if local.exists():
        return local
    looks_like_hub_id = path.count("/") == 1 and not path.startswith((".", "/", "~")) and Path(path).suffix == ""
    if looks_like_hub_id:
        return path
    raise ConfigError(
        f"data.path={path}: no such file or folder (relative to {Path.cwd()}). "
        "Give a .json/.jsonl/.csv/.parquet file, a folder holding train.*, or a hub dataset id (owner/name)."
    )


def _split_file(folder: Path, names: tuple[str, ...]) -> Optional[Path]:
    for name in names:
        for suffix in SUFFIXES:
            candidate = folder / f"{name}{suffix}"
            if candidate.exists():
                return candidate
    return None


# --------------------------------------------------------------------------- reading


def read_file(path: Path) -> list[Record]:
    """Read every record of one file, with errors naming the file and line."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _read_jsonl(path)
    if suffix == ".json":
        return _read_json(path)
    if suffix == ".csv":
        return _read_csv(path)
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return [Record(row, f"{path} row {i + 1}") for i, row in enumerate(pq.read_table(path).to_pylist())]
    raise DataError(f"{path}: unsupported file type '{suffix}'. Allowed: {', '.join(SUFFIXES)}.")


def _read_jsonl(path: Path) -> list[Record]:
    records = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path} line {number}: not valid JSON ({exc.msg} at column {exc.colno}).") from None
            if not isinstance(row, dict):
                raise DataError(f"{path} line {number}: expected a JSON object, got {type(row).__name__}.")
            records.append(Record(row, f"{path} line {number}"))
    return records


def _read_json(path: Path) -> list[Record]:
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # one object per line in a .json file
            return _read_jsonl(path)
        raise DataError(f"{path} line {exc.lineno}: not valid JSON ({exc.msg} at column {exc.colno}).") from None
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise DataError(f"{path}: expected a JSON list of objects (or an object holding one list).")
        data = lists[0]
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of objects, got {type(data).__name__}.")
    records = []
    for number, row in enumerate(data, start=1):
        if not isinstance(row, dict):
            raise DataError(f"{path} record {number}: expected a JSON object, got {type(row).__name__}.")
        records.append(Record(row, f"{path} record {number}"))
    return records


def _read_csv(path: Path) -> list[Record]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        # line 1 is the header, so a row's line is its index + 2 (ignoring quoted newlines)
        return [Record(dict(row), f"{path} line {number}") for number, row in enumerate(reader, start=2)]


def _read_hub(dataset_id: str, split: str) -> list[Record]:
    import datasets

    try:
        ds = datasets.load_dataset(dataset_id, split=split)
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"data.path={dataset_id}: could not load split '{split}' from the hub: {first}") from None
    return [Record(row, f"{dataset_id}[{split}] row {i + 1}") for i, row in enumerate(ds)]


# --------------------------------------------------------------------------- formats


def detect_format(columns: set[str], cfg: DataConfig) -> DataFormat:
    if {"chosen", "rejected"} <= columns:
        return DataFormat.preference
    if cfg.messages_column in columns:
        return DataFormat.messages
    if "conversations" in columns:
        return DataFormat.sharegpt
    if {"instruction", "output"} <= columns:
        return DataFormat.alpaca
    if {"prompt", "completion"} <= columns:
        return DataFormat.prompt_completion
    if cfg.text_column in columns:
        return DataFormat.text
    raise DataError(
        f"cannot detect the data format from columns {sorted(columns)}. Expected one of: "
        f"'{cfg.text_column}' (text), instruction+output (alpaca), '{cfg.messages_column}' (messages), "
        "conversations (sharegpt), prompt+completion (prompt_completion); or set data.format and data.text_column."
    )


def _required_columns(fmt: DataFormat, cfg: DataConfig) -> list[str]:
    return {
        DataFormat.text: [cfg.text_column],
        DataFormat.alpaca: ["instruction", "output"],
        DataFormat.messages: [cfg.messages_column],
        DataFormat.sharegpt: ["conversations"],
        DataFormat.prompt_completion: ["prompt", "completion"],
        DataFormat.preference: ["chosen", "rejected"],
    }[fmt]


def _string(record: Record, key: str) -> str:
    value = record.row.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DataError(f"{record.where}: '{key}' must be a string, got {type(value).__name__}.")
    return value


def _from_alpaca(record: Record, cfg: DataConfig) -> Optional[dict[str, Any]]:
    instruction, output = _string(record, "instruction"), _string(record, "output")
    if not instruction.strip() or not output.strip():
        return None
    extra = _string(record, "input")
    template = ALPACA_PROMPT_WITH_INPUT if extra.strip() else ALPACA_PROMPT
    prompt = template.format(instruction=instruction, input=extra)
    system = _string(record, "system")
    if system.strip():
        prompt = f"{system}\n\n{prompt}"
    return {"prompt": prompt, "completion": output}


def _from_prompt_completion(record: Record, cfg: DataConfig) -> Optional[dict[str, Any]]:
    prompt, completion = _string(record, "prompt"), _string(record, "completion")
    return {"prompt": prompt, "completion": completion} if completion.strip() else None


def _from_text(record: Record, cfg: DataConfig) -> Optional[dict[str, Any]]:
    text = _string(record, cfg.text_column)
    return {"text": text} if text.strip() else None


def _turns(record: Record, key: str) -> list[Any]:
    turns = record.row.get(key)
    if not isinstance(turns, list):
        raise DataError(f"{record.where}: '{key}' must be a list of turns, got {type(turns).__name__}.")
    return turns


def _from_messages(record: Record, cfg: DataConfig) -> Optional[dict[str, Any]]:
    turns = _turns(record, cfg.messages_column)
    if not turns:
        raise DataError(f"{record.where}: '{cfg.messages_column}' is an empty conversation.")
    messages = []
    for number, turn in enumerate(turns, start=1):
        if not isinstance(turn, dict) or not {"role", "content"} <= turn.keys():
            raise DataError(f"{record.where}: turn {number} must be an object with 'role' and 'content'.")
        messages.append({"role": turn["role"], "content": turn["content"]})
    return {"messages": messages}


def _sharegpt_turns(record: Record, cfg: DataConfig) -> list[dict[str, Any]]:
    """The conversation's turns, each checked to have from/value and a role inside the mapping."""
    turns = _turns(record, "conversations")
    if not turns:
        raise DataError(f"{record.where}: 'conversations' is an empty conversation.")
    roles = {**SHAREGPT_ROLES, **cfg.sharegpt_roles}
    for number, turn in enumerate(turns, start=1):
        if not isinstance(turn, dict) or not {"from", "value"} <= turn.keys():
            raise DataError(f"{record.where}: turn {number} must be an object with 'from' and 'value'.")
        if turn["from"] not in roles:
            raise DataError(
                f"{record.where}: turn {number} has role '{turn['from']}', outside the ShareGPT mapping "
                f"({', '.join(roles)}). Map it with data.sharegpt_roles, e.g. "
                f"'+data.sharegpt_roles={{{turn['from']}:tool}}'."
            )
    return turns


def _from_sharegpt(record: Record, cfg: DataConfig) -> Optional[dict[str, Any]]:
    roles = {**SHAREGPT_ROLES, **cfg.sharegpt_roles}
    turns = _sharegpt_turns(record, cfg)
    if cfg.use_sharegpt_mapping:
        return {"conversations": [{"from": t["from"], "value": t["value"]} for t in turns]}
    return {"messages": [{"role": roles[t["from"]], "content": t["value"]} for t in turns]}


def _reply(record: Record, key: str, roles: dict[str, str], conversational: bool) -> Any:
    """A chosen/rejected reply: a string, a ShareGPT turn, or a list of messages."""
    value = record.row[key]
    if isinstance(value, dict) and {"from", "value"} <= value.keys():
        value = value["value"]
    if isinstance(value, str):
        return [{"role": "assistant", "content": value}] if conversational else value
    if isinstance(value, list) and conversational and all(isinstance(m, dict) and "content" in m for m in value):
        return [{"role": m.get("role", roles.get(m.get("from", ""), "assistant")), "content": m["content"]}
                for m in value]  # fmt: skip
    raise DataError(f"{record.where}: '{key}' must be a string, a ShareGPT turn or a list of messages.")


def _from_preference(record: Record, cfg: DataConfig) -> Optional[dict[str, Any]]:
    roles = {**SHAREGPT_ROLES, **cfg.sharegpt_roles}
    if "conversations" in record.row:
        turns = _sharegpt_turns(record, cfg)
        prompt: Any = [{"role": roles[t["from"]], "content": t["value"]} for t in turns]
    elif "prompt" in record.row:
        prompt = record.row["prompt"]
        if not isinstance(prompt, (str, list)):
            raise DataError(f"{record.where}: 'prompt' must be a string or a list of messages.")
    else:
        raise DataError(
            f"{record.where}: preference data needs 'prompt' (or ShareGPT 'conversations') with 'chosen' and "
            f"'rejected'; it has {sorted(record.row)}."
        )
    conversational = isinstance(prompt, list)
    chosen, rejected = (_reply(record, k, roles, conversational) for k in ("chosen", "rejected"))
    if not chosen or not rejected:
        return None
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


CONVERTERS = {
    DataFormat.text: _from_text,
    DataFormat.alpaca: _from_alpaca,
    DataFormat.prompt_completion: _from_prompt_completion,
    DataFormat.messages: _from_messages,
    DataFormat.sharegpt: _from_sharegpt,
    DataFormat.preference: _from_preference,
}
TRL_FORMAT = {
    DataFormat.text: DataFormat.text,
    DataFormat.alpaca: DataFormat.prompt_completion,
    DataFormat.prompt_completion: DataFormat.prompt_completion,
    DataFormat.messages: DataFormat.messages,
    DataFormat.sharegpt: DataFormat.messages,
    DataFormat.preference: DataFormat.preference,
}


def trl_format(fmt: DataFormat, cfg: DataConfig) -> DataFormat:
    if fmt is DataFormat.sharegpt and cfg.use_sharegpt_mapping:
        return DataFormat.sharegpt
    return TRL_FORMAT[fmt]


def rename_columns(records: list[Record], columns: dict[str, str]) -> list[Record]:
    if not columns:
        return records
    return [Record({columns.get(k, k): v for k, v in r.row.items()}, r.where) for r in records]


def split_valid(rows: list[dict[str, Any]], size: float, seed: int) -> tuple[list, list]:
    """Carve a shuffled fraction out as the evaluation set (at least one example each side)."""
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_valid = min(max(1, round(len(rows) * size)), len(rows) - 1)
    if n_valid < 1:
        raise DataError(f"data.valid_size={size}: {len(rows)} example(s) are too few to carve an evaluation set.")
    valid = set(order[:n_valid])
    return [r for i, r in enumerate(rows) if i not in valid], [rows[i] for i in sorted(valid)]


def convert(records: list[Record], fmt: DataFormat, cfg: DataConfig, source: str) -> list[dict[str, Any]]:
    """Check every record has what `fmt` needs and convert it; drop empty ones (counted)."""
    if not records:
        raise DataError(f"{source}: holds no records.")
    needed = _required_columns(fmt, cfg)
    for record in records:
        missing = [c for c in needed if c not in record.row]
        if missing:
            raise DataError(
                f"{record.where}: missing column(s) {missing} needed by format '{fmt.value}'; "
                f"it has {sorted(record.row)}."
            )
    converter = CONVERTERS[fmt]
    rows = [row for row in (converter(r, cfg) for r in records) if row is not None]
    dropped = len(records) - len(rows)
    if not rows:
        raise DataError(f"{source}: empty after dropping {dropped} record(s) with empty {'/'.join(needed)}.")
    if dropped:
        log.warning("Dropped %d of %d record(s) in %s with empty %s.", dropped, len(records), source, "/".join(needed))
    return rows


# --------------------------------------------------------------------------- entry points


def load_examples(cfg: DataConfig, seed: int = 42) -> Examples:
    """Read, detect, validate and convert the train (and validation) data. No torch."""
    location = resolve_path(cfg.path)
    valid_records: Optional[list[Record]] = None
    if isinstance(location, str):
        train_records = _read_hub(location, cfg.train_split)
        if cfg.valid_split:
            valid_records = _read_hub(location, cfg.valid_split)
        sources = [location]
    elif location.is_dir():
        train_file = _split_file(location, (cfg.train_split,))
        if train_file is None:
            raise DataError(
                f"data.path={cfg.path}: the folder holds no {cfg.train_split}.* file "
                f"({', '.join(SUFFIXES)}); it has {sorted(p.name for p in location.iterdir())}."
            )
        valid_file = _split_file(location, (cfg.valid_split,) if cfg.valid_split else VALID_NAMES)
        train_records = read_file(train_file)
        valid_records = read_file(valid_file) if valid_file else None
        sources = [str(train_file)] + ([str(valid_file)] if valid_file else [])
    else:
        if cfg.valid_split:
            raise ConfigError(
                f"data.valid_split={cfg.valid_split}: data.path is a single file with no splits; "
                "use a folder with train.* and validation.* files, or set data.valid_split=null."
            )
        train_records = read_file(location)
        sources = [str(location)]

    train_records = rename_columns(train_records, cfg.columns)
    valid_records = rename_columns(valid_records, cfg.columns) if valid_records is not None else None
    fmt = cfg.format
    if fmt is DataFormat.auto:
        if not train_records:
            raise DataError(f"{sources[0]}: holds no records.")
        fmt = detect_format(set(train_records[0].row), cfg)
        log.info("Data format detected: %s (from columns %s).", fmt.value, sorted(train_records[0].row))
    if cfg.use_sharegpt_mapping and fmt is not DataFormat.sharegpt:
        raise ConfigError(f"data.use_sharegpt_mapping=true needs ShareGPT data; this data is '{fmt.value}'.")
    train = convert(train_records, fmt, cfg, sources[0])
    valid = convert(valid_records, fmt, cfg, sources[-1]) if valid_records is not None else None
    if cfg.valid_size is not None:
        if valid is not None:
            raise ConfigError(f"data.valid_size is set, but {sources[-1]} already is a validation set.")
        train, valid = split_valid(train, cfg.valid_size, seed)
    if cfg.max_samples is not None:
        train = train[: cfg.max_samples]
    columns = sorted(train_records[0].row) if train_records else []
    return Examples(format=trl_format(fmt, cfg), train=train, valid=valid, sources=sources, columns=columns)
