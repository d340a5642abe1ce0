"""`aitraining llm --train ...`: the existing tool's command line, as Hydra overrides.

Each flag becomes one or more `key=value` overrides (the table is OPTIONS below), anything after `--`
is passed on as it is, and the run goes through the same Hydra app as `python -m aitraining`
(aitraining/app.py): compose -> validate -> resolve -> run. The overrides are composed and validated
here first, so that a mistake is reported in terms of the flag that caused it.

Importing this module imports argparse and nothing heavy: `aitraining --help` answers at once.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Union

from aitraining.errors import ConfigError, closest

if TYPE_CHECKING:
    from aitraining.config import Config

# conf/ beside the package, as in aitraining/app.py (not imported here: it imports Hydra).
CONF_DIR = Path(__file__).resolve().parent.parent / "conf"

Value = Union[str, int, float, bool, None]


class ParamsError(ConfigError, ValueError):
    """A flag, a --config key or an LLMTrainingParams field holds a value that is not allowed."""


def group_options(group: str) -> tuple[str, ...]:
    """The options of a config group: the YAML files in conf/<group>/."""
    return tuple(sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml")))


# --------------------------------------------------------------------------- values -> overrides

_PLAIN = re.compile(r"[A-Za-z0-9_./:@%*?|+-]+")
_NOT_A_STRING = re.compile(r"(?i)true|false|null|[-+]?(\d[\d_]*\.?\d*|\.\d+)(e[-+]?\d+)?|[-+]?(inf|nan)")


def hydra_value(value: Any) -> str:
    """`value` written in Hydra's override grammar so that it parses back to itself."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    text = str(value)
    if _PLAIN.fullmatch(text) and not _NOT_A_STRING.fullmatch(text):
        return text
    # Quoted: a quote is escaped, and so are backslashes before a quote or at the end.
    quoted = re.sub(r"(\\*)('|$)", lambda m: m.group(1) * 2 + ("\\'" if m.group(2) else ""), text)
    return "'" + quoted.replace("${", "\\${") + "'"


def _set(key: str) -> Callable[[Any, Path], list[str]]:
    return lambda value, cwd: [f"{key}={hydra_value(value)}"]


def _data_path(value: str, cwd: Path) -> list[str]:
    return ["data=custom", f"data.path={hydra_value(value)}"]


def _project_name(value: str, cwd: Path) -> list[str]:
    # Like the existing tool: --project-name X writes to ./X (not a fresh outputs/X/<time>).
    return [f"project_name={hydra_value(value)}", f"output_dir={hydra_value(str((cwd / value).absolute()))}"]


def _switch(key: str, on: str, off: str) -> Callable[[bool, Path], list[str]]:
    return lambda value, cwd: [f"{key}={on if value else off}"]


def _quantization(value: Optional[str], cwd: Path) -> list[str]:
    return [f"quant={value or 'none'}"]


def _target_modules(value: Union[str, list[str]], cwd: Path) -> list[str]:
    modules = value if isinstance(value, list) else [m.strip() for m in value.split(",") if m.strip()]
    if modules == ["all-linear"]:
        return ["peft.target_modules=all-linear"]
    return [f"peft.target_modules={hydra_value(modules)}"]


def _chat_template(value: Optional[str], cwd: Path) -> list[str]:
    # The existing tool's `tokenizer` (the tokenizer's own template) and `none` are aitraining's null.
    if value is None or value.lower() in ("tokenizer", "none"):
        return ["model.chat_template=null"]
    return [f"model.chat_template={hydra_value(value)}"]


def _unless_minus_one(key: str) -> Callable[[int, Path], list[str]]:
    # -1 is the existing tool's "not set": aitraining's own default applies.
    return lambda value, cwd: [] if value == -1 else [f"{key}={value}"]


def _trainer_arg(name: str) -> Callable[[Any, Path], list[str]]:
    # ++: set the key whether or not trainer.args (a dict) has it already.
    return lambda value, cwd: [f"++trainer.args.{name}={hydra_value(value)}"]


# --------------------------------------------------------------------------- the flags


