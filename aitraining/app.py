"""The Hydra application: compose -> validate -> run, with errors as clear messages.

`python -m aitraining [group=option] [key=value] [-m] [--cfg job]`
"""

from __future__ import annotations

import logging
import math
import os
import sys
import traceback
from pathlib import Path
from typing import Any, Optional

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from aitraining import compose, dist
from aitraining.conf_files import CONF_DIR, CONFIG_NAME, group_options
from aitraining.errors import AitrainingError, ConfigError
from aitraining.interrupt import Interrupted

log = logging.getLogger("aitraining")


def experiment_file(hc: Any) -> Optional[Path]:
    """The YAML file Hydra took `experiment=NAME` from: the first config directory in the search path
    that holds experiment/NAME.yaml (a --config-dir or hydra.searchpath entry comes before conf/)."""
    name = hc.runtime.choices.get("experiment")
    if not name:
        return None
    for source in hc.runtime.config_sources:
        if source.schema == "file":
            candidate = Path(source.path) / "experiment" / f"{name}.yaml"
            if candidate.is_file():
                return candidate.resolve()
    return None  # e.g. an experiment from a package or the ConfigStore


def experiment_git(path: Optional[Path]) -> Optional[dict[str, Any]]:
    """The experiment file and the commit and dirty flag of the git repository holding it
    (commit and dirty are None outside git); None when no experiment was selected."""
    if path is None:
        return None
    from aitraining.record import git_state

    return {"file": str(path), **git_state(path.parent)}


def _context() -> dict[str, Any]:
    hc = HydraConfig.get()
    return {
        "experiment": hc.runtime.choices.get("experiment"),
        "experiment_git": experiment_git(experiment_file(hc)),
        "overrides": list(hc.overrides.task),
        "cwd": hc.runtime.cwd,
        "multirun": hc.mode == RunMode.MULTIRUN,
        "output_dir": hc.runtime.output_dir,
        "config_dir": next(  # --config-dir, for the command that resumes the run
            (s.path for s in hc.runtime.config_sources if s.provider == "command-line" and s.schema == "file"), None
        ),
    }


def report_error(exc: AitrainingError) -> None:
    """Print the error and exit non-zero (a traceback only with HYDRA_FULL_ERROR=1)."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        raise exc
    log.error("%s", exc)
    sys.exit(2)


def record_job_failure(exc: Exception, context: dict[str, Any]) -> None:
    """A sweep job failed: log one line, record the error in the job's run.json, and let the sweep go on.

    Hydra's launchers catch an exception from a job, but the basic sweeper re-raises it once the batch
    ends (before the sweep-end callback), and sys.exit ends the sweep at once; so a sweep job returns
    normally instead. The sweep-end callback reads run.json and the app exits non-zero.
    """
    from aitraining import record

    if not dist.is_main():
        return  # the main process records it (dist.everywhere / on_main hand it the message)
    message = str(exc) if isinstance(exc, AitrainingError) else f"{type(exc).__name__}: {exc}"
    full = os.environ.get("HYDRA_FULL_ERROR") == "1"
    out_dir = Path(context["output_dir"])
    log.error("Sweep job %s failed: %s", out_dir.name, message, exc_info=exc if full else None)
    run = record.read(out_dir) or record.RunRecord()
    run.status = record.Status.failed
    run.error = run.error or message
    run.output_dir = str(out_dir)
    run.experiment, run.experiment_git = context["experiment"], context["experiment_git"]
    run.overrides = context["overrides"]
    if not isinstance(exc, AitrainingError):
        run.traceback = "".join(traceback.format_exception(exc))
    record.write(out_dir, run)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=CONFIG_NAME)
def hydra_app(cfg: DictConfig) -> Optional[float]:
    """One run; in a sweep, one job. Returns the objective a sweeper minimises (RunRecord.objective)."""
    context = _context()
    dist.start()  # SLURM tasks join the process group here (torchrun / accelerate launch did in main())
    dist.quiet_replicas()  # only the main process logs, prints and writes
    try:
        config = compose.validate(cfg)
        out_dir = Path(context["output_dir"]) if context["multirun"] else Path(config.output_dir)
        from aitraining.run import run  # after validation: keeps `--cfg`, errors and --help fast

        return run(config, out_dir.resolve(), context).objective
    except Interrupted as exc:  # run.json says interrupted and how to resume
        log.warning("%s", exc)
        if exc.requeue:
            return None  # a launcher's stop (aitraining/launcher.py): it requeues the job, which resumes
        sys.exit(exc.exit_code)  # 128 + the signal's number; in a sweep, the sweep stops here too
    except Exception as exc:
        if context["multirun"]:
            record_job_failure(exc, context)  # the sweep goes on; main() exits non-zero at its end
            # The worst objective: a search (Optuna) steers away from it and goes on, where None would
            # count as a sweeper failure and a search whose trials all failed would end in a traceback.
            return math.inf
        if isinstance(exc, AitrainingError):
            report_error(exc)
            return None
        raise


HELP = """\
aitraining: fine-tune an LLM from composed config groups.

usage: python -m aitraining [group=option ...] [key=value ...] [-m] [--cfg job] [--hydra-help]

  python -m aitraining experiment=quickstart                      the offline tiny quick start
  python -m aitraining model=qwen2_5_0_5b data=custom data.path=./my.jsonl accel=unsloth quant=int4
  python -m aitraining -m experiment=quickstart trainer.learning_rate=1e-4,3e-4    a sweep
  python -m aitraining model=gemma2_2b --cfg job                  print the composed config, run nothing

Config groups (conf/; default first):
{groups}

Keys of each group: python -m aitraining --cfg job; README.md explains them.
Hydra's own flags (multirun, --config-dir, ...): python -m aitraining --hydra-help
"""


def print_help() -> None:
    """The app's --help, from the conf/ folders (Hydra's own --help composes every plugin group, ~1 s)."""
    from omegaconf import OmegaConf

    entries = OmegaConf.load(CONF_DIR / f"{CONFIG_NAME}.yaml").defaults
    defaults = {k: v for entry in entries if isinstance(entry, DictConfig) for k, v in entry.items()}
    lines = []
    for group in [*compose.GROUP_SCHEMAS, *compose.OVERLAY_GROUPS]:
        options = group_options(group)
        first = [o for o in options if o == defaults.get(group)]
        lines.append(f"  {group:15} {', '.join(first + [o for o in options if o not in first])}")
    sys.stdout.write(HELP.format(groups="\n".join(lines)))


def main() -> None:
    argv = sys.argv[1:]
    if {"--help", "-h"} & set(argv):
        print_help()
        return
    try:
        compose.check_overrides(argv)
    except ConfigError as exc:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        if dist.world().is_main:  # every process of a launch finds the same mistake: say it once
            sys.stderr.write(f"ERROR: {exc}\n")
        sys.exit(2)
    dist.start()  # several processes (torchrun, accelerate launch): one process group, one launch time
    compose.register_configs()
    try:
        hydra_app()
    except SystemExit:  # Hydra reported an error; a sweep it cut short still gets its summary
        if _sweep_module():
            _sweep_module().report_unfinished()
        raise
    if _sweep_module() and _sweep_module().failed_jobs():  # a sweep ran every job, not all succeeded (summary.md)
        sys.exit(1)


def _sweep_module():
    """aitraining.sweep if a sweep ran in this process (Hydra imported its end-of-sweep callback), else None."""
    return sys.modules.get("aitraining.sweep")
