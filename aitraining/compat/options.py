"""The existing tool's options, declared once.

Each `Option` is one flag of `aitraining llm`, one field of `LLMTrainingParams` and one key of a
`--config FILE.yaml`: its name, type, default, the Hydra keys it sets (and how), and its help. From
this table come the argparse parser (cli.py), the `LLMTrainingParams` dataclass (api.py), the
`--config` reader, the README's flag table (`markdown_table`, kept current by a test) and the mapping
of a config error's key back to the flag that set it (`explain`).

Importing this imports nothing heavy (no Hydra, no torch).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from aitraining.conf_files import group_options
from aitraining.errors import ConfigError, closest

Value = Union[str, int, float, bool, None]


class ParamsError(ConfigError, ValueError):
    """A flag, a --config key or an LLMTrainingParams field holds a value that is not allowed."""


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


ToOverrides = Callable[[Any, Path], list[str]]


def _set(key: str) -> ToOverrides:
    return lambda value, cwd: [f"{key}={hydra_value(value)}"]


def _data_path(value: str, cwd: Path) -> list[str]:
    return ["data=custom", f"data.path={hydra_value(value)}"]


_COLUMN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _rename_to(target: str, flag: str) -> ToOverrides:
    """--prompt-text-column Q: the data's column Q is read as `target` (data.columns: {Q: target})."""

    def overrides(value: str, cwd: Path) -> list[str]:
        if not _COLUMN.fullmatch(value):
            raise ParamsError(
                f"{flag} {value}: give a column name of letters, digits and '_' (rename other columns after --: "
                f"'+data.columns={{\"{value}\": {target}}}')."
            )
        return [] if value == target else [f"++data.columns.{value}={target}"]

    return overrides


def _train_split(value: str, cwd: Path) -> list[str]:
    # The existing tool's `subset:split` names a hub dataset's configuration and its split.
    subset, _, split = value.rpartition(":")
    return [f"data.subset={hydra_value(subset)}"] * bool(subset) + [f"data.train_split={hydra_value(split)}"]


def _project_name(value: str, cwd: Path) -> list[str]:
    # Like the existing tool: --project-name X writes to ./X (not a fresh outputs/X/<time>).
    return [f"project_name={hydra_value(value)}", f"output_dir={hydra_value(str((cwd / value).absolute()))}"]


def _switch(key: str, on: str, off: str) -> ToOverrides:
    return lambda value, cwd: [f"{key}={on if value else off}"]


def _group(group: str) -> ToOverrides:
    return lambda value, cwd: [f"{group}={value or 'none'}"]


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


def _unless_minus_one(key: str) -> ToOverrides:
    # -1 is the existing tool's "not set": aitraining's own default applies.
    return lambda value, cwd: [] if value == -1 else [f"{key}={value}"]


def _trainer_arg(name: str) -> ToOverrides:
    # ++: set the key whether or not trainer.args (a dict) has it already.
    return lambda value, cwd: [f"++trainer.args.{name}={hydra_value(value)}"]


def _nothing(value: Any, cwd: Path) -> list[str]:
    return []


# The existing tool's --distributed-backend launched `accelerate launch --multi_gpu` (ddp) or
# `--use_deepspeed --zero_stage 3` (deepspeed): the same strategies as aitraining's dist= options.
DISTRIBUTED_BACKENDS = {"ddp": "ddp", "deepspeed": "zero3"}


def _distributed_backend(value: Optional[str], cwd: Path) -> list[str]:
    if value is None:
        return []
    every = "{" + ",".join(DISTRIBUTED_BACKENDS.values()) + "}"  # for the README table's metavar
    return [f"dist={DISTRIBUTED_BACKENDS.get(value, every)}"]


def _strategy(key: str, off: str) -> ToOverrides:
    # The existing tool's save/eval strategies: "steps" is aitraining's way, "no" turns it off, and
    # "epoch" is accepted (with a warning) as "steps".
    return lambda value, cwd: [f"{key}={off}"] if value == "no" else []


