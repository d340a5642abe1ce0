"""`aitraining llm --train ...`: the existing tool's command line, as Hydra overrides.

Each flag (declared once in options.py) becomes one or more `key=value` overrides, anything after
`--` is passed on as it is, and the run goes through the same Hydra app as `python -m aitraining`
(aitraining/app.py): compose -> validate -> resolve -> run. The overrides are composed and validated
here first (aitraining.compose), so that a mistake is reported in terms of the flag that caused it.

Importing this module imports argparse and nothing heavy: `aitraining --help` answers at once.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from aitraining.compat.options import (
    OPTION,
    OPTIONS,
    Option,
    ParamsError,
    coerce,
    environment,
    existing_defaults,
    explain,
    hydra_value,
    shown,
    to_overrides,
)
from aitraining.errors import ConfigError, closest

if TYPE_CHECKING:
    from aitraining.config import Config


# --------------------------------------------------------------------------- compose and validate


def validate(overrides: Sequence[str]) -> Config:
    """Compose `overrides` exactly as `python -m aitraining` does, and validate them (no torch)."""
    from aitraining.compose import compose

    return compose(overrides)


def last_value(overrides: Sequence[str], key: str) -> Optional[str]:
    """The value the last `key=...` (or `+key=`, `++key=`) in `overrides` gives; Hydra's last one wins."""
    found = None
    for override in overrides:
        name, sep, value = override.lstrip("+").partition("=")
        if sep and name == key:
            found = value
    return found


def check_project_folder(overrides: Sequence[str], folder: Optional[Path], what: str, fix: str) -> None:
    """Refuse a non-empty project folder (./NAME) before anything runs, in the words the user used.

    The runner refuses a folder that holds a run too (record.check_output_dir); this refuses one
    holding anything else as well, as `--project-name` names a folder the user may already use.
    """
    if folder is None or last_value(overrides, "overwrite") == "true" or last_value(overrides, "resume") == "true":
        return  # overwrite it, or resume the run in it (the runner checks that it is one)
    if last_value(overrides, "output_dir") != hydra_value(str(folder)):
        return  # output_dir=... after `--` chose another folder: the runner checks that one
    if folder.exists() and not folder.is_dir():
        raise ParamsError(f"{what}: {folder} exists and is not a folder.")
    if folder.is_dir():
        from aitraining.record import OWN_FILES

        existing = sorted(p.name for p in folder.iterdir() if p.name not in OWN_FILES)
        if existing:
            shown = ", ".join(existing[:5]) + (", ..." if len(existing) > 5 else "")
            raise ParamsError(f"{what}: {folder} is not empty ({shown}). {fix}")


# --------------------------------------------------------------------------- the command line


class UsageError(Exception):
    """A command-line mistake argparse found."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


@dataclass
class Request:
    """What `aitraining llm ...` asked for."""

    values: dict[str, Any] = field(default_factory=dict)
    """Option name -> checked value: the existing tool's defaults, then --config FILE, then flags."""
    passthrough: list[str] = field(default_factory=list)
    """Everything after `--`: Hydra overrides (and flags), passed on unchanged, last."""
    print_config: bool = False


def _argument_type(option: Option) -> Callable[[str], Any]:
    """argparse's `type=`: the same check (and message) as --config keys and LLMTrainingParams fields."""

    def convert(text: str) -> Any:
        try:
            return coerce(option, text, option.flag)
        except ParamsError as exc:  # argparse puts "argument --flag: " in front
            raise argparse.ArgumentTypeError(str(exc).removeprefix(f"{option.flag}: ")) from None

    convert.__name__ = option.type.__name__
    return convert


