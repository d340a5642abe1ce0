"""The Hydra application: compose -> validate -> run, with errors as one clear message.

`python -m aitraining [group=option] [key=value] [-m] [--cfg job]`
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import sys
import traceback
import typing
from pathlib import Path
from typing import Any, Optional

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from aitraining import report, sweep
from aitraining.config import GROUP_SCHEMAS, Config, register_configs, to_config
from aitraining.errors import AitrainingError, ConfigError, closest

log = logging.getLogger("aitraining")

# conf/ beside the package (an editable install or a checkout); absolute, so that any working
# directory works.
CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def _fields(schema: type) -> dict[str, Any]:
    hints = typing.get_type_hints(schema)
    return {f.name: hints[f.name] for f in dataclasses.fields(schema)}


def check_override_keys(argv: list[str]) -> None:
    """Reject a misspelt `key=value` on the command line with the closest real key.

    Hydra would refuse it too (the schema is strict), but without saying what is allowed.
    """
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        key = arg.split("=", 1)[0].lstrip("+~")
        if key.startswith("hydra") or "/" in key or "@" in key:
            continue
        parts = key.split(".")
        if len(parts) == 1:
            allowed = {*_fields(Config), "experiment", "debug", "hparams_search"}
            if parts[0] not in allowed:
                raise ConfigError(
                    f"unknown key '{key}'.{closest(key, allowed)} Top-level keys: {', '.join(sorted(allowed))}."
                )
            continue
        schema: Any = GROUP_SCHEMAS.get(parts[0])
        if schema is None:
            raise ConfigError(
                f"unknown key '{key}': '{parts[0]}' is not a config group.{closest(parts[0], GROUP_SCHEMAS)} "
                f"Groups: {', '.join(GROUP_SCHEMAS)}."
            )
        fields = _fields(schema)
        if parts[1] not in fields:
            raise ConfigError(
                f"unknown key '{key}'.{closest(parts[1], fields)} Keys of {parts[0]}: {', '.join(fields)}."
            )


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
    return {"file": str(path), **report.git_state(path.parent)}


def _context() -> dict[str, Any]:
    hc = HydraConfig.get()
    return {
        "experiment": hc.runtime.choices.get("experiment"),
        "experiment_git": experiment_git(experiment_file(hc)),
        "overrides": list(hc.overrides.task),
        "cwd": hc.runtime.cwd,
        "multirun": hc.mode == RunMode.MULTIRUN,
        "output_dir": hc.runtime.output_dir,
    }


def report_error(exc: AitrainingError) -> None:
    """Print the one-line error and exit non-zero (a traceback only with HYDRA_FULL_ERROR=1)."""
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
    message = str(exc) if isinstance(exc, AitrainingError) else f"{type(exc).__name__}: {exc}"
    full = os.environ.get("HYDRA_FULL_ERROR") == "1"
    log.error("Sweep job %s failed: %s", Path(context["output_dir"]).name, message, exc_info=exc if full else None)
    path = Path(context["output_dir"]) / "run.json"
    try:
        existing = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except ValueError:
        existing = {}
    record = {
        **(existing if isinstance(existing, dict) else {}),
        "status": "failed",
        "error": (existing.get("error") if isinstance(existing, dict) else None) or message,
        "output_dir": context["output_dir"],
        "experiment": context["experiment"],
        "experiment_git": context["experiment_git"],
        "overrides": context["overrides"],
    }
    if not isinstance(exc, AitrainingError):
        record["traceback"] = "".join(traceback.format_exception(exc))
    path.parent.mkdir(parents=True, exist_ok=True)
    report.write_json(path, record)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def hydra_app(cfg: DictConfig) -> Optional[float]:
    """One run; in a sweep, one job. Returns the objective a sweeper minimises (see RunResult)."""
    context = _context()
    try:
        config = to_config(cfg)
        out_dir = Path(context["output_dir"]) if context["multirun"] else Path(config.output_dir)
        from aitraining.run import run  # after validation: keeps `--cfg`, errors and --help fast

        return run(config, out_dir.resolve(), context).objective
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

    conf = Path(CONF_DIR)
    entries = OmegaConf.load(conf / "config.yaml").defaults
    defaults = {k: v for entry in entries if isinstance(entry, DictConfig) for k, v in entry.items()}
    lines = []
    for group in [*GROUP_SCHEMAS, "experiment", "debug", "hparams_search"]:
        options = sorted(p.stem for p in (conf / group).glob("*.yaml"))
        first = [o for o in options if o == defaults.get(group)]
        lines.append(f"  {group:15} {', '.join(first + [o for o in options if o not in first])}")
    sys.stdout.write(HELP.format(groups="\n".join(lines)))


def main() -> None:
    if {"--help", "-h"} & set(sys.argv[1:]):
        print_help()
        return
    try:
        check_override_keys(sys.argv[1:])
    except ConfigError as exc:
        sys.stderr.write(f"ERROR: {exc}\n")
        sys.exit(2)
    register_configs()
    try:
        hydra_app()
    except SystemExit:  # Hydra reported an error; a sweep it cut short still gets its summary
        sweep.report_unfinished()
        raise
    failed = sweep.failed_jobs()
    if failed:  # a sweep ran every job, but not all succeeded (see its summary.md)
        sys.exit(1)
