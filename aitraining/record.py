"""The run record (`run.json`) and the run folder it describes.

`RunRecord` is the one typed description of a run: the runner writes it when the run starts, fails
or ends, the Hydra app when a sweep job fails before the run could, always through `write`; the sweep
summary, the Python API and the scripts read it with `read`. Plain Python: no torch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Optional, TypeVar

from aitraining.errors import ConfigError

RUN_FILE = "run.json"
LOCK_FILE = ".aitraining.lock"  # held (flock) by the process working in the folder
# Files a run folder may already hold before this run writes anything: Hydra's log of this run, the lock.
OWN_FILES = {"train.log", LOCK_FILE}
PACKAGES = (
    "aitraining",
    "torch",
    "transformers",
    "trl",
    "peft",
    "datasets",
    "accelerate",
    "bitsandbytes",
    "hydra-core",
    "omegaconf",
    "unsloth",
    "unsloth_zoo",
)


class Status(Enum):
    running = "running"  # still training, or stopped without a word (killed)
    succeeded = "succeeded"
    failed = "failed"
    interrupted = "interrupted"  # stopped by a signal after saving a checkpoint; `resume_command` continues it


@dataclass
class SegmentRecord:
    """One process's part of a run: the first, and one more per resume."""

    started: Optional[float] = None  # epoch seconds
    ended: Optional[float] = None  # None: still running, or killed (see `status`)
    wall_seconds: Optional[float] = None
    start_step: int = 0  # the step it started from (the checkpoint's; 0 for the first)
    end_step: Optional[int] = None  # the last step with a complete checkpoint or the end
    resumed_from: Optional[str] = None  # the checkpoint it continued from
    status: Optional[str] = None  # succeeded, failed, interrupted (by SIGTERM, ...); None: running or killed


@dataclass
class KeptRecord:
    """Which weights the run ended with, and why (trainer.load_best_at_end)."""

    step: Optional[int] = None
    checkpoint: Optional[str] = None
    eval_loss: Optional[float] = None
    reason: Optional[str] = None


@dataclass
class ModelRecord:
    name: Optional[str] = None
    path: Optional[str] = None  # what from_pretrained loaded (a tiny model's cache folder)
    type: Optional[str] = None  # config.json model_type
    dtype: Optional[str] = None


@dataclass
class AcceleratorRecord:
    requested: Optional[str] = None
    used: Optional[str] = None
    reason: Optional[str] = None  # why `used` differs from `requested`
    unsloth_version: Optional[str] = None

    @property
    def label(self) -> Optional[str]:
        """`unsloth`, or `none (requested unsloth)` when it fell back."""
        if self.used is None:
            return None
        return self.used if self.used == self.requested else f"{self.used} (requested {self.requested})"


@dataclass
class LossRecord:
    train_first: Optional[float] = None
    train_last: Optional[float] = None
    eval: Optional[float] = None


@dataclass
class ParameterRecord:
    trainable: int = 0
    total: int = 0


@dataclass
class SourceRecord:
    """One data source of a run (run.json's data.sources): a file, a split of a dataset, a mixture's part."""

    path: str
    role: str = "train"  # or "valid"
    format: Optional[str] = None  # as read: detected or given
    weight: Optional[float] = None  # its sampling weight in a mixture (train sources)
    rows_read: Optional[int] = None  # records read (None: streamed, not counted ahead)
    examples: Optional[int] = None  # records converted (empty ones dropped)
    rows_used: Optional[int] = None  # rows of it in the training set (after mixing and any evaluation carve)
    cache: Optional[str] = None  # hit, miss or off (None: streamed)
    cache_key: Optional[str] = None


@dataclass
class TrackerRecord:
    """The run's experiment tracker (`logger=`)."""

    kind: Optional[str] = None
    project: Optional[str] = None
    name: Optional[str] = None
    group: Optional[str] = None  # a sweep's jobs: the sweep folder
    where: Optional[str] = None  # the folder it writes (tensorboard/, wandb/), where it has one


@dataclass
class ExportRecord:
    """What `export=` or `aitraining export` wrote from the run (paths relative to the run folder)."""

    merged: Optional[str] = None  # merged/: the adapter merged into the base
    merged_into: Optional[str] = (
        None  # what the adapter was merged into (a quantized run: the base reloaded unquantized)
    )
    gguf: dict[str, str] = field(default_factory=dict)  # file type -> gguf/<file>
    gguf_converter: Optional[str] = None  # llama.cpp's converter that wrote them (its folder)
    hub_repo: Optional[str] = None  # the Hub repo pushed to
    hub_url: Optional[str] = None  # the commit's URL
    hub_folder: Optional[str] = None  # what was uploaded (merged/, adapter/ or model/)
    error: Optional[str] = None  # the export step that failed, and why (the training itself succeeded)


