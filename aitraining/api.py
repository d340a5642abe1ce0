"""The existing tool's Python API: `LLMTrainingParams` and `AutoTrainProject`.

    from aitraining import AutoTrainProject, LLMTrainingParams

    params = LLMTrainingParams(model="meta-llama/Llama-3.2-1B", data_path="./data", project_name="fast-model",
                               trainer="sft", unsloth=True, peft=True, lora_r=16)
    job = AutoTrainProject(params=params, backend="local", process=True).create()
    job.output_dir, job.run["loss"]

The fields are the `aitraining llm` flags in snake_case (aitraining/cli.py holds the table). They
become the same Hydra overrides as the flags, are validated on construction by composing them as
`python -m aitraining` does, and run through that same Hydra app. Importing this imports no torch.
"""

from __future__ import annotations

import codecs
import json
import logging
import os
import subprocess
import sys
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Union

from aitraining import cli
from aitraining.errors import ConfigError, TrainingError, closest

if TYPE_CHECKING:
    from aitraining.config import Config


@dataclass(init=False)
class LLMTrainingParams:
    """The existing tool's LLMTrainingParams. A field left out keeps its default, shown here: the
    existing tool's where it documents one, else aitraining's (None: aitraining's config decides)."""

    model: Optional[str] = None
    """None: aitraining's default model (conf/model/llama3_2_1b.yaml)."""
    data_path: str = "data"
    project_name: Optional[str] = None
    """Writes to ./<project_name>; None: a fresh outputs/aitraining/<time> folder."""
    overwrite: bool = False
    trainer: str = "default"
    unsloth: bool = False
    peft: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: Optional[Union[str, list[str]]] = None
    """None: the seven projections, narrowed to those the model has."""
    quantization: Optional[str] = None
    use_sharegpt_mapping: bool = False
    epochs: float = 1.0
    batch_size: int = 2
    lr: float = 3e-5
    gradient_accumulation: int = 4
    block_size: int = -1
    model_max_length: Optional[int] = None
    """None: the model config's max_seq_length (2048 for every shipped model)."""
    max_steps: int = -1
    train_split: str = "train"
    valid_split: Optional[str] = None
    text_column: str = "text"
    chat_template: Optional[str] = None
    seed: int = 42
    max_samples: Optional[int] = None
    """None: every training example."""
    logging_steps: int = -1
    """-1: aitraining's (10)."""
    disable_gradient_checkpointing: bool = False
    warmup_ratio: Optional[float] = None
    """None: TRL's default (no warmup); the existing tool's default was 0.1."""
    weight_decay: Optional[float] = None
    max_grad_norm: Optional[float] = None
    optimizer: Optional[str] = None
    scheduler: Optional[str] = None
    """None (these four): TRL's defaults (0.0, 1.0, AdamW, linear), as the existing tool's."""
    auto_convert_dataset: bool = False
    """Changes nothing: aitraining always detects the data format and converts it."""
    merge_adapter: bool = False
    """Ignored, with a warning: the adapter is never merged."""

    def __init__(self, **params: Any) -> None:
        object.__setattr__(self, "_given", set())
        for f in fields(self):
            object.__setattr__(self, f.name, f.default)
        for name, value in params.items():
            setattr(self, name, value)
        self.validate()

    def __setattr__(self, name: str, value: Any) -> None:
        option = cli.OPTION.get(name)
        if option is None:
            names = [f.name for f in fields(self)]
            raise cli.ParamsError(
                f"LLMTrainingParams has no field '{name}'.{closest(name, names)} Fields: {', '.join(names)}."
            )
        if value is None and not option.nullable and getattr(type(self), name) is None:
            checked = None  # left to aitraining's default
        else:
            checked = cli.coerce(option, value, name)
        object.__setattr__(self, name, checked)
        self._given.add(name)
        if option.warning and checked:
            warnings.warn(f"{name}: {option.warning}", UserWarning, stacklevel=3)

    def values(self) -> dict[str, Any]:
        """Option name -> value, as the CLI sees it: the existing tool's defaults, then what was set."""
        given = {n: getattr(self, n) for n in sorted(self._given)}
        unset = [n for n, v in given.items() if v is None and not cli.OPTION[n].nullable]
        return {**cli.EXISTING_DEFAULTS, **{n: v for n, v in given.items() if n not in unset}}

    def to_overrides(self, cwd: Optional[Path] = None) -> list[str]:
        """The Hydra overrides, the same as `aitraining llm` makes from the same flags."""
        return cli.to_overrides(self.values(), cwd)

    def to_config(self) -> Config:
        """The composed, validated config (aitraining.config.Config), as the run will see it."""
        try:
            return cli.validate(self.to_overrides())
        except ConfigError as exc:
            raise cli.explain(exc, self.values(), "field") from None

    def validate(self) -> None:
        """Compose and validate now; raises ParamsError (a ConfigError and ValueError) with one line."""
        self.to_config()

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class TrainingJob:
    """What AutoTrainProject.create() returns: where the run wrote, and how it ended."""

    output_dir: Path
    returncode: int
    overrides: list[str] = field(default_factory=list)
    """The Hydra overrides it ran with: `python -m aitraining <overrides>` runs it again."""

    @property
    def run(self) -> Optional[dict[str, Any]]:
        """run.json: status, losses, accelerator used and why, versions, ... (None if not written)."""
        path = self.output_dir / "run.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None

    @property
    def succeeded(self) -> bool:
        run = self.run
        return self.returncode == 0 and run is not None and run.get("status") == "succeeded"

    def __fspath__(self) -> str:
        return str(self.output_dir)


