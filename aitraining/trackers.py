"""`logger=`: the run's experiment tracker, through transformers' own integrations (`report_to`).

transformers' callbacks (TensorBoardCallback, WandbCallback, MLflowCallback, TrackioCallback) send
the TRL arguments, the model config and the loss curves. What they do not know, each tracker's
record adds through the tracker's own client: the resolved aitraining config and the accelerator
decision as parameters, and the run folder's path (and, in a sweep, the sweep folder as the group).

Each tracker is an optional extra with a pinned version; `check` names the extra before any weights
load. Plain Python at import: the tracker's package is imported only by a run that uses it.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from aitraining.choices import LoggerKind
from aitraining.errors import ConfigError
from aitraining.record import TrackerRecord

if TYPE_CHECKING:
    from aitraining.config import Config
    from aitraining.resolver import Decision

log = logging.getLogger(__name__)


@dataclass
class Tracking:
    """One run's tracker: what it is told, and where it writes."""

    kind: LoggerKind
    project: str
    name: str
    group: Optional[str]
    """The sweep folder, for a sweep's jobs (W&B group, MLflow tag); None for a single run."""
    run_dir: Path
    params: dict[str, Any] = field(default_factory=dict)
    """The resolved config and the accelerator decision, flattened (`trainer.learning_rate`, ...)."""

    @property
    def tracker(self) -> Tracker:
        return TRACKERS[self.kind]

    def as_record(self) -> TrackerRecord:
        return TrackerRecord(self.kind.value, self.project, self.name, self.group, self.tracker.where(self))

    def finish(self) -> None:
        self.tracker.finish()


def _nothing(*args: Any) -> None:
    return None


@dataclass(frozen=True)
class Tracker:
    """One tracker: everything that differs between them."""

    kind: LoggerKind
    report_to: str
    """transformers' integration name (TrainingArguments.report_to)."""
    package: str
    """The module it needs (probed with importlib, not imported, before weights load)."""
    requirement: str
    """The pinned package (pyproject's extra `kind` installs it)."""
    start: Callable[[Tracking], None] = _nothing
    """Before training: open the tracker's run with the parameters (W&B, MLflow)."""
    on_train_begin: Callable[[Tracking, Any], None] = _nothing
    """After transformers' callback opened its run (given the trainer): add the parameters."""
    finish: Callable[[], None] = _nothing
    """After training and the final evaluation: close the run."""
    where: Callable[[Tracking], Optional[str]] = lambda tracking: None
    """Where it writes, for run.json and the log."""


# --------------------------------------------------------------------------- tensorboard


def _tensorboard_callback(trainer):
    from transformers.integrations import TensorBoardCallback

    return next(c for c in trainer.callback_handler.callbacks if isinstance(c, TensorBoardCallback))


def _tensorboard_dir(tracking: Tracking) -> str:
    return str(tracking.run_dir / "tensorboard")


def _tensorboard_params(tracking: Tracking, trainer) -> None:
    """The parameters as TensorBoard's hparams (its HPARAMS tab) and as text, beside the loss curves."""
    from torch.utils.tensorboard.summary import hparams

    writer = _tensorboard_callback(trainer).tb_writer
    if writer is None:
        return
    values = {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in tracking.params.items()}
    for summary in hparams(values, {"train/loss": float("nan")}):
        writer.file_writer.add_summary(summary)
    writer.add_text("aitraining/config", "\n".join(f"    {k}: {v}" for k, v in tracking.params.items()))
    writer.add_text("aitraining/run_dir", str(tracking.run_dir))
    writer.flush()


# --------------------------------------------------------------------------- wandb, mlflow, trackio


def _wandb_start(tracking: Tracking) -> None:
    """wandb.init with the parameters, the run folder and the sweep group; transformers' WandbCallback
    then logs into this run. WANDB_MODE=offline writes RUN_DIR/wandb/offline-run-* (wandb sync)."""
    import wandb

    wandb.init(
        project=tracking.project,
        name=tracking.name,
        group=tracking.group,
        dir=str(tracking.run_dir),
        config=tracking.params,
        job_type="train",
        notes=f"aitraining run folder: {tracking.run_dir}",
    )


def _wandb_finish() -> None:
    import wandb

    wandb.finish()


def _mlflow_start(tracking: Tracking) -> None:
    """An MLflow run in the experiment `project`, with the parameters and the folders as tags;
    transformers' MLflowCallback logs into the active run."""
    import mlflow

    mlflow.set_experiment(tracking.project)
    tags = {
        "aitraining.run_dir": str(tracking.run_dir),
        **({"aitraining.sweep": tracking.group} if tracking.group else {}),
    }
    mlflow.start_run(run_name=tracking.name, tags=tags)
    mlflow.log_params({k: str(v)[:500] for k, v in tracking.params.items()})


def _mlflow_finish() -> None:
    import mlflow

    mlflow.end_run()


