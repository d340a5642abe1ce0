"""Find and read the raw records of a data source: files (json, jsonl, csv, parquet), a folder of
split files, a hub dataset, or a sample shipped with aitraining. Plain Python: every bad record is
reported with its file and line (or record number), within a second, before torch is imported.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from aitraining.errors import ConfigError, DataError

PKG_SCHEME = "pkg:"
PACKAGE_DIR = Path(__file__).resolve().parent.parent  # pkg:samples/x -> aitraining/samples/x
SUFFIXES = (".json", ".jsonl", ".csv", ".parquet")
VALID_NAMES = ("validation", "valid", "val", "test")


@dataclass
class Record:
    """One raw example and where it came from (for error messages)."""

    row: dict[str, Any]
    where: str  # "file.jsonl line 12" or "file.json record 3"


def resolve_path(path: str) -> Path | str:
    """A local Path (checked to exist), or the string itself when it looks like a hub dataset id."""
    if path.startswith(PKG_SCHEME):
        local = PACKAGE_DIR / path[len(PKG_SCHEME) :]
        if not local.exists():
            raise ConfigError(f"data.path={path}: no such file shipped with aitraining ({local}).", key="data.path")
        return local
    local = Path(path).expanduser()
    if local.exists():
        return local
    looks_like_hub_id = path.count("/") == 1 and not path.startswith((".", "/", "~")) and Path(path).suffix == ""
    if looks_like_hub_id:
        return path
    raise ConfigError(
        f"data.path={path}: no such file or folder (relative to {Path.cwd()}). "
        "Give a .json/.jsonl/.csv/.parquet file, a folder holding train.*, or a hub dataset id (owner/name).",
        key="data.path",
    )


def split_file(folder: Path, names: tuple[str, ...]) -> Optional[Path]:
    for name in names:
        for suffix in SUFFIXES:
            candidate = folder / f"{name}{suffix}"
            if candidate.exists():
                return candidate
    return None


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


def read_hub(dataset_id: str, split: str) -> list[Record]:
    import datasets

    try:
        ds = datasets.load_dataset(dataset_id, split=split)
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"data.path={dataset_id}: could not load split '{split}' from the hub: {first}") from None
    return [Record(row, f"{dataset_id}[{split}] row {i + 1}") for i, row in enumerate(ds)]