def _strategies() -> tuple[str, ...]:
    return ("steps", "epoch", "no")


# --------------------------------------------------------------------------- the declaration


@dataclass(frozen=True)
class Option:
    """One option of the existing tool: flag, LLMTrainingParams field and --config key."""

    name: str
    """snake_case: the LLMTrainingParams field and --config key; the flag is --name-with-dashes."""
    type: type
    """bool (a switch: --x / --no-x), int, float or str."""
    keys: tuple[str, ...]
    """The aitraining config keys it sets (a config error about one of them names this option)."""
    help: str
    to_overrides: Optional[ToOverrides]
    """value, working directory -> Hydra overrides (None: block_size and model_max_length, combined)."""
    default: Value = None
    """Its value when not given. None: aitraining's own default applies (said in `unset`)."""
    existing_default: bool = False
    """The default is the existing tool's and differs from aitraining's: applied even when not given."""
    unset: str = ""
    """What applies when a None default is not given (the README's default column)."""
    choices: Optional[Callable[[], tuple[str, ...]]] = None
    refused: Optional[Callable[[str], Optional[tuple[str, str]]]] = None
    """value -> (why, the value to use instead) for a value the existing tool had and aitraining refuses
    on purpose (its --trainer ppo), else None."""
    nullable: bool = False
    """None (YAML null, Python None) is allowed and means what `to_overrides(None)` says."""
    list_ok: bool = False
    """A list of strings is allowed (target_modules)."""
    metavar: Optional[str] = None
    warning: Optional[str] = None
    """Said once (a WARNING line, or a Python warning) when the option is set to one of `warn_values`."""
    warn_values: tuple[Value, ...] = (True,)
    environment: Optional[str] = None
    """The environment variable the value goes to, instead of an override (a secret: never in a file)."""
    shown_overrides: Optional[str] = None
    """The README's override cell for an option whose overrides depend on another (to_overrides None)."""

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def annotation(self) -> Any:
        """The LLMTrainingParams field's type."""
        kind: Any = list[str] | str if self.list_ok else self.type
        return Optional[kind] if self.default is None else kind


def _trainers() -> tuple[str, ...]:
    return tuple(group_options("trainer"))


def _quants() -> tuple[str, ...]:
    return tuple(group_options("quant"))


def _retired_trainer(value: str) -> Optional[tuple[str, str]]:
    from aitraining.trainers.registry import RETIRED

    return RETIRED.get(value)


def _loggers() -> tuple[str, ...]:
    return tuple(group_options("logger"))