@dataclass
class AutoTrainProject:
    """The existing tool's AutoTrainProject: `create()` trains and returns a TrainingJob.

    process=True runs `python -m aitraining <overrides>` in a child process (its output is copied
    to sys.stdout); process=False runs the same Hydra app in this process.
    """

    params: LLMTrainingParams
    backend: str = "local"
    process: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.params, LLMTrainingParams):
            raise cli.ParamsError(f"params must be an LLMTrainingParams (got {type(self.params).__name__}).")
        if self.backend != "local":
            raise cli.ParamsError(
                f"backend={self.backend!r} is not available: aitraining trains on this machine only (backend='local')."
            )

    def create(self) -> TrainingJob:
        """Train; returns the job when it succeeded, raises TrainingError (or ParamsError) when not."""
        cwd = Path.cwd()
        config = self.params.to_config()
        overrides = self.params.to_overrides(cwd)
        name = self.params.project_name
        if name:
            output_dir = (cwd / name).absolute()
            cli.check_project_folder(
                overrides,
                output_dir,
                f"project_name={name!r}",
                "Choose another project_name, or set overwrite=True to write into it.",
            )
        else:  # pin the fresh outputs/<project>/<time> folder, so that the job knows where it is
            output_dir = (cwd / config.output_dir).absolute()
            overrides.append(f"output_dir={cli.hydra_value(str(output_dir))}")
        code = _run_child(overrides, cwd) if self.process else _run_here(overrides)
        job = TrainingJob(output_dir=output_dir, returncode=code, overrides=overrides)
        if code != 0:
            raise TrainingError(
                f"training failed (exit code {code}): {_last_error(output_dir) or 'see the output above'} "
                f"Output folder: {output_dir}"
            )
        return job


def _run_child(overrides: list[str], cwd: Path) -> int:
    """`python -m aitraining <overrides>`, its stdout and stderr copied to sys.stdout as they come."""
    child = subprocess.Popen(
        [sys.executable, "-m", "aitraining", *overrides], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    assert child.stdout is not None
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    while chunk := os.read(child.stdout.fileno(), 65536):
        sys.stdout.write(decoder.decode(chunk))
        sys.stdout.flush()
    child.stdout.close()
    return child.wait()


def _run_here(overrides: list[str]) -> int:
    """The Hydra app in this process; the caller's argv, logging and Hydra state are put back after."""
    from hydra.core.global_hydra import GlobalHydra

    root = logging.getLogger()
    handlers, level, argv = root.handlers[:], root.level, sys.argv[:]
    try:
        cli.run_hydra_app(overrides)
        return 0
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = argv
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)
        GlobalHydra.instance().clear()


def _last_error(output_dir: Path) -> Optional[str]:
    """The last ERROR line of the run's train.log, if it wrote one."""
    log = output_dir / "train.log"
    if not log.exists():
        return None
    errors = [line.split(" - ", 1)[-1] for line in log.read_text(errors="replace").splitlines() if "[ERROR]" in line]
    return errors[-1] if errors else None