@dataclass(frozen=True)
class Option:
    """One flag of `aitraining llm` (and field of LLMTrainingParams, and key of --config FILE)."""

    name: str
    """snake_case: the LLMTrainingParams field and --config key; the flag is --name-with-dashes."""
    type: type
    """bool (a switch: --x / --no-x), int, float or str."""
    keys: str
    """The Hydra key(s) it sets, as the README table and --help show them."""
    help: str
    to_overrides: Optional[Callable[[Any, Path], list[str]]]
    """value, working directory -> overrides (None: block_size and model_max_length, combined)."""
    choices: Optional[Callable[[], tuple[str, ...]]] = None
    nullable: bool = False
    """None (YAML null, Python None) is allowed and means what `to_overrides(None)` says."""
    list_ok: bool = False
    """A list of strings is allowed (target_modules)."""
    metavar: Optional[str] = None
    warning: Optional[str] = None
    """Said once (a WARNING line, or a Python warning) when the option is set to true."""

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def _trainers() -> tuple[str, ...]:
    return group_options("trainer")


def _quants() -> tuple[str, ...]:
    return group_options("quant")


# fmt: off
OPTIONS: tuple[Option, ...] = (
    Option("model", str, "model.name", "base model: hub id, local folder or tiny:<type>",
           _set("model.name"), metavar="NAME"),
    Option("data_path", str, "data=custom, data.path", "training data: file, folder with train.*, or hub dataset id",
           _data_path, metavar="PATH"),
    Option("project_name", str, "project_name, output_dir=<abs ./NAME>",
           "write the run to ./NAME (refused if ./NAME is not empty, unless --overwrite)", _project_name,
           metavar="NAME"),
    Option("overwrite", bool, "overwrite", "allow writing into a non-empty ./NAME", _set("overwrite")),
    Option("trainer", str, "trainer=<name>", "trainer", lambda v, cwd: [f"trainer={v}"], choices=_trainers),
    Option("unsloth", bool, "accel=unsloth|none", "use Unsloth when it can be (else a warning says why)",
           _switch("accel", "unsloth", "none")),
    Option("peft", bool, "peft=lora|none", "train LoRA adapters (without it: full fine-tuning)",
           _switch("peft", "lora", "none")),
    Option("lora_r", int, "peft.r", "LoRA rank", _set("peft.r")),
    Option("lora_alpha", int, "peft.alpha", "LoRA alpha (scale = alpha / r)", _set("peft.alpha")),
    Option("lora_dropout", float, "peft.dropout", "LoRA dropout", _set("peft.dropout")),
    Option("target_modules", str, "peft.target_modules",
           "comma-separated module names, or all-linear (default: the seven projections)", _target_modules,
           list_ok=True, metavar="MODULES"),
    Option("quantization", str, "quant=<name>", "load the base model quantized (needs --peft)", _quantization,
           choices=_quants, nullable=True),
    Option("use_sharegpt_mapping", bool, "data.use_sharegpt_mapping",
           "keep ShareGPT records and render them through a role mapping", _set("data.use_sharegpt_mapping")),
    Option("epochs", float, "trainer.epochs", "passes over the training data", _set("trainer.epochs")),
    Option("batch_size", int, "trainer.batch_size", "examples per device per step", _set("trainer.batch_size")),
    Option("lr", float, "trainer.learning_rate", "learning rate", _set("trainer.learning_rate")),
    Option("gradient_accumulation", int, "trainer.gradient_accumulation", "forward passes per optimizer step",
           _set("trainer.gradient_accumulation")),
    Option("block_size", int, "model.max_seq_length", "longest sequence in tokens (-1: not set)", None),
    Option("model_max_length", int, "model.max_seq_length",
           "longest sequence in tokens; with --block-size too, the smaller wins", None, nullable=True),
    Option("max_steps", int, "trainer.max_steps", "optimizer steps to run (-1: run --epochs)",
           _set("trainer.max_steps")),
    Option("train_split", str, "data.train_split", "training split (or file in a data folder)",
           _set("data.train_split"), metavar="SPLIT"),
    Option("valid_split", str, "data.valid_split", "evaluation split (or file in a data folder)",
           _set("data.valid_split"), nullable=True, metavar="SPLIT"),
    Option("text_column", str, "data.text_column", "column holding plain text", _set("data.text_column"),
           metavar="COLUMN"),
    Option("chat_template", str, "model.chat_template",
           "tokenizer (its own), chatml, llama3, mistral, gemma, qwen2.5 or a .jinja file", _chat_template,
           nullable=True, metavar="TEMPLATE"),
    Option("seed", int, "seed", "random seed", _set("seed")),
    # More of the existing tool's flags, so that its command lines keep working.
    Option("max_samples", int, "data.max_samples", "use only the first N training examples",
           _set("data.max_samples"), metavar="N"),
    Option("logging_steps", int, "trainer.logging_steps", "log every N steps (-1: not set)",
           _unless_minus_one("trainer.logging_steps"), metavar="N"),
    Option("disable_gradient_checkpointing", bool, "trainer.gradient_checkpointing",
           "turn gradient checkpointing off (faster, more memory)", _switch("trainer.gradient_checkpointing",
           "false", "true")),
    Option("warmup_ratio", float, "trainer.args.warmup_steps", "warm the learning rate up over this fraction of "
           "the steps", _trainer_arg("warmup_steps"), metavar="RATIO"),
    Option("weight_decay", float, "trainer.args.weight_decay", "AdamW weight decay", _trainer_arg("weight_decay")),
    Option("max_grad_norm", float, "trainer.args.max_grad_norm", "gradient clipping norm",
           _trainer_arg("max_grad_norm")),
    Option("optimizer", str, "trainer.args.optim", "transformers optimizer name, e.g. adamw_torch, "
           "paged_adamw_8bit", _trainer_arg("optim"), metavar="NAME"),
    Option("scheduler", str, "trainer.args.lr_scheduler_type", "learning-rate schedule, e.g. linear, cosine",
           _trainer_arg("lr_scheduler_type"), metavar="NAME"),
    Option("auto_convert_dataset", bool, "", "accepted, changes nothing: aitraining always detects the data "
           "format and converts it", lambda v, cwd: []),
    Option("merge_adapter", bool, "", "accepted, with a warning: aitraining never merges the adapter",
           lambda v, cwd: [], warning="ignored: aitraining keeps the LoRA adapter unmerged in "
           "<output folder>/adapter (merge it with PeftModel.merge_and_unload() if you need a full model)."),
)
# fmt: on
OPTION = {o.name: o for o in OPTIONS}

