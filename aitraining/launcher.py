"""Sweep jobs that survive preemption: hydra-submitit-launcher's launchers, requeued jobs resuming.

On a SLURM preemption or time limit submitit sends the job USR2 (`signal_delay_s` before the limit)
and its handler at once calls the launcher's `checkpoint()`, requeues the job and exits: mid-step,
saving nothing. With these launchers the signal asks the run to stop cleanly instead
(aitraining.interrupt: the current optimizer step finishes, a checkpoint of it is saved, run.json
says interrupted); once the run has stopped, submitit's own handler runs (checkpoint(), requeue,
exit). A job that starts in a folder holding its own unfinished run (requeued by submitit or by
SLURM itself) resumes it with `resume=true`, or starts it over when no checkpoint was saved yet.

Hydra instantiates launchers only from the `hydra_plugins` package: the classes conf/hydra/launcher/
slurm.yaml and local.yaml name (`_target_`) are hydra_plugins/aitraining_launcher/launcher.py's,
made of `Resuming` and submitit's own.
"""

from __future__ import annotations

import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, setup_globals
from hydra_plugins.hydra_submitit_launcher import submitit_launcher
from omegaconf import open_dict

# Hydra imports every plugin module at start-up (its plugin scan), `--cfg job` and `--help` included:
# aitraining's own modules are imported only when a job runs.


def continuing(job_dir: Path) -> list[str]:
    """Overrides for a job starting in `job_dir`: resume its unfinished run from the newest complete
    checkpoint, start it over when it has none; nothing for a fresh or finished folder."""
    from aitraining import checkpoints, record
    from aitraining.record import Status

    run = record.read(job_dir)
    if run is None or run.status is Status.succeeded or run.diverged:
        return []
    return ["resume=true"] if checkpoints.newest(job_dir) else ["overwrite=true"]


class Resuming(submitit_launcher.BaseSubmititLauncher):
    """What aitraining adds to a submitit launcher: the job's folder decides resume, and submitit's
    preemption signal stops the run cleanly before submitit requeues the job."""

    def _job_dir(self, sweep_overrides: list[str], job_num: int) -> Path:
        """The job's folder, as Hydra's run_job will make it (hydra.sweep.dir / hydra.sweep.subdir)."""
        import submitit

        assert self.hydra_context is not None and self.config is not None
        config = self.hydra_context.config_loader.load_sweep_config(self.config, sweep_overrides)
        with open_dict(config.hydra.job) as job:
            job.id = submitit.JobEnvironment().job_id
            job.num = job_num
        HydraConfig.instance().set_config(config)
        return Path(str(config.hydra.sweep.dir)) / str(config.hydra.sweep.subdir)

    def __call__(
        self,
        sweep_overrides: list[str],
        job_dir_key: str,
        job_num: int,
        job_id: str,
        singleton_state: dict[type, Singleton],
    ) -> JobReturn:
        import submitit

        from aitraining import interrupt, record
        from aitraining.record import Status

        Singleton.set_state(singleton_state)
        setup_globals()
        own = ("resume=", "overwrite=")
        job_dir = self._job_dir(list(sweep_overrides), job_num)
        extra = continuing(job_dir)
        overrides: Sequence[str] = [o for o in sweep_overrides if not (extra and o.startswith(own))] + extra

        preempt = submitit.JobEnvironment._usr_sig()
        submitit_handler = signal.getsignal(preempt)
        asked: list[int] = []

        def stop_cleanly(signum: int, frame: Any) -> None:
            asked.append(signum)
            interrupt.request(signum, requeue=True)

        signal.signal(preempt, stop_cleanly)
        try:
            result = super().__call__(list(overrides), job_dir_key, job_num, job_id, singleton_state)
        finally:
            signal.signal(preempt, submitit_handler)
        run = record.read(job_dir)
        if asked and callable(submitit_handler) and (run is None or run.status is Status.interrupted):
            submitit_handler(asked[0], None)  # checkpoint() -> requeue -> exit (submitit's)
        return result
