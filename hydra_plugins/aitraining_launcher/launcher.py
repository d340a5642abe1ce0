"""hydra/launcher=slurm and hydra/launcher=local: hydra-submitit-launcher's launchers whose jobs stop
cleanly on preemption, are requeued and resume (the logic: aitraining/launcher.py)."""

from __future__ import annotations

from hydra_plugins.hydra_submitit_launcher import submitit_launcher

from aitraining.launcher import Resuming


class SlurmLauncher(Resuming, submitit_launcher.SlurmLauncher):
    """One SLURM job per sweep job (conf/hydra/launcher/slurm.yaml)."""


class LocalLauncher(Resuming, submitit_launcher.LocalLauncher):
    """One local process per sweep job (conf/hydra/launcher/local.yaml)."""
