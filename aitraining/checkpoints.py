"""A run's checkpoints: `<output_dir>/checkpoints/checkpoint-<step>`, in the HF Trainer's own format
(weights or adapter, optimizer, scheduler, RNG states, trainer state with the data position).

Complete or not used: transformers 5.17 writes a checkpoint in place, file after file, so a kill
during a save leaves a folder with some of them. aitraining marks a checkpoint complete once the
Trainer has written all of it (`mark_complete`: every file flushed to disk, then MARKER written
atomically), and only marked checkpoints are resumed from, counted or kept. Plain Python, no torch.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

log = logging.getLogger("aitraining")

FOLDER = "checkpoints"
PREFIX = "checkpoint-"  # transformers' PREFIX_CHECKPOINT_DIR
MARKER = "aitraining_checkpoint.json"


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    step: int

    @property
    def info(self) -> dict[str, Any]:
        """What aitraining wrote in the marker (step, model, data hash, trainer); {} when incomplete."""
        try:
            data = json.loads((self.path / MARKER).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) and data.get("step") == self.step else {}

    @property
    def complete(self) -> bool:
        return bool(self.info)


def folder(out_dir: Path) -> Path:
    return out_dir / FOLDER


def at(path: Path) -> Optional[Checkpoint]:
    """The checkpoint in `path` (a folder named checkpoint-<step>), complete or not; None otherwise."""
    name = path.name
    if not name.startswith(PREFIX) or not name[len(PREFIX) :].isdigit() or not path.is_dir():
        return None
    return Checkpoint(path, int(name[len(PREFIX) :]))


def every(out_dir: Path) -> list[Checkpoint]:
    """All checkpoint folders of a run, complete or not, by step."""
    base = folder(out_dir)
    found = [at(p) for p in base.iterdir()] if base.is_dir() else []
    return sorted((c for c in found if c is not None), key=lambda c: c.step)


def complete(out_dir: Path) -> list[Checkpoint]:
    return [c for c in every(out_dir) if c.complete]


def newest(out_dir: Path) -> Optional[Checkpoint]:
    done = complete(out_dir)
    return done[-1] if done else None


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def mark_complete(checkpoint: Checkpoint, info: dict[str, Any]) -> None:
    """Flush every file of the checkpoint to disk, then write the marker atomically (and flush it)."""
    for path in sorted(checkpoint.path.rglob("*")):
        if path.is_file():
            _fsync(path)
    staging = checkpoint.path / f".{MARKER}.tmp"
    staging.write_text(json.dumps({**info, "step": checkpoint.step}, indent=2) + "\n", encoding="utf-8")
    _fsync(staging)
    staging.replace(checkpoint.path / MARKER)
    _fsync(checkpoint.path)


def remove(checkpoints: Iterable[Checkpoint], why: str) -> None:
    for checkpoint in checkpoints:
        log.info("Removing %s (%s).", checkpoint.path, why)
        shutil.rmtree(checkpoint.path, ignore_errors=True)


def rotate(out_dir: Path, keep: int, protect: Optional[str] = None) -> None:
    """Keep the newest `keep` complete checkpoints (and `protect`, the best one); a new checkpoint is
    marked complete before an older one goes, so a complete one always remains."""
    done = complete(out_dir)
    spare = [c for c in done[:-keep] if protect is None or c.path.resolve() != Path(protect).resolve()]
    remove(spare, f"trainer.save_total_limit={keep}")


def remove_incomplete(out_dir: Path) -> None:
    """Before a resume: folders a kill left half-written."""
    remove([c for c in every(out_dir) if not c.complete], "incomplete: the save was cut short")


def remove_after(out_dir: Path, step: int) -> None:
    """Before resuming from an earlier checkpoint: the later ones belong to the abandoned continuation."""
    remove([c for c in every(out_dir) if c.step > step], f"later than the checkpoint resumed from (step {step})")