def build_parser() -> _Parser:
    parser = _Parser(
        prog="aitraining",
        description="Fine-tune LLMs. Also: python -m aitraining [group=option] [key=value] (Hydra).",
        allow_abbrev=False,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    llm = commands.add_parser(
        "llm",
        help="fine-tune an LLM: aitraining llm --train --model ... --data-path ... (the existing tool's flags)",
        description="The existing tool's `llm --train` flags, translated into Hydra overrides and run as "
        "`python -m aitraining` runs them. Anything after `--` is passed on as Hydra overrides, e.g. "
        "`-- trainer.args.warmup_steps=10`.",
        allow_abbrev=False,
        argument_default=argparse.SUPPRESS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Defaults that are the existing tool's, not aitraining's: "
        + ", ".join(shown(OPTION[name], value, "flag") for name, value in existing_defaults().items())
        + ";\nothers are aitraining's (see README).",
    )
    llm.add_argument("--train", action="store_true", help="train (the only action)")
    llm.add_argument("--config", metavar="FILE.yaml", help="a YAML of these options (flags win over it)")
    llm.add_argument("--print-config", action="store_true", help="print the composed config and exit")
    for option in OPTIONS:
        keys = ", ".join(option.keys) or "nothing"
        kwargs: dict[str, Any] = {"help": f"{option.help} [{keys}]", "dest": option.name}
        if option.type is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = _argument_type(option)
            kwargs["metavar"] = option.metavar or option.name.upper()
            if option.choices is not None:
                kwargs["metavar"] = "{" + ",".join(option.choices()) + "}"
        llm.add_argument(option.flag, **kwargs)
    return parser


def _normalise(arg: str) -> str:
    """`--model_max_length=8` -> `--model-max-length=8`: the existing tool took both spellings."""
    if not arg.startswith("--"):
        return arg
    name, sep, rest = arg.partition("=")
    return name.replace("_", "-") + sep + rest


def _all_flags() -> list[str]:
    flags = ["--train", "--config", "--print-config", "--help"]
    for option in OPTIONS:
        flags.append(option.flag)
        if option.type is bool:
            flags.append("--no-" + option.flag[2:])
    return flags


def read_config_file(path: str) -> dict[str, Any]:
    """--config FILE.yaml: the same keys as the flags (snake_case or dashes), checked the same way."""
    import yaml

    file = Path(path)
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ParamsError(f"--config {path}: cannot read it ({exc.strerror}).") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ParamsError(f"--config {path}{where}: not valid YAML ({getattr(exc, 'problem', exc)}).") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ParamsError(f"--config {path}: expected a mapping of options, e.g. `model: NAME` (got {data!r}).")
    values: dict[str, Any] = {}
    for raw_key, value in data.items():
        key = str(raw_key).replace("-", "_")
        if key in ("train", "print_config"):
            continue
        if key not in OPTION:
            raise ParamsError(
                f"--config {path}: unknown key '{raw_key}'.{closest(key, OPTION)} Keys: {', '.join(OPTION)}."
            )
        values[key] = coerce(OPTION[key], value, f"--config {path}: {key}")
    return values


def parse(argv: Sequence[str]) -> Optional[Request]:
    """The request in `argv` (after `aitraining`); None when there is nothing to run (help)."""
    args = list(argv)
    passthrough: list[str] = []
    if "--" in args:
        cut = args.index("--")
        args, passthrough = args[:cut], args[cut + 1 :]
    args = [_normalise(a) for a in args]
    parser = build_parser()
    if not args:
        parser.print_help()
        return None
    namespace, unknown = parser.parse_known_args(args)
    given = vars(namespace)
    if given.pop("command", None) != "llm":
        raise UsageError("a command is required: aitraining llm --train ...")
    for token in unknown:
        if token.startswith("-"):
            flag = token.split("=")[0]
            raise UsageError(f"unknown flag {flag}.{closest(flag, _all_flags())}")
        raise UsageError(
            f"unexpected argument '{token}'. Hydra overrides go after `--`: aitraining llm --train ... -- {token}"
        )
    train = given.pop("train", False)
    print_config = given.pop("print_config", False)
    if not (train or print_config):
        raise UsageError("nothing to do: add --train (or --print-config to see the config)")
    config_file = given.pop("config", None)
    from_file = read_config_file(config_file) if config_file else {}
    values = {**existing_defaults(), **from_file, **given}
    return Request(values=values, passthrough=passthrough, print_config=print_config)


def launch_command(values: dict[str, Any], arguments: Sequence[str]) -> Optional[list[str]]:
    """With --distributed-backend, what the existing tool did: run the job under `accelerate launch`
    with one process per visible GPU (or --num-processes); None for a single process, or when this
    already is one process of a launch."""
    if values.get("distributed_backend") is None or "WORLD_SIZE" in os.environ:
        return None
    processes = values.get("num_processes") or _visible_gpus()
    if processes <= 1:
        return None
    # --multi_gpu: accelerate's multi-process launch (each process uses gloo when there is no GPU).
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "1"]
    port = ["--main_process_port", str(_free_port())]  # not accelerate's fixed 29500: two runs may share a machine
    return [*launch, *port, "--num_processes", str(processes), "-m", "aitraining", *arguments]


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _visible_gpus() -> int:
    import torch

    return torch.cuda.device_count()


def run_hydra_app(arguments: Sequence[str]) -> None:
    """Run the Hydra app of `python -m aitraining` in this process with these arguments."""
    from aitraining import app

    sys.argv = [sys.argv[0] if sys.argv else "aitraining", *arguments]
    app.main()


def prepare(argv: Sequence[str], cwd: Path) -> Optional[list[str]]:
    """The arguments for the Hydra app (overrides, then `--cfg job` for --print-config), checked;
    None when there is nothing to run. Raises UsageError or ConfigError."""
    request = parse(argv)
    if request is None:
        return None
    return checked_arguments(request, cwd)


def checked_arguments(request: Request, cwd: Path) -> list[str]:
    """`prepare`'s arguments for a parsed request."""
    overrides = to_overrides(request.values, cwd) + request.passthrough
    os.environ.update(environment(request.values))  # --token: the run's HF_TOKEN, never an override
    for option in OPTIONS:
        if option.warning and request.values.get(option.name) in option.warn_values:
            sys.stderr.write(f"WARNING: {option.flag}: {option.warning}\n")
    name = request.values.get("project_name")
    if name and not request.print_config:
        check_project_folder(
            overrides,
            (cwd / name).absolute(),
            f"--project-name {name}",
            "Choose another --project-name, or pass --overwrite to write into it.",
        )
    # Hydra flags after `--` (-m sweeps, --cfg, ...) are Hydra's business: the app validates each job.
    if not any(arg.startswith("-") for arg in request.passthrough):
        try:
            validate(overrides)
        except ConfigError as exc:
            raise explain(exc, request.values, "flag") from None
    return [*overrides, *(["--cfg", "job"] if request.print_config else [])]


def main(argv: Optional[Sequence[str]] = None) -> None:
    """The `aitraining` console script: one ERROR line and exit code 2 for a mistake."""
    try:
        request = parse(sys.argv[1:] if argv is None else argv)
        arguments = checked_arguments(request, Path.cwd()) if request is not None else None
    except (UsageError, ConfigError) as exc:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        message = str(exc).removeprefix("argument ")
        if isinstance(exc, UsageError):
            message += ("" if message.endswith((".", "?")) else ".") + " See: aitraining llm --help"
        sys.stderr.write(f"ERROR: {message}\n")
        sys.exit(2)
    if arguments is None:
        return
    command = None if request.print_config else launch_command(request.values, arguments)
    if command is not None:
        sys.exit(subprocess.call(command))
    run_hydra_app(arguments)


if __name__ == "__main__":
    main()