# The existing tool's defaults where they differ from aitraining's own (conf/); every other option
# left unset keeps aitraining's default, which is also the existing tool's (LoRA r 16, alpha 32,
# dropout 0.05, 1 epoch, seed 42, no Unsloth, no quantization, no ShareGPT mapping, ...).
EXISTING_DEFAULTS: dict[str, Value] = {
    "data_path": "data",
    "trainer": "default",
    "peft": False,
    "lr": 3e-5,
    "batch_size": 2,
    "gradient_accumulation": 4,
}


def coerce(option: Option, value: Any, where: str) -> Any:
    """Check (and convert, from a string) one value the way the flag's parser does.

    `where` names it in messages: `--lora-r`, `lora_r` or `FILE.yaml: lora_r`.
    """
    if value is None:
        if option.nullable:
            return None
        raise ParamsError(f"{where}: a value is required (got None).")
    if option.type is bool:
        if isinstance(value, bool):
            return value
        raise ParamsError(f"{where}: expected true or false (got {value!r}).")
    if option.list_ok and isinstance(value, (list, tuple)):
        if not value or not all(isinstance(v, str) for v in value):
            raise ParamsError(f"{where}: expected module names (got {value!r}).")
        return list(value)
    if option.type in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ParamsError(f"{where}: invalid {option.type.__name__} value: {value!r}.")
        if option.type is int and isinstance(value, float):
            if not value.is_integer():
                raise ParamsError(f"{where}: invalid int value: {value!r}.")
            value = int(value)
        try:
            value = option.type(value)
        except ValueError:
            raise ParamsError(f"{where}: invalid {option.type.__name__} value: {value!r}.") from None
        return value
    if not isinstance(value, str):
        raise ParamsError(f"{where}: expected a string (got {value!r}).")
    if option.choices is not None and value not in option.choices():
        allowed = ", ".join(option.choices())
        raise ParamsError(f"{where}: invalid choice {value!r}.{closest(value, option.choices())} Allowed: {allowed}.")
    return value