@dataclass
class RunRecord:
    """run.json. A running or failed run fills only what it knew."""

    status: Status = Status.running
    output_dir: Optional[str] = None
    started: Optional[float] = None  # epoch seconds
    error: Optional[str] = None
    traceback: Optional[str] = None  # a sweep job's unexpected exception
    weights_dir: Optional[str] = None
    experiment: Optional[str] = None
    experiment_git: Optional[dict[str, Any]] = None  # the experiment file, its repository's commit and dirty flag
    overrides: list[str] = field(default_factory=list)
    model: Optional[ModelRecord] = None
    trainer: Optional[str] = None
    peft: Optional[str] = None
    lora: Optional[dict[str, Any]] = None  # r, alpha, targets, DoRA, rsLoRA, init, modules_to_save, how it was saved
    quant: Optional[str] = None
    accelerator: Optional[AcceleratorRecord] = None
    # format, sources (SourceRecord each), train/valid examples, streaming, cache (dir, hits, misses, sizes),
    # prepare_seconds; the rest depends on the trainer
    data: dict[str, Any] = field(default_factory=dict)
    parameters: Optional[ParameterRecord] = None
    loss: LossRecord = field(default_factory=LossRecord)
    results: dict[str, Any] = field(default_factory=dict)  # what the trainer kind reports beyond the loss
    steps: Optional[int] = None
    tokens: Optional[int] = None
    tokens_per_second: Optional[float] = None
    train_seconds: Optional[float] = None
    peak_gpu_memory_gib: Optional[float] = None
    wall_seconds: Optional[float] = None
    seconds_to_first_step: Optional[float] = None
    first_step_at: Optional[float] = None
    seed: Optional[int] = None
    world_size: int = 1  # processes that trained together (torchrun / accelerate launch / SLURM tasks)
    global_batch_size: Optional[int] = None  # examples per optimizer step: batch_size x accumulation x world_size
    launcher: Optional[str] = None  # python, torchrun, accelerate or slurm (aitraining/dist.py)
    dist: Optional[str] = None  # the dist= strategy: none, ddp, fsdp, zero2, zero3
    checkpoint: Optional[str] = None  # the newest complete checkpoint (what resume=true continues from)
    resume_command: Optional[str] = None  # the command that continues an interrupted run
    segments: list[SegmentRecord] = field(default_factory=list)  # one per process that trained this run
    kept: Optional[KeptRecord] = None
    diverged: bool = False  # the loss or weights became NaN/inf: no checkpoint of this run is resumed
    git: Optional[dict[str, Any]] = None  # commit and dirty flag of the directory the run started from
    versions: dict[str, Optional[str]] = field(default_factory=dict)
    prompt_style: Optional[str] = None  # how a prompt is rendered for this model (choices.PromptStyle)
    samples: Optional[str] = None  # samples.md: the model's and the base model's answers to a few prompts
    logger: Optional[TrackerRecord] = None
    export: ExportRecord = field(default_factory=ExportRecord)

    @property
    def objective(self) -> Optional[float]:
        """What a sweeper minimises: eval loss when there is an eval set, else the last train loss."""
        return self.loss.eval if self.loss.eval is not None else self.loss.train_last

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


T = TypeVar("T")


def _build(cls: type[T], data: Any) -> Optional[T]:
    """A record dataclass from its JSON, keys it does not know ignored (older or newer writers)."""
    if not isinstance(data, dict):
        return None
    hints = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    for name, value in data.items():
        if name not in hints:
            continue
        if (cls, name) == (RunRecord, "segments") and isinstance(value, list):
            value = [segment for segment in (_build(SegmentRecord, v) for v in value) if segment is not None]
        nested = _NESTED.get((cls, name))
        if nested is not None:
            value = _build(nested, value)
            if value is None:
                continue  # the field's default
        values[name] = value
    if cls is RunRecord:
        try:
            values["status"] = Status(values.get("status", "running"))
        except ValueError:
            values["status"] = Status.failed
    return cls(**values)


_NESTED: dict[tuple[type, str], type] = {
    (RunRecord, "model"): ModelRecord,
    (RunRecord, "accelerator"): AcceleratorRecord,
    (RunRecord, "loss"): LossRecord,
    (RunRecord, "parameters"): ParameterRecord,
    (RunRecord, "kept"): KeptRecord,
    (RunRecord, "export"): ExportRecord,
    (RunRecord, "logger"): TrackerRecord,
}


def write(out_dir: Path, record: RunRecord) -> Path:
    """Write run.json (the only writer), atomically: a reader never sees half a file."""
    path = out_dir / RUN_FILE
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(path, record.to_dict())
    return path


