"""From overrides to a validated `Config`: the one way every entry point composes.

- the config folder shipped inside the package (aitraining/conf_files.py): the Hydra app, the
  existing tool's CLI and API, and the tests all compose from it; a wheel carries it.
- `register_configs`: the typed schemas in Hydra's ConfigStore (the whole config, and each trainer
  kind's schema under `schema/trainer/<kind>`, which conf/trainer/<kind>.yaml extends).
- `check_overrides`: command-line `key=value` mistakes (an unknown key, a value of the wrong type),
  every one of them, with the closest real key, before Hydra runs.
- `validate`: a composed DictConfig -> Config, every `__post_init__` problem collected.
- `compose(overrides)`: all of the above, as `python -m aitraining <overrides>` would.

No torch here.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Sequence
from enum import Enum
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from aitraining.conf_files import CONF_DIR, CONFIG_NAME
from aitraining.config import GROUP_SCHEMAS, Config
from aitraining.errors import ConfigError, Problem, closest, collecting
from aitraining.trainers.base import TrainerConfig
from aitraining.trainers.registry import TRAINERS, retired

SCHEMA_NAME = "aitraining_schema"
TRAINER_SCHEMA_GROUP = "schema/trainer"
# Groups that select options but have no schema of their own (they set keys of the others).
OVERLAY_GROUPS = ("experiment", "debug", "hparams_search")


def register_configs() -> None:
    """The schemas in Hydra's ConfigStore (conf/config.yaml lists the whole config's first), and the
    `launch_time` resolver of the default output folder (the same in every process of a launch)."""
    from hydra.core.config_store import ConfigStore

    from aitraining import dist

    OmegaConf.register_new_resolver("launch_time", dist.launch_time, use_cache=True, replace=True)
    store = ConfigStore.instance()
    store.store(name=SCHEMA_NAME, node=Config)
    for spec in TRAINERS.values():
        store.store(group=TRAINER_SCHEMA_GROUP, name=spec.kind.value, node=spec.schema)


# --------------------------------------------------------------------------- command-line checks


def _fields(schema: type) -> dict[str, Any]:
    hints = typing.get_type_hints(schema)
    return {f.name: hints[f.name] for f in dataclasses.fields(schema)}


def _group_fields(group: str) -> dict[str, Any]:
    """Keys of a group; for the trainer, of every kind (which kind has which is the schema's business)."""
    if group == "trainer":
        merged: dict[str, Any] = {}
        for spec in TRAINERS.values():
            for name, kind in _fields(spec.schema).items():
                # a key whose type differs between kinds (loss_type) is left to the composition to check
                merged[name] = kind if merged.get(name, kind) == kind else Any
        return merged
    return _fields(GROUP_SCHEMAS[group])


def _value_problem(key: str, kind: Any, value: str) -> Optional[Problem]:
    """A value of a plain type (int, float, bool, enum) that cannot be one, said with what is allowed."""
    text = value.strip()
    if text in ("null", "???") or text.startswith(("${", "[", "{", "'", '"')) or "(" in text:
        return None  # interpolations, lists, dicts, quoted strings and sweep syntax are Hydra's to parse
    origin = typing.get_origin(kind)
    if origin is typing.Union:
        options = [a for a in typing.get_args(kind) if a is not type(None)]
        kind = options[0] if len(options) == 1 else None
    try:
        if isinstance(kind, type) and issubclass(kind, Enum):
            if text not in kind.__members__:
                allowed = ", ".join(kind.__members__)
                return Problem(key, f"{key}={text}: not one of {allowed}.{closest(text, kind.__members__)}")
        elif kind is bool:
            if text.lower() not in ("true", "false"):
                return Problem(key, f"{key}={text}: expected true or false.")
        elif kind is int:
            int(text.replace("_", ""))
        elif kind is float:
            float(text)
    except ValueError:
        return Problem(key, f"{key}={text}: expected {'an integer' if kind is int else 'a number'}.")
    return None


def _value_problems(key: str, kind: Any, value: str, sweep: bool) -> list[Problem]:
    """The value's problems; in a sweep, each of its comma-separated values (every job's, before any runs)."""
    values = value.split(",") if sweep else [value]
    return [p for p in (_value_problem(key, kind, v) for v in values) if p is not None]


def override_problems(argv: Sequence[str]) -> list[Problem]:
    """Every misspelt key and mistyped plain value among `key=value` arguments (not group choices:
    Hydra lists a group's options itself)."""
    problems: list[Problem] = []
    sweep = bool({"-m", "--multirun"} & set(argv))
    top_level = {*_fields(Config), *OVERLAY_GROUPS}
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        raw_key, _, value = arg.partition("=")
        key = raw_key.lstrip("+~")
        if key.startswith("hydra") or "/" in key or "@" in key:
            continue
        parts = key.split(".")
        if len(parts) == 1:
            if parts[0] not in top_level:
                problems.append(Problem(key, f"unknown key '{key}'.{closest(key, top_level)} "
                                             f"Top-level keys: {', '.join(sorted(top_level))}."))  # fmt: skip
            elif parts[0] in ("seed", "overwrite") and not raw_key.startswith("~"):
                problems += _value_problems(key, _fields(Config)[parts[0]], value, sweep)
            elif parts[0] == "trainer":
                problems += [Problem("trainer", m) for v in value.split(",") if (m := retired(v.strip(), "trainer="))]
            continue
        if parts[0] not in GROUP_SCHEMAS:
            hint = f"{closest(parts[0], GROUP_SCHEMAS)} Groups: {', '.join(GROUP_SCHEMAS)}."
            problems.append(Problem(key, f"unknown key '{key}': '{parts[0]}' is not a config group.{hint}"))
            continue
        fields = _group_fields(parts[0])
        if parts[1] not in fields:
            problems.append(Problem(key, f"unknown key '{key}'.{closest(parts[1], fields)} "
                                         f"Keys of {parts[0]}: {', '.join(fields)}."))  # fmt: skip
        elif len(parts) == 2 and not raw_key.startswith("~"):
            problems += _value_problems(key, fields[parts[1]], value, sweep)
    return problems


def check_overrides(argv: Sequence[str]) -> None:
    """Raise one ConfigError naming every command-line mistake `override_problems` finds, and a key
    of one trainer kind set for another (the trainer option may come from an experiment, so that
    takes a composition, done only when such a key is set)."""
    problems = override_problems(argv)
    if problems:
        raise ConfigError(problems)
    base = set(_fields(TrainerConfig))
    own = [a.split("=", 1)[0].lstrip("+") for a in argv if a.lstrip("+").startswith("trainer.") and "=" in a]
    specific = {key for key in own if key.split(".")[1] not in base}
    if specific and not {"-m", "--multirun"} & set(argv):
        _check_composes([a for a in argv if not a.startswith("-")], specific)


def _check_composes(overrides: Sequence[str], keys: set[str]) -> None:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException

    register_configs()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            hydra_compose(CONFIG_NAME, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        error = _composition_error(exc)
        if error.key in keys:
            raise error from None
        # anything else (a --config-dir experiment this compose cannot see, ...) is Hydra's to report


# --------------------------------------------------------------------------- validation


def _composition_error(exc: Exception) -> ConfigError:
    """Hydra's or OmegaConf's composition error, as one ConfigError naming the key it is about."""
    cause = exc.__cause__ if isinstance(exc.__cause__, OmegaConfBaseException) else exc
    key = getattr(cause, "full_key", None) or None
    object_type = getattr(cause, "object_type", None)
    if key and key.startswith("trainer.") and isinstance(object_type, type):
        field = key.split(".", 1)[1]
        owners = [s.kind.value for s in TRAINERS.values() if field in _fields(s.schema)]
        this = [s.kind.value for s in TRAINERS.values() if s.schema is object_type]
        if owners and this and this[0] not in owners:
            return ConfigError(f"{key} applies to trainer={', '.join(owners)} only, not to trainer={this[0]}.", key=key)
    if cause is not exc and key and getattr(cause, "msg", None):  # OmegaConf's own words about one key
        return ConfigError(f"{key}: {str(cause.msg).splitlines()[0].rstrip('.')}.", key=key)
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    reason = str(getattr(cause, "msg", "") or "").strip()
    if cause is not exc and reason and reason not in str(exc):
        lines.append(reason.splitlines()[0] + ".")  # OmegaConf's why, e.g. the values an enum allows
    return ConfigError(" ".join(lines[:12]), key=key)


def validate(cfg: DictConfig) -> Config:
    """Validate a composed config: type conversion plus every `__post_init__` check, all reported."""
    try:
        with collecting():
            return OmegaConf.to_object(cfg)  # type: ignore[return-value]
    except ConfigError:
        raise
    except OmegaConfBaseException as exc:
        if isinstance(exc.__cause__, ConfigError):
            raise exc.__cause__ from None
        key = getattr(exc, "full_key", None)
        raise ConfigError(f"{key}: {exc.msg}" if key else str(exc), key=key or None) from None


def compose(overrides: Sequence[str] = ()) -> Config:
    """The validated config `python -m aitraining <overrides>` would run. Raises ConfigError."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException

    check_overrides(list(overrides))
    register_configs()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = hydra_compose(CONFIG_NAME, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        raise _composition_error(exc) from None
    return validate(cfg)