# fmt: off
OPTIONS: tuple[Option, ...] = (
    Option("model", str, ("model.name",), "base model: hub id, local folder or tiny:<type>", _set("model.name"),
           unset="aitraining's: model=llama3_2_1b", metavar="NAME"),
    Option("data_path", str, ("data", "data.path"), "training data: file, folder with train.*, or hub dataset id",
           _data_path, default="data", existing_default=True, metavar="PATH"),
    Option("project_name", str, ("project_name", "output_dir"),
           "write the run to ./NAME (refused if ./NAME is not empty, unless --overwrite)", _project_name,
           unset="a fresh outputs/aitraining/<time>", metavar="NAME"),
    Option("overwrite", bool, ("overwrite",), "allow writing into a non-empty ./NAME", _set("overwrite"),
           default=False),
    Option("trainer", str, ("trainer",), "trainer (the options in conf/trainer/; ppo is refused: use grpo)",
           lambda v, cwd: [f"trainer={v}"],
           default="default", existing_default=True, choices=_trainers, refused=_retired_trainer),
    Option("unsloth", bool, ("accel",), "use Unsloth when it can be (else a warning says why)",
           _switch("accel", "unsloth", "none"), default=False),
    Option("peft", bool, ("peft",), "train LoRA adapters (without it: full fine-tuning)",
           _switch("peft", "lora", "none"), default=False, existing_default=True),
    Option("lora_r", int, ("peft.r",), "LoRA rank", _set("peft.r"), default=16),
    Option("lora_alpha", int, ("peft.alpha",), "LoRA alpha (scale = alpha / r)", _set("peft.alpha"), default=32),
    Option("lora_dropout", float, ("peft.dropout",), "LoRA dropout", _set("peft.dropout"), default=0.05),
    Option("target_modules", str, ("peft.target_modules",),
           "comma-separated module names, or all-linear", _target_modules,
           unset="the seven projections, narrowed to the model's", list_ok=True, metavar="MODULES"),
    Option("quantization", str, ("quant",), "load the base model quantized (needs --peft)", _group("quant"),
           unset="none", choices=_quants, nullable=True),
    Option("use_sharegpt_mapping", bool, ("data.use_sharegpt_mapping",),
           "keep ShareGPT records and render them through a role mapping", _set("data.use_sharegpt_mapping"),
           default=False),
    Option("epochs", float, ("trainer.epochs",), "passes over the training data", _set("trainer.epochs"),
           default=1.0),
    Option("batch_size", int, ("trainer.batch_size",), "examples per device per step", _set("trainer.batch_size"),
           default=2, existing_default=True),
    Option("lr", float, ("trainer.learning_rate",), "learning rate (3e-5 suits full fine-tuning; LoRA wants ~2e-4)",
           _set("trainer.learning_rate"), default=3e-5, existing_default=True),
    Option("gradient_accumulation", int, ("trainer.gradient_accumulation",), "forward passes per optimizer step",
           _set("trainer.gradient_accumulation"), default=4, existing_default=True),
    Option("block_size", int, ("model.max_seq_length",), "longest sequence in tokens (-1: not set)", None,
           default=-1),
    Option("model_max_length", int, ("model.max_seq_length",),
           "longest sequence in tokens; with --block-size too, the smaller wins", None,
           unset="the model config's (2048)", nullable=True),
    Option("max_steps", int, ("trainer.max_steps",), "optimizer steps to run (-1: run --epochs)",
           _set("trainer.max_steps"), default=-1),
    Option("train_split", str, ("data.train_split", "data.subset"),
           "training split (or file in a data folder); SUBSET:SPLIT names a hub dataset's subset too",
           _train_split, default="train", metavar="SPLIT"),
    Option("valid_split", str, ("data.valid_split",), "evaluation split (or file in a data folder)",
           _set("data.valid_split"), unset="none", nullable=True, metavar="SPLIT"),
    Option("text_column", str, ("data.text_column",), "column holding plain text", _set("data.text_column"),
           default="text", metavar="COLUMN"),
    Option("prompt_text_column", str, ("data.columns",), "column holding the prompt (read as 'prompt')",
           _rename_to("prompt", "--prompt-text-column"), unset="prompt", metavar="COLUMN"),
    Option("rejected_text_column", str, ("data.columns",), "column holding the rejected reply (read as 'rejected')",
           _rename_to("rejected", "--rejected-text-column"), unset="rejected", metavar="COLUMN"),
    Option("chat_template", str, ("model.chat_template",),
           "tokenizer (its own), chatml, llama3, mistral, gemma, qwen2.5 or a .jinja file", _chat_template,
           unset="the tokenizer's own", nullable=True, metavar="TEMPLATE"),
    Option("seed", int, ("seed",), "random seed", _set("seed"), default=42),
    # More of the existing tool's flags, so that its command lines keep working.
    Option("max_samples", int, ("data.max_samples",), "use only the first N training examples",
           _set("data.max_samples"), unset="all", metavar="N"),
    Option("logging_steps", int, ("trainer.logging_steps",), "log every N steps (-1: aitraining's 10)",
           _unless_minus_one("trainer.logging_steps"), default=-1, metavar="N"),
    Option("disable_gradient_checkpointing", bool, ("trainer.gradient_checkpointing",),
           "turn gradient checkpointing off (faster, more memory)",
           _switch("trainer.gradient_checkpointing", "false", "true"), default=False),
    Option("warmup_ratio", float, ("trainer.args.warmup_steps",),
           "warm the learning rate up over this fraction of the steps", _trainer_arg("warmup_steps"),
           unset="no warmup (the existing tool's 0.1 is not applied)", metavar="RATIO"),
    Option("weight_decay", float, ("trainer.args.weight_decay",), "AdamW weight decay",
           _trainer_arg("weight_decay"), unset="TRL's (0)"),
    Option("max_grad_norm", float, ("trainer.args.max_grad_norm",), "gradient clipping norm",
           _trainer_arg("max_grad_norm"), unset="TRL's (1.0)"),
    Option("optimizer", str, ("trainer.args.optim",), "transformers optimizer name, e.g. adamw_torch, "
           "paged_adamw_8bit", _trainer_arg("optim"), unset="TRL's (AdamW)", metavar="NAME"),
    Option("scheduler", str, ("trainer.args.lr_scheduler_type",), "learning-rate schedule, e.g. linear, cosine",
           _trainer_arg("lr_scheduler_type"), unset="TRL's (linear)", metavar="NAME"),
    Option("distributed_backend", str, ("dist",), "train in several processes, launched through accelerate "
           "(ddp: DDP; deepspeed: DeepSpeed ZeRO-3); one per GPU unless --num-processes", _distributed_backend,
           unset="one process", choices=lambda: tuple(DISTRIBUTED_BACKENDS), nullable=True),
    Option("num_processes", int, (), "with --distributed-backend: processes to launch (aitraining's; the "
           "existing tool used one per visible GPU)", _nothing, unset="the visible GPUs", metavar="N"),
    # Checkpoints, evaluation, resume (README: "Long runs: checkpoints and resume").
    Option("save_steps", int, ("trainer.save_steps",), "save a checkpoint every N optimizer steps (0: none)",
           _set("trainer.save_steps"), unset="aitraining's (500)", metavar="N"),
    Option("save_total_limit", int, ("trainer.save_total_limit",), "checkpoints kept: the newest N",
           _set("trainer.save_total_limit"), unset="aitraining's (2)", metavar="N"),
    Option("save_strategy", str, ("trainer.save_steps",), "steps: a checkpoint every --save-steps; no: none",
           _strategy("trainer.save_steps", "0"), unset="steps", choices=_strategies,
           warning="epoch is taken as steps: aitraining checkpoints every --save-steps optimizer steps.",
           warn_values=("epoch",)),
    Option("eval_strategy", str, ("trainer.eval_steps",),
           "steps: evaluate at each checkpoint (with an evaluation set); no: only at the end",
           _strategy("trainer.eval_steps", "0"), unset="steps", choices=_strategies,
           warning="epoch is taken as steps: aitraining evaluates at each checkpoint (trainer.eval_steps).",
           warn_values=("epoch",)),
    Option("resume", bool, ("resume",), "continue the run in ./NAME (--project-name) from its newest checkpoint",
           _set("resume"), default=False),
    Option("auto_convert_dataset", bool, (), "accepted, changes nothing: aitraining always detects the data "
           "format and converts it", _nothing, default=False),
    Option("merge_adapter", bool, ("export.merge",), "after training, also merge the LoRA adapter into the base "
           "model: <output folder>/merged/ (the adapter stays)", _switch("export.merge", "true", "false"),
           default=False),
    Option("push_to_hub", bool, ("export.push_to_hub",), "after training, upload the model to a private Hub repo "
           "USERNAME/PROJECT_NAME with a model card", None, default=False,
           shown_overrides="export.push_to_hub=[USERNAME/]${project_name}"),
    Option("username", str, ("export.push_to_hub",), "Hub user or organisation for --push-to-hub", None,
           unset="the token's own account", metavar="NAME",
           shown_overrides="export.push_to_hub=NAME/${project_name} (with --push-to-hub)"),
    Option("token", str, (), "Hub token for --push-to-hub, given to the run as HF_TOKEN and never written to a "
           "file (better: set HF_TOKEN, or hf auth login)", _nothing, unset="HF_TOKEN or the Hub login",
           metavar="TOKEN", environment="HF_TOKEN", shown_overrides="environment: HF_TOKEN"),
    Option("log", str, ("logger",), "experiment tracker (each an optional extra: pip install 'aitraining[NAME]')",
           _group("logger"), default="none", choices=_loggers),
)
# fmt: on
OPTION = {o.name: o for o in OPTIONS}


