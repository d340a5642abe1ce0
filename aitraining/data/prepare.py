"""The trainer's data made ready, source by source, in batches: never a list of the whole data.

Each trainer kind's `Preparer` (encode.py, preference.py, unpaired.py, prompts.py) turns a batch of
converted rows into the columns its TRL trainer takes (token ids with loss masks, rendered text). This
module drives it:

- non-streaming: each source is read, converted and prepared in one pass into an Arrow file that the
  `datasets` library memory-maps (`Dataset.from_file`). With `data.cache=true` the file stays in the
  cache folder, keyed by everything that changes it (the source's content hash, the tokenizer and its
  chat template, the template's masking, max_seq_length, the source's format and read settings, the
  preparer's own settings), so a rerun, every job of a sweep over other keys and a resume load it
  instead. Entries are written to a temporary folder and renamed into place: processes that prepare the
  same data at once never see half an entry. Then the sources are interleaved by weight
  (`datasets.interleave_datasets`), an evaluation set carved when asked, and the stats computed from
  the Arrow columns;
- streaming: the same per-batch work, lazily, inside a `datasets.IterableDataset` per source, interleaved
  by weight; nothing is counted ahead.

Columns whose names start with `_` are the preparer's own bookkeeping, dropped before the trainer.
"""

from __future__ import annotations

import atexit
import dataclasses
import hashlib
import itertools
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from aitraining import tiny
from aitraining.choices import DataFormat
from aitraining.data import Examples, Prepared, Source, holdout
from aitraining.data.read import file_hash
from aitraining.errors import DataError
from aitraining.record import SourceRecord

if TYPE_CHECKING:
    from aitraining.chat_templates import Template
    from aitraining.config import Config

log = logging.getLogger(__name__)

BATCH = 1000  # rows converted and prepared at a time
STREAM_BATCH = 64  # the same while streaming: a bad row stops training close to where it is reached
CACHE_VERSION = 1  # bump when what a preparer writes changes
DATA_FILE, META_FILE = "data.arrow", "meta.json"


class Preparer:
    """What one trainer kind makes of converted rows (subclassed by each kind's data module)."""

    name = "rows"

    def __init__(self, tokenizer, cfg: Config, template: Optional[Template]) -> None:
        self.tokenizer, self.cfg, self.template = tokenizer, cfg, template

    def features(self):
        """The output columns' datasets.Features (None: inferred from the first batch)."""
        return None

    def key(self) -> dict[str, Any]:
        """Its settings that change what it writes (the cache key adds data, tokenizer, template, length)."""
        return {}

    def batch(
        self, rows: list[dict[str, Any]], wheres: list[str], fmt: DataFormat
    ) -> tuple[dict[str, list], dict[str, int]]:
        """A batch of converted rows (of shape `fmt`) -> its output columns, and counts to add up over the source."""
        raise NotImplementedError

    def check_source(self, name: str, examples: int, counts: dict[str, int]) -> None:
        """After a whole source: an error when nothing usable is left (the kind's own words)."""
        if not examples:
            raise DataError(
                f"{name}: no example is left once the data is prepared for trainer={self.cfg.trainer.kind.value}."
            )

    def finish(self, train, valid, counts: dict[str, int]) -> tuple[Any, Any, dict[str, Any]]:
        """The assembled datasets (all sources mixed, evaluation set carved): checks, warnings, stats."""
        return train, valid, {}

    def finish_streaming(self, train, valid) -> tuple[Any, Any, dict[str, Any]]:
        """The same for streamed data: only what can be known without reading it."""
        return train, valid, {}


# --------------------------------------------------------------------------- the cache


def cache_folder(configured: Optional[str]) -> Path:
    """data.cache_dir, else $AITRAINING_CACHE/data (~/.cache/aitraining/data)."""
    return Path(configured).expanduser() if configured else tiny.cache_dir() / "data"