def _trackio_params(tracking: Tracking, trainer) -> None:
    import trackio

    trackio.config.update({**tracking.params, "aitraining.group": tracking.group}, allow_val_change=True)


TRACKERS: dict[LoggerKind, Tracker] = {
    LoggerKind.tensorboard: Tracker(
        LoggerKind.tensorboard, "tensorboard", "tensorboard", "tensorboard==2.21.0",
        on_train_begin=_tensorboard_params, where=_tensorboard_dir,
    ),
    LoggerKind.wandb: Tracker(
        LoggerKind.wandb, "wandb", "wandb", "wandb==0.31.0",
        start=_wandb_start, finish=_wandb_finish, where=lambda t: str(t.run_dir / "wandb"),
    ),
    LoggerKind.mlflow: Tracker(
        LoggerKind.mlflow, "mlflow", "mlflow", "mlflow-skinny==3.17.2", start=_mlflow_start, finish=_mlflow_finish
    ),
    LoggerKind.trackio: Tracker(
        LoggerKind.trackio, "trackio", "trackio", "trackio==0.43.0", on_train_begin=_trackio_params
    ),
}  # fmt: skip


# --------------------------------------------------------------------------- for run.py and build.py


def check(cfg: Config) -> None:
    """The tracker's package is installed, or one error naming the extra (before weights load)."""
    tracker = TRACKERS.get(cfg.logger.kind)
    if tracker is None or importlib.util.find_spec(tracker.package) is not None:
        return
    raise ConfigError(
        f"logger={tracker.kind.value} needs the '{tracker.package}' package, which is not installed: "
        f"pip install 'aitraining[{tracker.kind.value}]' (or pip install {tracker.requirement}), "
        "or choose logger=none.",
        key="logger",
    )


def run_name(cfg: Config, out_dir: Path) -> str:
    return cfg.logger.run_name or out_dir.name


def trl_args(cfg: Config, out_dir: Path) -> dict[str, Any]:
    """TrainingArguments keys: transformers' integration for the tracker, the run's name and project."""
    tracker = TRACKERS.get(cfg.logger.kind)
    if tracker is None:
        return {"report_to": "none"}
    return {"report_to": [tracker.report_to], "run_name": run_name(cfg, out_dir),
            "project": cfg.logger.project or cfg.project_name}  # fmt: skip


def parameters(cfg: Config, decision: Decision, out_dir: Path) -> dict[str, Any]:
    """The resolved config and the accelerator decision, flattened: what the tracker records."""
    from omegaconf import OmegaConf

    def flat(prefix: str, value: Any) -> dict[str, Any]:
        if isinstance(value, dict):
            return {k: v for key, item in value.items() for k, v in flat(f"{prefix}{key}.", item).items()}
        return {prefix.rstrip("."): value if not isinstance(value, list) else ",".join(map(str, value))}

    config = OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True, enum_to_str=True)
    accelerator = {f"accelerator.{k}": v for k, v in decision.as_dict().items()}
    return {**flat("", config), **accelerator, "run_dir": str(out_dir)}


def attach(trainer, cfg: Config, decision: Decision, out_dir: Path, sweep_dir: Optional[Path]) -> Optional[Tracking]:
    """Open the tracker's run for this trainer (None when logger=none). Call `finish()` after training."""
    tracker = TRACKERS.get(cfg.logger.kind)
    if tracker is None:
        return None
    tracking = Tracking(cfg.logger.kind, cfg.logger.project or cfg.project_name, run_name(cfg, out_dir),
                        str(sweep_dir) if sweep_dir else None, out_dir, parameters(cfg, decision, out_dir))  # fmt: skip
    if tracker.kind is LoggerKind.tensorboard:
        _tensorboard_callback(trainer).logging_dir = _tensorboard_dir(tracking)  # not output_dir/runs
    try:
        tracker.start(tracking)
    except Exception as exc:  # not logged in, no server: one line, before training starts
        first = (str(exc).strip().splitlines() or [""])[0]
        hint = " WANDB_MODE=offline runs without an account." if tracker.kind is LoggerKind.wandb else ""
        message = f"logger={tracker.kind.value}: the tracker could not start ({type(exc).__name__}: {first}).{hint}"
        raise ConfigError(message, key="logger") from None
    if tracker.on_train_begin is not _nothing:
        trainer.add_callback(_params_callback(tracking, trainer))
    log.info("Tracker: %s, project %s, run %s%s.", tracker.kind.value, tracking.project, tracking.name,
             f" (writes {tracker.where(tracking)})" if tracker.where(tracking) else "")  # fmt: skip
    return tracking


def _params_callback(tracking: Tracking, trainer):
    """A callback that runs after transformers' own one opened the tracker's run (callbacks run in
    order; this one is added last). Built here: importing transformers must wait for Unsloth."""
    from transformers import TrainerCallback

    class ParamsCallback(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                tracking.tracker.on_train_begin(tracking, trainer)

    return ParamsCallback()
