"""Find and read the raw records of a data source: files (json, jsonl, csv, parquet), a folder of
split files, a hub-style dataset folder, a `save_to_disk` folder, a hub dataset, or a sample shipped
with aitraining.

Records are read lazily, one at a time (`records`), each with where it came from: every bad record is
reported with its file and line (or record / row number). Files are read in plain Python (a `.json`
list is parsed whole; `.jsonl`, `.csv` and `.parquet` stream); datasets (hub, `save_to_disk`,
hub-style folders) through the `datasets` library, which imports no torch.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from aitraining.errors import ConfigError, DataError

PKG_SCHEME = "pkg:"
PACKAGE_DIR = Path(__file__).resolve().parent.parent  # pkg:samples/x -> aitraining/samples/x
SUFFIXES = (".json", ".jsonl", ".csv", ".parquet")
VALID_NAMES = ("validation", "valid", "val", "test")
# A folder written by Dataset.save_to_disk / DatasetDict.save_to_disk holds one of these.
DISK_MARKERS = ("state.json", "dataset_dict.json")


@dataclass
class Record:
    """One raw example and where it came from (for error messages)."""

    row: dict[str, Any]
    where: str  # "file.jsonl line 12", "file.json record 3", "org/name[train] row 5"


@dataclass(frozen=True)
class Location:
    """Where one split of a source lives, and how to read it."""

    kind: str  # "file", "hub" (a hub id or a hub-style folder: datasets.load_dataset), "disk" (save_to_disk)
    path: str
    split: str = "train"
    subset: Optional[str] = None
    revision: Optional[str] = None

    @property
    def name(self) -> str:
        """How messages and run.json name it: the file, or `path[split]`."""
        return self.path if self.kind == "file" else f"{self.path}[{self.split}]"


def resolve_path(path: str, key: str = "data.path") -> Path | str:
    """A local Path (checked to exist), or the string itself when it looks like a hub dataset id."""
    if path.startswith(PKG_SCHEME):
        local = PACKAGE_DIR / path[len(PKG_SCHEME) :]
        if not local.exists():
            raise ConfigError(f"{key}={path}: no such file shipped with aitraining ({local}).", key=key)
        return local
    local = Path(path).expanduser()
    if local.exists():
        return local
    looks_like_hub_id = path.count("/") == 1 and not path.startswith((".", "/", "~")) and Path(path).suffix == ""
    if looks_like_hub_id:
        return path
    raise ConfigError(
        f"{key}={path}: no such file or folder (relative to {Path.cwd()}). Give a .json/.jsonl/.csv/.parquet "
        "file, a folder holding train.* (or a hub-style dataset, or a save_to_disk folder), or a hub dataset id "
        "(owner/name).",
        key=key,
    )


def split_file(folder: Path, names: tuple[str, ...]) -> Optional[Path]:
    for name in names:
        for suffix in SUFFIXES:
            candidate = folder / f"{name}{suffix}"
            if candidate.exists():
                return candidate
    return None


def locate(
    path: str,
    split: str,
    valid_split: Optional[str],
    subset: Optional[str] = None,
    revision: Optional[str] = None,
    key: str = "data.path",
) -> tuple[Location, Optional[Location]]:
    """The training split of a source and its validation split (None when it has none)."""
    location = resolve_path(path, key)
    if isinstance(location, str):  # a hub id
        train = Location("hub", location, split, subset, revision)
        return train, Location("hub", location, valid_split, subset, revision) if valid_split else None
    if location.is_dir() and any((location / marker).exists() for marker in DISK_MARKERS):
        train = Location("disk", str(location), split)
        return train, Location("disk", str(location), valid_split) if valid_split else None
    if location.is_dir():
        train_file = split_file(location, (split,))
        if train_file is not None:
            valid_file = split_file(location, (valid_split,) if valid_split else VALID_NAMES)
            return Location("file", str(train_file)), Location("file", str(valid_file)) if valid_file else None
        if _hub_style(location):  # a dataset repository cloned or downloaded: the hub's own layout
            train = Location("hub", str(location), split, subset, revision)
            return train, Location("hub", str(location), valid_split, subset, revision) if valid_split else None
        raise DataError(
            f"{key}={path}: the folder holds no {split}.* file ({', '.join(SUFFIXES)}), no hub-style dataset "
            f"(README.md or data/) and no save_to_disk dataset; it has {sorted(p.name for p in location.iterdir())}."
        )
    if valid_split:
        raise ConfigError(
            f"data.valid_split={valid_split}: {key} is a single file with no splits; "
            "use a folder with train.* and validation.* files, or set data.valid_split=null.",
            key="data.valid_split",
        )
    return Location("file", str(location)), None


def _hub_style(folder: Path) -> bool:
    """A folder laid out as a hub dataset repository: a README.md (its card, with any configs) or a data/
    folder of split files (data/train-00000-of-00001.parquet, ...)."""
    return (folder / "README.md").is_file() or (folder / "data").is_dir()


# --------------------------------------------------------------------------- records


def records(location: Location, streaming: bool = False) -> Iterator[Record]:
    """Every record of one split, lazily, with errors naming the file and line."""
    if location.kind == "file":
        return iter_file(Path(location.path))
    return _dataset_records(location, streaming)


def iter_file(path: Path) -> Iterator[Record]:
    """Read one file's records one by one, with errors naming the file and line."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _read_jsonl(path)
    if suffix == ".json":
        return _read_json(path)
    if suffix == ".csv":
        return _read_csv(path)
    if suffix == ".parquet":
        return _read_parquet(path)
    raise DataError(f"{path}: unsupported file type '{suffix}'. Allowed: {', '.join(SUFFIXES)}.")