class Store:
    """Prepared sources on disk, one folder each (data.arrow + meta.json), written atomically."""

    def __init__(self, folder: Path, keyed: bool) -> None:
        self.folder, self.keyed = folder, keyed

    @classmethod
    def temporary(cls) -> Store:
        """data.cache=false: a folder of this process's own, removed when it ends."""
        folder = Path(tempfile.mkdtemp(prefix="aitraining-data-"))
        atexit.register(shutil.rmtree, folder, True)
        return cls(folder, keyed=False)

    def load(self, key: str):
        """(dataset, meta) of a whole entry, or None."""
        from datasets import Dataset

        entry = self.folder / key
        try:
            meta = json.loads((entry / META_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return Dataset.from_file(str(entry / DATA_FILE)), meta

    def save(self, key: str, write) -> tuple[Any, dict[str, Any]]:
        """Write an entry through `write(folder) -> meta` into a staging folder, then rename it into place
        (if another process got there first, its entry is used and this one discarded)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        staging = self.folder / f".tmp-{key}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        staging.mkdir()
        try:
            meta = write(staging)
            (staging / META_FILE).write_text(json.dumps(meta, indent=1, default=str), encoding="utf-8")
            try:
                staging.rename(self.folder / key)
            except OSError:  # a concurrent process renamed its entry first: same key, same content
                shutil.rmtree(staging, ignore_errors=True)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        loaded = self.load(key)
        assert loaded is not None
        return loaded

    def entry_bytes(self, key: str) -> int:
        return _bytes(self.folder / key)

    def total_bytes(self) -> int:
        return _bytes(self.folder)


def _bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def tokenizer_fingerprint(tokenizer) -> str:
    """A hash of everything of the tokenizer that changes token ids or rendered text."""
    digest = hashlib.blake2b(digest_size=16)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        digest.update(backend.to_str().encode())
    else:
        digest.update(json.dumps(tokenizer.get_vocab(), sort_keys=True).encode())
    extra = [type(tokenizer).__name__, tokenizer.chat_template, tokenizer.special_tokens_map,
             getattr(tokenizer, "add_bos_token", None), getattr(tokenizer, "add_eos_token", None)]  # fmt: skip
    digest.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _cache_key(source: Source, base: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    c = source.cfg
    what = {
        **base,
        "data": source.fingerprint(),
        "read": {
            "format": source.raw_format.value,
            "shape": source.format.value,
            "columns": c.columns,
            "text_column": c.text_column,
            "messages_column": c.messages_column,
            "tools": file_hash(Path(c.tools).expanduser())
            if c.tools and Path(c.tools).expanduser().is_file()
            else None,
            "use_sharegpt_mapping": c.use_sharegpt_mapping,
            "sharegpt_roles": c.sharegpt_roles,
            "max_samples": source.max_samples,
        },
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:32], what


# --------------------------------------------------------------------------- one source


def _batches(rows: Iterator[tuple[dict, str]], size: Optional[int] = None) -> Iterator[tuple[list[dict], list[str]]]:
    while chunk := list(itertools.islice(rows, size or BATCH)):
        yield [r for r, _ in chunk], [w for _, w in chunk]


@dataclasses.dataclass
class Part:
    """One source made ready: its dataset and what its pass counted."""

    source: Source
    dataset: Any
    counts: dict[str, int]
    cache: str  # "hit", "miss" or "off"
    key: Optional[str] = None


def _write(source: Source, preparer: Preparer, folder: Path) -> dict[str, Any]:
    from datasets.arrow_writer import ArrowWriter

    counts: Counter = Counter()
    writer = ArrowWriter(features=preparer.features(), path=str(folder / DATA_FILE))
    written = 0
    try:
        for rows, wheres in _batches(source.rows()):
            columns, batch_counts = preparer.batch(rows, wheres, source.format)
            counts.update(batch_counts)
            n = len(next(iter(columns.values()))) if columns else 0
            if n:
                writer.write_batch(columns)
                written += n
        preparer.check_source(source.name, written, dict(counts))
        writer.finalize()
    finally:
        writer.close()
    return {"source": source.name, "rows_read": source.rows_read, "examples": source.examples,
            "dropped": source.dropped, "prepared": written, "counts": dict(counts)}  # fmt: skip


def _materialize(source: Source, preparer: Preparer, store: Store, base: dict[str, Any]) -> Part:
    key, what = _cache_key(source, base) if store.keyed else (uuid.uuid4().hex, None)
    loaded = store.load(key) if store.keyed else None
    cache = "hit" if loaded is not None else ("miss" if store.keyed else "off")
    if loaded is None:
        loaded = store.save(key, lambda folder: {**_write(source, preparer, folder), "key": what})
    else:
        meta = loaded[1]
        source.rows_read, source.examples, source.dropped = meta["rows_read"], meta["examples"], meta["dropped"]
        if source.dropped:
            log.warning("Dropped %d of %d record(s) in %s with empty fields.", source.dropped, source.rows_read,
                        source.name)  # fmt: skip
    dataset, meta = loaded
    return Part(source, dataset, meta["counts"], cache, key if store.keyed else None)


def _stream(source: Source, preparer: Preparer):
    from datasets import IterableDataset

    def generate():
        for rows, wheres in _batches(source.rows(), STREAM_BATCH):
            columns, _ = preparer.batch(rows, wheres, source.format)
            columns = {k: v.to_pylist() if hasattr(v, "to_pylist") else v for k, v in columns.items()}
            names = list(columns)
            for i in range(len(columns[names[0]]) if names else 0):
                yield {name: columns[name][i] for name in names}

    return IterableDataset.from_generator(generate, features=preparer.features())


# --------------------------------------------------------------------------- all sources


def _mix(datasets_: list[Any], examples: Examples):
    from datasets import interleave_datasets

    if len(datasets_) == 1:
        return datasets_[0]
    weights = [s.weight for s in examples.sources]
    total = sum(weights)
    try:
        return interleave_datasets(datasets_, probabilities=[w / total for w in weights], seed=examples.seed,
                                   stopping_strategy=examples.mix_stopping.value)  # fmt: skip
    except ValueError as exc:  # features that do not line up
        raise DataError(
            f"data.mix: the sources do not prepare into the same columns, so they cannot be mixed: {exc}"
        ) from None


def _hidden(dataset) -> Any:
    if dataset is None:
        return None
    names = dataset.column_names or []
    hidden = [n for n in names if n.startswith("_")]
    return dataset.remove_columns(hidden) if hidden else dataset


def build(examples: Examples, tokenizer, cfg: Config, template: Optional[Template], preparer: Preparer) -> Prepared:
    """Every source made ready for the trainer by `preparer`, mixed by weight; the run's data stats."""
    started = time.time()
    if examples.streaming:
        train = _mix([_stream(s, preparer) for s in examples.sources], examples)
        valid = _concat([_stream(s, preparer) for s in examples.valid_sources])
        train, valid, stats = preparer.finish_streaming(train, valid)
        entries = [_entry(s, "train", None, None) for s in examples.sources]
        entries += [_entry(s, "valid", None, None) for s in examples.valid_sources]
        return Prepared(_hidden(train), _hidden(valid), {**stats, "streaming": True}, entries)

    store = Store(cache_folder(cfg.data.cache_dir), keyed=True) if cfg.data.cache else Store.temporary()
    base = {
        "version": CACHE_VERSION,
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "template": dataclasses.asdict(template) if template is not None else None,
        "max_seq_length": cfg.model.max_seq_length,
        "prepare": {"name": preparer.name, **preparer.key()},
    }
    parts = [_materialize(s, preparer, store, base) for s in examples.sources]
    valid_parts = [_materialize(s, preparer, store, base) for s in examples.valid_sources]
    marked = (
        [p.dataset.add_column("_source", [i] * len(p.dataset)) for i, p in enumerate(parts)]
        if len(parts) > 1
        else [parts[0].dataset]
    )
    train = _mix(marked, examples)
    valid = _concat([p.dataset for p in valid_parts])
    if examples.valid_size is not None:
        keep, held = holdout(len(train), examples.valid_size, examples.seed)
        train, valid = train.select(keep), train.select(held)
    used = _used(train, len(parts))
    counts: Counter = Counter()
    for part in parts:
        counts.update(part.counts)
    train, valid, stats = preparer.finish(train, valid, dict(counts))
    entries = [_entry(p.source, "train", p, used[i]) for i, p in enumerate(parts)]
    entries += [_entry(p.source, "valid", p, None) for p in valid_parts]
    stats["prepare_seconds"] = round(time.time() - started, 3)
    if cfg.data.cache:
        stats["cache"] = {"dir": str(store.folder), "hits": sum(p.cache == "hit" for p in parts + valid_parts),
                          "misses": sum(p.cache == "miss" for p in parts + valid_parts),
                          "entries_bytes": sum(store.entry_bytes(p.key) for p in parts + valid_parts if p.key),
                          "folder_bytes": store.total_bytes()}  # fmt: skip
        c = stats["cache"]
        log.info("Data cache: %d hit(s), %d miss(es); this run's data %.1f MB, the cache folder %s %.1f MB.",
                 c["hits"], c["misses"], c["entries_bytes"] / 1e6, c["dir"], c["folder_bytes"] / 1e6)  # fmt: skip
    else:
        stats["cache"] = None
    return Prepared(_hidden(train), _hidden(valid), stats, entries)


def _concat(parts: list[Any]):
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    from datasets import concatenate_datasets

    return concatenate_datasets(parts)


def _used(train, n_sources: int) -> list[int]:
    """How many rows of each source the (mixed) training set holds."""
    if n_sources == 1:
        return [len(train)]
    import numpy as np

    sources = train.select_columns(["_source"]).with_format("numpy")[:]["_source"]
    return np.bincount(sources, minlength=n_sources).tolist()


def _entry(source: Source, role: str, part: Optional[Part], used: Optional[int]) -> SourceRecord:
    """run.json's description of one source."""
    return SourceRecord(
        path=source.name,
        role=role,
        format=source.raw_format.value,
        weight=source.weight if role == "train" else None,
        rows_read=source.rows_read,
        examples=source.examples,
        rows_used=used,
        cache=part.cache if part is not None else None,
        cache_key=part.key if part is not None else None,
    )
