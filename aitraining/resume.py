"""Resuming a run: which checkpoint, whether the config given may continue it, the command that does it.

`resume=true` continues the run in output_dir from its newest complete checkpoint, `resume=PATH`
from that checkpoint of it. The config given must be the run's: it is compared with the folder's
config.yaml, and any difference outside HARMLESS is refused, listing the keys. Each way a resume
cannot go on is one ConfigError naming `resume`. Plain Python, no torch.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from aitraining import checkpoints, record
from aitraining.checkpoints import Checkpoint
from aitraining.config import Config
from aitraining.data import Examples
from aitraining.errors import ConfigError
from aitraining.record import RunRecord, Status

# Keys that change what is logged, saved, evaluated or where, never a training step: a resume may
# change them. Every other key (model, data, trainer kind and hyperparameters, LoRA shape, seed,
# accelerator, quantization, ...) must be as the run had it.
HARMLESS = frozenset(
    {
        "output_dir",
        "overwrite",
        "resume",
        "project_name",
        "trainer.logging_steps",
        "trainer.save_steps",
        "trainer.save_total_limit",
        "trainer.eval_steps",
        "trainer.args.disable_tqdm",
        "trainer.args.dataloader_num_workers",
        # What happens after training, and where it is logged to:
        "trainer.samples",
        "trainer.sample_prompts",
        "trainer.sample_max_new_tokens",
        "logger.kind",
        "logger.project",
        "logger.run_name",
        "export.merge",
        "export.gguf",
        "export.push_to_hub",
        "export.private",
        "export.llama_cpp",
    }
)
CONFIG_FILE = "config.yaml"


@dataclass
class Plan:
    """A resume that may go on: the checkpoint and the run it continues."""

    checkpoint: Checkpoint
    previous: RunRecord


def _error(message: str) -> ConfigError:
    return ConfigError(message, key="resume")


def plan(cfg: Config, out_dir: Path) -> Plan:
    """The checkpoint `resume` names in the run folder `out_dir`, or one clear error why not."""
    how = "resume=true" if cfg.resume_from == "latest" else f"resume={cfg.resume_from}"
    previous = record.read(out_dir)
    if previous is None or not (out_dir / CONFIG_FILE).is_file():
        raise _error(
            f"{how}: output_dir={out_dir} is not a run folder (it has no run.json and config.yaml): "
            "set output_dir to the folder of the run to continue."
        )
    if previous.diverged:
        raise _error(
            f"{how}: the run in {out_dir} diverged ({previous.error}); its checkpoints are not resumed as good. "
            "Start a new run (another output_dir, or overwrite=true)."
        )
    if previous.status is Status.succeeded:
        raise _error(
            f"{how}: the run in {out_dir} already finished (succeeded at step {previous.steps}); nothing to resume."
        )
    if cfg.resume_from == "latest":
        found = checkpoints.newest(out_dir)
        if found is None:
            raise _error(
                f"{how}: {out_dir} holds no complete checkpoint (the run stopped at step {previous.steps or 0}, "
                f"before its first; trainer.save_steps={cfg.trainer.save_steps}). Start it again with overwrite=true."
            )
        return Plan(found, previous)
    given = Path(str(cfg.resume_from)).expanduser().absolute()
    found = checkpoints.at(given)
    if found is None:
        raise _error(f"{how}: no checkpoint folder there (a checkpoint is <run folder>/checkpoints/checkpoint-<step>).")
    if given.parent.resolve() != checkpoints.folder(out_dir).resolve():
        raise _error(
            f"{how} is not a checkpoint of the run in output_dir={out_dir}: set output_dir to the run folder "
            f"that holds it ({given.parent.parent})."
        )
    if not found.complete:
        raise _error(f"{how}: this checkpoint is incomplete (its save was cut short); choose a complete one.")
    return Plan(found, previous)


def fingerprint(examples: Examples) -> str:
    """The training data, hashed (file contents, datasets' fingerprints, how each source is read): what
    a checkpoint records of the data it was trained on."""
    return examples.fingerprint()


def check_checkpoint(plan_: Plan, cfg: Config, data: str) -> None:
    """A checkpoint resumes only on the base model and the training data it was trained on."""
    info = plan_.checkpoint.info
    if info.get("model") != cfg.model.name:
        raise _error(
            f"resume: {plan_.checkpoint.path} holds weights trained from model {info.get('model')}, not "
            f"model.name={cfg.model.name}: a checkpoint resumes only on its own base model."
        )
    if info.get("data", data) != data:
        raise _error(
            f"resume: the training data differs from the data {plan_.checkpoint.path} was trained on "
            f"(content hash {info['data']} then, {data} now; data.path={cfg.data.path}): a checkpoint resumes only "
            "on its own data (the same files, read with the same settings)."
        )


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, Mapping):
        flat: dict[str, Any] = {}
        for key, value in node.items():
            flat.update(_flat(value, f"{prefix}{key}."))
        return flat  # an empty mapping (trainer.args: {}) has no keys
    return {prefix[:-1]: node}


def changed_keys(saved: Mapping[str, Any], given: Mapping[str, Any]) -> list[str]:
    """`key (saved -> given)` for every key that differs and is not HARMLESS."""
    old, new = _flat(saved), _flat(given)
    missing = object()
    changes = []
    for key in sorted(old.keys() | new.keys()):
        if key in HARMLESS:
            continue
        a, b = old.get(key, missing), new.get(key, missing)
        if a != b:
            changes.append(f"{key} ({'absent' if a is missing else a} -> {'absent' if b is missing else b})")
    return changes


def check_config(out_dir: Path, resolved: Mapping[str, Any]) -> None:
    """The config given (resolved: accelerator as it will run) against the run's config.yaml."""
    from omegaconf import OmegaConf

    saved = OmegaConf.to_container(OmegaConf.load(out_dir / CONFIG_FILE), resolve=False)
    changes = changed_keys(saved, resolved)  # type: ignore[arg-type]
    if changes:
        raise _error(
            f"resume: the config differs from the run's ({out_dir / CONFIG_FILE}) in keys that change the run: "
            f"{', '.join(changes)}. Resume with the run's values, or start a new run in another output_dir."
        )


# --------------------------------------------------------------------------- the command


_PLAIN = re.compile(r"[\w./:@%+,-]+")


def _hydra_string(value: str) -> str:
    if _PLAIN.fullmatch(value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def command(overrides: Sequence[str], out_dir: Path, config_dir: Optional[str] = None) -> str:
    """The shell command that resumes the run in out_dir: the run's overrides, resume=true, output_dir."""
    own = {"resume", "overwrite", "output_dir"}
    kept = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") not in own]
    head = ["python", "-m", "aitraining", *(["--config-dir", config_dir] if config_dir else [])]
    return shlex.join([*head, *kept, "resume=true", f"output_dir={_hydra_string(str(out_dir))}"])