def existing_defaults() -> dict[str, Value]:
    """The existing tool's defaults that differ from aitraining's: applied when not given."""
    return {o.name: o.default for o in OPTIONS if o.existing_default}


# --------------------------------------------------------------------------- checking values


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
    refusal = option.refused(value) if option.refused is not None else None
    if refusal is not None:
        why, instead = refusal
        use = f"{option.flag} {instead}" if where == option.flag else f"{option.name}={instead!r}"
        raise ParamsError(f"{where}: {value!r}: {why} Use {use}.")
    if option.choices is not None and value not in option.choices():
        allowed = ", ".join(option.choices())
        raise ParamsError(f"{where}: invalid choice {value!r}.{closest(value, option.choices())} Allowed: {allowed}.")
    return value


def to_overrides(values: Mapping[str, Any], cwd: Optional[Path] = None) -> list[str]:
    """The Hydra overrides for the options set in `values` (option name -> checked value).

    Options not in `values` add nothing, so aitraining's default applies. The caller merges in
    `existing_defaults()` first (the CLI and LLMTrainingParams both do).
    """
    cwd = Path.cwd() if cwd is None else cwd
    if values.get("num_processes") is not None and values.get("distributed_backend") is None:
        raise ParamsError(
            "--num-processes (num_processes) needs --distributed-backend ddp|deepspeed (distributed_backend)."
        )
    overrides: list[str] = []
    for option in OPTIONS:
        if option.name == "block_size":
            # --block-size and --model-max-length both cap the sequence length: the smaller wins.
            given = [values.get(n) for n in ("block_size", "model_max_length")]
            lengths = [n for n in given if n is not None and n != -1]
            if lengths:
                overrides.append(f"model.max_seq_length={min(lengths)}")
        elif option.name == "push_to_hub" and values.get("push_to_hub"):
            # The existing tool's repo: USERNAME/PROJECT_NAME (without --username: the token's own account).
            owner = values.get("username")
            overrides.append("export.push_to_hub=" + (f"{hydra_value(owner)}/" if owner else "") + "${project_name}")
        elif option.name in values and option.to_overrides is not None:
            overrides += option.to_overrides(values[option.name], cwd)
    return overrides


