"""`logger=`: an experiment tracker for the run (aitraining/trackers.py), through transformers' own callbacks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from aitraining.choices import LoggerKind


@dataclass
class LoggerConfig:
    """`logger=`: where the parameters, the accelerator decision and the loss curves go."""

    kind: LoggerKind = LoggerKind.none
    """none, tensorboard (RUN_DIR/tensorboard), wandb, mlflow or trackio; each an optional extra
    (pip install 'aitraining[wandb]'), checked before weights load."""
    project: Optional[str] = None
    """The tracker's project (W&B project, MLflow experiment, Trackio project); None: project_name."""
    run_name: Optional[str] = None
    """The run's name in the tracker; None: the run folder's name (a sweep job: sweep folder/job number)."""
