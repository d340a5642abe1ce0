"""The existing tool's Python API: `LLMTrainingParams` and `AutoTrainProject`.

    from aitraining import AutoTrainProject, LLMTrainingParams

    params = LLMTrainingParams(model="meta-llama/Llama-3.2-1B", data_path="./data", project_name="fast-model",
                               trainer="sft", unsloth=True, peft=True, lora_r=16)
    job = AutoTrainProject(params=params, backend="local", process=True).create()
    job.output_dir, job.run["loss"]

The fields are the `aitraining llm` flags in snake_case (aitraining/compat/options.py declares them). They
become the same Hydra overrides as the flags, are validated on construction by composing them as
`python -m aitraining` does, and run through that same Hydra app. Importing this imports no torch.
"""

from __future__ import annotations

import codecs
import logging
import os
import subprocess
import sys
import warnings
from dataclasses import dataclass, field, fields, make_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from aitraining import record
from aitraining.compat import cli, options
from aitraining.errors import ConfigError, TrainingError, closest

if TYPE_CHECKING:
    from aitraining.config import Config


class _Params:
    """The existing tool's LLMTrainingParams: one field per option of aitraining/compat/options.py,
    with its default there (the existing tool's where it documents one, else aitraining's; None:
    aitraining's config decides). Checked on construction by composing the run's config."""

    def __init__(self, **params: Any) -> None:
        object.__setattr__(self, "_given", set())
        for f in fields(self):  # type: ignore[arg-type]
            object.__setattr__(self, f.name, f.default)
        for name, value in params.items():
            setattr(self, name, value)
        self.validate()

    def __setattr__(self, name: str, value: Any) -> None:
        option = options.OPTION.get(name)
        if option is None:
            names = [o.name for o in options.OPTIONS]
            raise options.ParamsError(
                f"LLMTrainingParams has no field '{name}'.{closest(name, names)} Fields: {', '.join(names)}."
            )
        if value is None and not option.nullable and option.default is None:
            checked = None  # left to aitraining's default
        else:
            checked = options.coerce(option, value, name)
        object.__setattr__(self, name, checked)
        self._given.add(name)
        if option.warning and checked in option.warn_values:
            warnings.warn(f"{name}: {option.warning}", UserWarning, stacklevel=3)

    def values(self) -> dict[str, Any]:
        """Option name -> value, as the CLI sees it: the existing tool's defaults, then what was set."""
        given = {n: getattr(self, n) for n in sorted(self._given)}
        unset = [n for n, v in given.items() if v is None and not options.OPTION[n].nullable]
        return {**options.existing_defaults(), **{n: v for n, v in given.items() if n not in unset}}

    def to_overrides(self, cwd: Optional[Path] = None) -> list[str]:
        """The Hydra overrides, the same as `aitraining llm` makes from the same flags."""
        return options.to_overrides(self.values(), cwd)

    def to_config(self) -> Config:
        """The composed, validated config (aitraining.config.Config), as the run will see it."""
        try:
            return cli.validate(self.to_overrides())
        except ConfigError as exc:
            raise options.explain(exc, self.values(), "field") from None

    def validate(self) -> None:
        """Compose and validate now; raises ParamsError (a ConfigError and ValueError) naming the field."""
        self.to_config()

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]


LLMTrainingParams = make_dataclass(
    "LLMTrainingParams",
    [(o.name, o.annotation, field(default=o.default, repr=o.environment is None)) for o in options.OPTIONS],
    bases=(_Params,),
    init=False,
)
LLMTrainingParams.__module__, LLMTrainingParams.__doc__ = __name__, _Params.__doc__


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
        run = record.read(self.output_dir)
        return run.to_dict() if run is not None else None

    @property
    def succeeded(self) -> bool:
        run = record.read(self.output_dir)
        return self.returncode == 0 and run is not None and run.status is record.Status.succeeded

    def __fspath__(self) -> str:
        return str(self.output_dir)


@dataclass
class AutoTrainProject:
    """The existing tool's AutoTrainProject: `create()` trains and returns a TrainingJob.

    process=True runs `python -m aitraining <overrides>` in a child process (its output is copied
    to sys.stdout); process=False runs the same Hydra app in this process. With distributed_backend
    and more than one process (num_processes, or the visible GPUs), the job runs under
    `accelerate launch` in child processes either way.
    """

    params: LLMTrainingParams
    backend: str = "local"
    process: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.params, LLMTrainingParams):
            raise options.ParamsError(f"params must be an LLMTrainingParams (got {type(self.params).__name__}).")
        if self.backend != "local":
            raise options.ParamsError(
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
            overrides.append(f"output_dir={options.hydra_value(str(output_dir))}")
        os.environ.update(options.environment(self.params.values()))  # token=: the run's HF_TOKEN, in no file
        launch = cli.launch_command(self.params.values(), overrides)  # distributed_backend: several processes
        if launch is not None:
            code = _run_child(launch, cwd)
        elif self.process:
            code = _run_child([sys.executable, "-m", "aitraining", *overrides], cwd)
        else:
            code = _run_here(overrides)
        job = TrainingJob(output_dir=output_dir, returncode=code, overrides=overrides)
        if code != 0:
            raise TrainingError(
                f"training failed (exit code {code}): {_last_error(output_dir) or 'see the output above'} "
                f"Output folder: {output_dir}"
            )
        return job


def _run_child(command: list[str], cwd: Path) -> int:
    """`python -m aitraining <overrides>` (or its launch), stdout and stderr copied to sys.stdout as they come."""
    child = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
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