def environment(values: Mapping[str, Any]) -> dict[str, str]:
    """Environment variables for the run from options that must not become overrides (the Hub token)."""
    return {o.environment: str(values[o.name]) for o in OPTIONS if o.environment and values.get(o.name)}


# --------------------------------------------------------------------------- errors -> options


def shown(option: Option, value: Any, style: str) -> str:
    """How the user wrote it: `--lora-r 0`, `--no-peft` (style "flag") or `lora_r=0` (style "field")."""
    if style != "flag":
        return f"{option.name}={value!r}"
    if option.type is bool:
        return option.flag if value else "--no-" + option.flag[2:]
    return f"{option.flag} {value}"


def _owner(key: str, values: Mapping[str, Any]) -> Optional[Option]:
    """The option the user set that sets `key`; else the one setting the nearest key around it (its
    group), else one setting a key inside it."""

    def nearness(option: Option) -> int:
        best = 0
        for k in option.keys:
            if key == k:
                best = max(best, 1000)
            elif key.startswith(k + "."):
                best = max(best, 100 + len(k))
            elif k.startswith(key + "."):
                best = max(best, 1)
        return best

    scored = [(nearness(o), i, o) for i, o in enumerate(OPTIONS) if o.name in values]
    best = max(scored, default=(0, 0, None), key=lambda x: (x[0], -x[1]))
    return best[2] if best[0] else None