def to_overrides(values: Mapping[str, Any], cwd: Optional[Path] = None) -> list[str]:
    """The Hydra overrides for the options set in `values` (option name -> checked value).

    Options not in `values` add nothing, so aitraining's default applies. The caller merges in
    EXISTING_DEFAULTS first (the CLI and LLMTrainingParams both do).
    """
    cwd = Path.cwd() if cwd is None else cwd
    overrides: list[str] = []
    for option in OPTIONS:
        if option.name == "block_size":
            # --block-size and --model-max-length both cap the sequence length: the smaller wins.
            given = [values.get(n) for n in ("block_size", "model_max_length")]
            lengths = [n for n in given if n is not None and n != -1]
            if lengths:
                overrides.append(f"model.max_seq_length={min(lengths)}")
        elif option.name in values and option.to_overrides is not None:
            overrides += option.to_overrides(values[option.name], cwd)
    return overrides


def origins(values: Mapping[str, Any], style: str) -> dict[str, str]:
    """Hydra key -> how the user wrote the option that set it (`--lora-r 0` or `lora_r=0`)."""
    found: dict[str, str] = {}
    for name, value in values.items():
        option = OPTION[name]
        shown = option.flag if style == "flag" else option.name
        if option.type is bool and style == "flag":
            shown = option.flag if value else "--no-" + option.flag[2:]
        elif style == "flag":
            shown = f"{shown} {value}"
        else:
            shown = f"{shown}={value!r}"
        for part in option.keys.split(","):
            key = part.strip().split("=")[0].split("<")[0]
            if key:
                found[key] = shown
    return found


def explain(exc: ConfigError, values: Mapping[str, Any], style: str) -> ParamsError:
    """The config's message, prefixed with the flag (or field) that set the key it names."""
    message = str(exc)
    known = origins(values, style)
    for key in sorted(known, key=len, reverse=True):
        if re.match(re.escape(key) + r"(?![\w.])", message):
            message = f"{known[key]}: {message}"
            break
    if "needs peft=lora" in message:
        message += " Add --peft." if style == "flag" else " Set peft=True."
    return ParamsError(message)


# --------------------------------------------------------------------------- compose and validate


def validate(overrides: Sequence[str]) -> Config:
    """Compose `overrides` with Hydra exactly as `python -m aitraining` does, and validate them.

    Raises ConfigError with one line. Imports Hydra and OmegaConf, never torch.
    """
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from aitraining.app import check_override_keys
    from aitraining.config import register_configs, to_config

    check_override_keys(list(overrides))
    register_configs()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose("config", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        raise ConfigError(" ".join(lines[:12])) from None
    return to_config(cfg)


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

    The runner refuses a folder that holds a run too (report.check_output_dir); this refuses one
    holding anything else as well, as `--project-name` names a folder the user may already use.
    """
    if folder is None or last_value(overrides, "overwrite") == "true":
        return
    if last_value(overrides, "output_dir") != hydra_value(str(folder)):
        return  # output_dir=... after `--` chose another folder: the runner checks that one
    if folder.exists() and not folder.is_dir():
        raise ParamsError(f"{what}: {folder} exists and is not a folder.")
    if folder.is_dir():
        from aitraining.report import OWN_FILES

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
        epilog="Defaults are the existing tool's: --trainer default, full fine-tuning unless --peft, --lr 3e-5, "
        "--batch-size 2,\n--gradient-accumulation 4, --data-path data; others are aitraining's (see README).",
    )
    llm.add_argument("--train", action="store_true", help="train (the only action)")
    llm.add_argument("--config", metavar="FILE.yaml", help="a YAML of these options (flags win over it)")
    llm.add_argument("--print-config", action="store_true", help="print the composed config and exit")
    for option in OPTIONS:
        kwargs: dict[str, Any] = {"help": f"{option.help} [{option.keys}]", "dest": option.name}
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
    values = {**EXISTING_DEFAULTS, **from_file, **given}
    return Request(values=values, passthrough=passthrough, print_config=print_config)


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
    overrides = to_overrides(request.values, cwd) + request.passthrough
    for option in OPTIONS:
        if option.warning and request.values.get(option.name):
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
        arguments = prepare(sys.argv[1:] if argv is None else argv, Path.cwd())
    except (UsageError, ConfigError) as exc:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        message = str(exc).removeprefix("argument ")
        if isinstance(exc, UsageError):
            message += ("" if message.endswith((".", "?")) else ".") + " See: aitraining llm --help"
        sys.stderr.write(f"ERROR: {message}\n")
        sys.exit(2)
    if arguments is not None:
        run_hydra_app(arguments)


if __name__ == "__main__":
    main()