def read(out_dir: Path) -> Optional[RunRecord]:
    """The folder's run.json, or None when it has none (or an unreadable one)."""
    try:
        data = json.loads((out_dir / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return _build(RunRecord, data)


def write_json(path: Path, data: Any) -> None:
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    staging.replace(path)


# --------------------------------------------------------------------------- the run folder


def check_output_dir(out_dir: Path, overwrite: bool) -> None:
    """Refuse a folder that already holds another run's files, unless told to overwrite; for a run
    that did not finish, say how to resume it."""
    if not out_dir.exists():
        return
    existing = sorted(p.name for p in out_dir.iterdir() if p.name not in OWN_FILES)
    if existing and not overwrite:
        previous = read(out_dir)
        unfinished = previous is not None and previous.status in (Status.running, Status.interrupted)
        hint = ""
        if unfinished and previous.checkpoint and previous.resume_command and not previous.diverged:
            hint = (
                f" That run did not finish ({previous.status.value}; last checkpoint at step {previous.steps}): "
                f"resume it with `{previous.resume_command}`."
            )
        raise ConfigError(
            f"output_dir={out_dir} already holds a run ({', '.join(existing[:5])}).{hint} "
            "Choose another output_dir, or set overwrite=true to write into it.",
            key="output_dir",
            fix={"overwrite": "true"},
        )


@contextlib.contextmanager
def holding(out_dir: Path) -> Iterator[None]:
    """Hold the run folder's lock while a run works in it: a second process (a resume, an overwrite)
    is refused while the first still runs. The lock goes with the process, however it ends."""
    import fcntl

    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / LOCK_FILE, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            raise ConfigError(
                f"output_dir={out_dir} is in use by another aitraining process ({handle.read().strip() or 'pid ?'}); "
                "wait for it to end, or choose another output_dir.",
                key="output_dir",
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def remove_if_empty(folder: Path) -> None:
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def git_state(directory: Path) -> dict[str, Any]:
    """Commit and dirty flag of the git repository holding `directory` (None outside git)."""
    import subprocess

    def git(*args: str) -> Optional[str]:
        try:
            done = subprocess.run(
                ["git", "-C", str(directory), *args], capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"directory": str(directory), "commit": None, "dirty": None}
    return {"directory": str(directory), "commit": commit, "dirty": bool(git("status", "--porcelain"))}


def package_versions() -> dict[str, Optional[str]]:
    import platform
    from importlib import metadata

    versions: dict[str, Optional[str]] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


# --------------------------------------------------------------------------- the end summary


def _fmt(value: Optional[float], spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


def _results(results: dict[str, Any]) -> str:
    """`eval_accuracy 0.7500; rewards {answer_match: 0.2500}`: the numbers of a run's results, one line."""

    def show(value: Any) -> str:
        if isinstance(value, float):
            return _fmt(value)
        if isinstance(value, dict):
            return "{" + ", ".join(f"{k}: {show(v)}" for k, v in value.items()) + "}"
        return str(value)

    return "; ".join(f"{k} {show(v)}" for k, v in results.items() if v is not None and not isinstance(v, list))


def source_path(source: Any) -> str:
    """A data source's path: a SourceRecord (a run just finished), its JSON (read back), or a plain path."""
    if isinstance(source, SourceRecord):
        return source.path
    return source["path"] if isinstance(source, dict) else str(source)


def _count(value: Optional[int]) -> str:
    return "streamed" if value is None else f"{value:,}"


def summary(run: RunRecord) -> str:
    """A one-screen summary of a finished run."""
    assert run.model is not None and run.accelerator is not None and run.parameters is not None
    accel = run.accelerator
    accel_line = (
        accel.used if accel.requested == accel.used else f"{accel.used} (requested {accel.requested}: {accel.reason})"
    )
    params, loss = run.parameters, run.loss
    lines = [
        f"model        {run.model.name} ({run.model.type}, {run.model.dtype}, quant {run.quant})",
        f"training     {run.trainer} with {run.peft}; {params.trainable:,} of {params.total:,} "
        f"parameters trainable ({100 * params.trainable / max(params.total, 1):.2f}%)",
        f"accelerator  {accel_line}",
        f"data         {_count(run.data.get('train_examples'))} examples ({run.data['format']}) from "
        f"{', '.join(source_path(s) for s in run.data['sources'])}",
        f"processes    {run.world_size} ({run.launcher}, dist={run.dist}); global batch {run.global_batch_size}",
        f"loss         {_fmt(loss.train_first)} -> {_fmt(loss.train_last)} over {run.steps} steps"
        + (f" (eval {_fmt(loss.eval)})" if loss.eval is not None else ""),
        *([f"results      {_results(run.results)}"] if run.results else []),
        f"speed        {_fmt(run.tokens_per_second, ',.0f')} tokens/s; {run.wall_seconds:.1f} s wall"
        + (f"; peak GPU memory {run.peak_gpu_memory_gib:.2f} GiB" if run.peak_gpu_memory_gib else ""),
        f"output       {run.output_dir}",
    ]
    rule = "-" * min(max(len(line) for line in lines), 100)
    return "\n".join([rule, f"aitraining: {run.status.value}", rule, *lines, rule])