def read_file(path: Path) -> list[Record]:
    """Every record of one (small) file as a list."""
    return list(iter_file(path))


def _read_jsonl(path: Path) -> Iterator[Record]:
    loads, name = json.loads, str(path)
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path} line {number}: not valid JSON ({exc.msg} at column {exc.colno}).") from None
            if not isinstance(row, dict):
                raise DataError(f"{path} line {number}: expected a JSON object, got {type(row).__name__}.")
            yield Record(row, f"{name} line {number}")


def _read_json(path: Path) -> Iterator[Record]:
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # one object per line in a .json file
            yield from _read_jsonl(path)
            return
        raise DataError(f"{path} line {exc.lineno}: not valid JSON ({exc.msg} at column {exc.colno}).") from None
    del text
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise DataError(f"{path}: expected a JSON list of objects (or an object holding one list).")
        data = lists[0]
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of objects, got {type(data).__name__}.")
    for number, row in enumerate(data, start=1):
        if not isinstance(row, dict):
            raise DataError(f"{path} record {number}: expected a JSON object, got {type(row).__name__}.")
        yield Record(row, f"{path} record {number}")


def _read_csv(path: Path) -> Iterator[Record]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        # line 1 is the header, so a row's line is its index + 2 (ignoring quoted newlines)
        for number, row in enumerate(reader, start=2):
            yield Record(dict(row), f"{path} line {number}")


def _read_parquet(path: Path) -> Iterator[Record]:
    import pyarrow.parquet as pq

    number = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
        for row in batch.to_pylist():
            number += 1
            yield Record(row, f"{path} row {number}")


@functools.lru_cache(maxsize=16)
def open_dataset(location: Location, streaming: bool = False):
    """The split as a datasets.Dataset (Arrow, memory-mapped), or an IterableDataset when streaming."""
    import datasets

    try:
        if location.kind == "disk":
            loaded = datasets.load_from_disk(location.path)
            if isinstance(loaded, datasets.DatasetDict):
                if location.split not in loaded:
                    raise DataError(
                        f"{location.path}: the saved dataset has no split '{location.split}'; it has {sorted(loaded)}."
                    )
                loaded = loaded[location.split]
            return loaded.to_iterable_dataset() if streaming else loaded
        return datasets.load_dataset(
            location.path, name=location.subset, split=location.split, revision=location.revision, streaming=streaming
        )
    except DataError:
        raise
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        where = "the hub" if not Path(location.path).exists() else "the folder"
        raise DataError(f"{location.path}: could not load split '{location.split}' from {where}: {first}") from None


def _dataset_records(location: Location, streaming: bool) -> Iterator[Record]:
    dataset = open_dataset(location, streaming)
    name = location.name
    if streaming:
        for number, row in enumerate(dataset, start=1):
            yield Record(row, f"{name} row {number}")
        return
    number = 0
    for batch in dataset.iter(batch_size=1024):
        columns = list(batch)
        for i in range(len(batch[columns[0]]) if columns else 0):
            number += 1
            yield Record({c: batch[c][i] for c in columns}, f"{name} row {number}")


# --------------------------------------------------------------------------- content fingerprint


def fingerprint(location: Location) -> str:
    """A hash of the split's content (a file's bytes; a dataset's own fingerprint, which the datasets
    library derives from its files): what the tokenization cache is keyed by."""
    if location.kind == "file":
        return file_hash(Path(location.path))
    dataset = open_dataset(location, False)
    return f"{location.kind}:{dataset._fingerprint}"


def file_hash(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