def _fix_hint(fix: Mapping[str, str], style: str) -> str:
    """`Add --peft.` / `Set peft=True.` for a problem's fix {"peft": "lora"}, from the options' own overrides."""
    hints = []
    for key, wanted in fix.items():
        for option in OPTIONS:
            if option.to_overrides is None or key not in option.keys:
                continue
            for value in (True, False) if option.type is bool else ():
                if f"{key}={wanted}" in option.to_overrides(value, Path.cwd()):
                    hints.append(shown(option, value, style))
    if not hints:
        return ""
    return (" Add " if style == "flag" else " Set ") + ", ".join(hints) + "."


def explain(exc: ConfigError, values: Mapping[str, Any], style: str) -> ParamsError:
    """The config's message, each problem prefixed with the option that set the key it names, and the
    option that fixes it where it has a fix."""
    lines = []
    for problem in exc.problems:
        owner = _owner(problem.key, values) if problem.key else None
        text = f"{shown(owner, values[owner.name], style)}: {problem.message}" if owner else problem.message
        lines.append(text + _fix_hint(problem.fix, style))
    message = lines[0] if len(lines) == 1 else f"{len(lines)} problems:\n" + "\n".join(f"  - {x}" for x in lines)
    error = ParamsError(message)
    error.problems = exc.problems
    return error


# --------------------------------------------------------------------------- the README's table


def _cell_default(option: Option) -> str:
    if option.default is None:
        return option.unset
    value = str(option.default).lower() if isinstance(option.default, bool) else f"`{option.default}`"
    if option.type is bool and option.default is False:
        value = "off"
    return value + (" (the existing tool's)" if option.existing_default else "")


def markdown_table() -> str:
    """The README's flag table, generated from OPTIONS (tests/test_cli.py checks the README holds it)."""
    rows = [
        "| flag | `LLMTrainingParams` | Hydra override(s) | default | what it does |",
        "| --- | --- | --- | --- | --- |",
    ]
    for option in OPTIONS:
        metavar = "" if option.type is bool else " " + (option.metavar or option.type.__name__.upper())
        if option.choices is not None:
            metavar = " {" + ",".join(option.choices()) + "}"
        if option.shown_overrides:
            overrides = option.shown_overrides
        elif option.to_overrides is None:
            overrides = f"model.max_seq_length={metavar.strip()}"
        elif option.type is bool:
            overrides = " ".join(option.to_overrides(True, Path("."))) or "nothing"
        else:
            overrides = " ".join(option.to_overrides(metavar.strip(), Path("."))).replace("'", "") or "nothing"
        if overrides == "nothing" and option.choices is not None:  # per choice (the save/eval strategies)
            overrides = "; ".join(f"{c}: {' '.join(option.to_overrides(c, Path('.'))) or 'nothing'}"
                                  for c in option.choices())  # fmt: skip
        overrides = overrides.replace(str(Path(".").absolute()) + "/", "<absolute>./")
        help_text = option.help + (f" ({option.warning.split(':')[0]})" if option.warning else "")
        rows.append(
            f"| `{option.flag}{metavar}` | `{option.name}` | `{overrides}` | {_cell_default(option)} | {help_text} |"
        )
    return "\n".join(rows)


TABLE_START = "<!-- flag table: generated by `python -m aitraining.compat.options README.md`; do not edit -->"
TABLE_END = "<!-- end of flag table -->"


def with_table(readme: str) -> str:
    """The README text with the flag table between its markers replaced by the current one."""
    head, _, rest = readme.partition(TABLE_START)
    _, _, tail = rest.partition(TABLE_END)
    return f"{head}{TABLE_START}\n{markdown_table()}\n{TABLE_END}{tail}"


if __name__ == "__main__":
    import sys

    if len(sys.argv) > 1:  # rewrite the table in that README
        path = Path(sys.argv[1])
        path.write_text(with_table(path.read_text(encoding="utf-8")), encoding="utf-8")
    else:
        print(markdown_table())
