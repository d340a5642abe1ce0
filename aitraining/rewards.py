"""Reward functions for `trainer=grpo`, named in `trainer.reward_funcs`:

- a built-in by name: `answer_format`, `answer_match`, `length` (below);
- the user's own: `path/to/file.py:function` or `module:function`.

TRL's GRPOTrainer calls each one with `prompts`, `completions`, `completion_ids`, `trainer_state`,
`log_extra`, `log_metric` and every other column of the dataset as keyword arguments (a column
`reference` arrives as `reference=[...]`), and logs each one's mean as `rewards/<name>/mean`.
A completion is a string, or for chat prompts a list holding one assistant message.

Checked in three places, each as early as it can be:
1. `check` (config validation; nothing imported or run): each entry is a built-in, a .py file that
   exists and defines the function (read with `ast`), or a module that can be found;
2. `load` + `check_columns` (after the data is read, before the model loads): the user's code is
   imported, and each function must take `**kwargs` and no argument that neither TRL nor the data gives;
3. TRL then calls them while training.
Nothing here imports torch.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import inspect
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from aitraining.errors import ConfigError, closest, require

KEY = "trainer.reward_funcs"
# What TRL 1.14's GRPOTrainer passes to every reward function, besides the dataset's other columns.
TRL_ARGUMENTS = ("prompts", "completions", "completion_ids", "trainer_state", "log_extra", "log_metric")
# The column holding each prompt's reference answer (aitraining/data/prompts.py fills it from the data's answer).
REFERENCE = "reference"


# --------------------------------------------------------------------------- the built-ins


def completion_text(completion: Any) -> str:
    """A completion as text: the string itself, or the content of a chat completion's last message."""
    if isinstance(completion, list):
        return str(completion[-1].get("content", "")) if completion else ""
    return str(completion)


def _answer(text: str, pattern: str) -> str:
    """The pattern's first group where it matches (the whole match when it has no group), else the text."""
    match = re.search(pattern, text, re.DOTALL)
    if match is None:
        return text
    return match.group(1) if match.groups() else match.group(0)


def _normal(text: str) -> str:
    return " ".join(text.split()).casefold()


def answer_format(completions: list[Any], pattern: str, **kwargs: Any) -> list[float]:
    """1.0 when the completion holds the answer format (trainer.answer_pattern, a regex), else 0.0."""
    return [1.0 if re.search(pattern, completion_text(c), re.DOTALL) else 0.0 for c in completions]


def answer_match(
    completions: list[Any], pattern: str, reference: Optional[list[Any]] = None, **kwargs: Any
) -> list[Optional[float]]:
    """1.0 when the completion's answer (trainer.answer_pattern's first group where it matches, else the
    whole completion) equals the reference answer, ignoring case and spacing; else 0.0 (None: no reference)."""
    references = reference or [None] * len(completions)
    return [
        None if ref is None else float(_normal(_answer(completion_text(c), pattern)) == _normal(str(ref)))
        for c, ref in zip(completions, references, strict=True)
    ]


def length(completion_ids: list[list[int]], target: int, **kwargs: Any) -> list[float]:
    """1.0 at trainer.target_length tokens, falling linearly to 0.0 at 0 and at twice the target."""
    return [max(0.0, 1.0 - abs(len(ids) - target) / target) for ids in completion_ids]


@dataclass(frozen=True)
class BuiltIn:
    function: Callable[..., list]
    settings: dict[str, str]  # its keyword argument -> the trainer field that sets it
    needs: tuple[str, ...] = ()  # dataset columns it reads
    summary: str = ""


BUILT_INS: dict[str, BuiltIn] = {
    "answer_format": BuiltIn(answer_format, {"pattern": "answer_pattern"}, summary="the answer format is there"),
    "answer_match": BuiltIn(answer_match, {"pattern": "answer_pattern"}, (REFERENCE,), "the answer is the reference"),
    "length": BuiltIn(length, {"target": "target_length"}, summary="the completion is near target_length tokens"),
}


# --------------------------------------------------------------------------- entries


@dataclass(frozen=True)
class Entry:
    """One `trainer.reward_funcs` entry, parsed."""

    text: str
    source: Optional[str]  # the .py file or module; None for a built-in
    name: str  # the function (or built-in) name

    @property
    def is_file(self) -> bool:
        return self.source is not None and self.source.endswith(".py")


_MODULE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


def parse(text: str) -> Entry:
    source, sep, name = text.rpartition(":")
    if not sep:
        return Entry(text, None, text)
    return Entry(text, source, name)


def _defined_names(tree: ast.Module) -> list[str]:
    """Top-level names a module defines: functions, assignments, imports."""
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names += [(a.asname or a.name).split(".")[0] for a in node.names]
    return names


def _entry_problem(entry: Entry) -> Optional[str]:
    """What is wrong with one entry, found without importing or running anything; None when fine."""
    if entry.source is None:
        if entry.name in BUILT_INS:
            return None
        return (
            f"'{entry.text}' is not a built-in reward ({', '.join(BUILT_INS)}).{closest(entry.name, BUILT_INS)} "
            "Name your own as path/to/file.py:function or module:function."
        )
    if not entry.name.isidentifier():
        return f"'{entry.text}': '{entry.name}' is not a function name (write path/to/file.py:function)."
    if entry.is_file:
        path = Path(entry.source).expanduser()
        if not path.is_file():
            return f"'{entry.text}': no such file {entry.source} (relative to {Path.cwd()})."
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        except SyntaxError as exc:
            return f"'{entry.text}': {entry.source} line {exc.lineno}: not valid Python ({exc.msg})."
        names = _defined_names(tree)
        if entry.name not in names:
            defined = ", ".join(n for n in names if not n.startswith("_")) or "nothing"
            return (
                f"'{entry.text}': {entry.source} defines no function '{entry.name}'.{closest(entry.name, names)} "
                f"It defines: {defined}."
            )
        return None
    if not _MODULE.match(entry.source):
        return f"'{entry.text}': '{entry.source}' is neither a .py file nor a module name (path/to/file.py:function)."
    top = entry.source.split(".")[0]
    if importlib.util.find_spec(top) is None:  # the top-level package only: finding a submodule imports its parent
        return f"'{entry.text}': no module named '{top}' (is it installed, or on PYTHONPATH?)."
    return None


def check(entries: Sequence[str]) -> bool:
    """Config validation: every problem of every entry, reported against trainer.reward_funcs."""
    ok = require(
        bool(entries),
        KEY,
        f"{KEY} is empty: name at least one reward, a built-in ({', '.join(BUILT_INS)}) or your own "
        "(path/to/file.py:function or module:function).",
    )
    parsed = [parse(str(e)) for e in entries]
    names = [p.name for p in parsed]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    ok = require(not duplicates, KEY, f"{KEY} names {', '.join(duplicates)} twice: TRL logs each reward by its "
                 "function name, so each must be named once.") and ok  # fmt: skip
    for entry in parsed:
        problem = _entry_problem(entry)
        ok = require(problem is None, KEY, f"{KEY}: {problem}") and ok
    return ok


# --------------------------------------------------------------------------- loading (user code runs here)


def _where_failed(exc: BaseException, path: Path) -> str:
    """` line N` of the user's file where the exception was raised, when the traceback passes through it."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if Path(tb.tb_frame.f_code.co_filename).resolve() == path.resolve():
            line = tb.tb_lineno
        tb = tb.tb_next
    if line is None and isinstance(exc, SyntaxError) and exc.lineno:
        line = exc.lineno
    return f" line {line}" if line else ""


def _import_file(entry: Entry) -> Any:
    path = Path(entry.source or "").expanduser().resolve()
    module_name = "aitraining_reward_funcs_" + re.sub(r"\W", "_", str(path))
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling inside the file look themselves up here
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ConfigError(
            f"{KEY}: '{entry.text}': running {entry.source}{_where_failed(exc, path)} raised "
            f"{type(exc).__name__}{': ' + first if first else ''}.",
            key=KEY,
        ) from None
    return module


def _import_module(entry: Entry) -> Any:
    try:
        return importlib.import_module(entry.source or "")
    except Exception as exc:
        raise ConfigError(
            f"{KEY}: '{entry.text}': importing {entry.source} raised {type(exc).__name__}: {exc}.", key=KEY
        ) from None


def _function(entry: Entry, settings: dict[str, Any]) -> Callable[..., list]:
    if entry.source is None:
        built_in = BUILT_INS[entry.name]
        bound = {arg: settings[field] for arg, field in built_in.settings.items()}
        return functools.partial(built_in.function, **bound)  # TRL names it by the wrapped function
    module = _import_file(entry) if entry.is_file else _import_module(entry)
    function = getattr(module, entry.name, None)
    if function is None:
        names = [n for n in vars(module) if not n.startswith("_")]
        raise ConfigError(f"{KEY}: '{entry.text}': {entry.source} has no '{entry.name}'.{closest(entry.name, names)}",
                          key=KEY)  # fmt: skip
    if not callable(function):
        raise ConfigError(f"{KEY}: '{entry.text}': {entry.source}'s '{entry.name}' is a "
                          f"{type(function).__name__}, not a function.", key=KEY)  # fmt: skip
    return function


@functools.cache
def _load(entries: tuple[str, ...], settings: tuple[tuple[str, Any], ...]) -> tuple[Callable[..., list], ...]:
    return tuple(_function(parse(e), dict(settings)) for e in entries)


def load(trainer_cfg: Any) -> list[Callable[..., list]]:
    """The reward functions of a GRPO config, the user's code imported (once per process)."""
    settings = tuple(
        sorted({f: getattr(trainer_cfg, f) for b in BUILT_INS.values() for f in b.settings.values()}.items())
    )
    return list(_load(tuple(trainer_cfg.reward_funcs), settings))


def check_columns(trainer_cfg: Any, columns: Sequence[str], source: str) -> None:
    """Each reward function can be called the way TRL will call it on this data: it takes **kwargs,
    and every argument it requires is one TRL passes or a column of the data."""
    given = set(TRL_ARGUMENTS) | set(columns)
    available = f"TRL passes {', '.join(TRL_ARGUMENTS)}; the data's columns are {', '.join(columns) or 'none'}"
    for text, function in zip(trainer_cfg.reward_funcs, load(trainer_cfg), strict=True):
        entry = parse(text)
        if entry.source is None:
            missing = [c for c in BUILT_INS[entry.name].needs if c not in columns]
            if missing:
                raise ConfigError(
                    f"{KEY}: {entry.name} compares each completion with the prompt's '{missing[0]}' answer, and "
                    f"{source} has none. GRPO takes it from Alpaca's output, a completion column or a conversation's "
                    "final assistant turn; or rename your answer column, e.g. "
                    f"'+data.columns={{answer: {REFERENCE}}}'.",
                    key=KEY,
                )
            continue
        try:
            parameters = inspect.signature(function).parameters.values()
        except (TypeError, ValueError):
            continue  # a builtin or C function: TRL will tell
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            raise ConfigError(f"{KEY}: '{text}' must accept **kwargs: {available}, all as keyword arguments.", key=KEY)
        for p in parameters:
            required = p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            if p.kind is p.POSITIONAL_ONLY or (required and p.name not in given):
                raise ConfigError(f"{KEY}: '{text}' requires '{p.name}', which it will not get: {available}.", key=KEY)


def names(trainer_cfg: Any) -> list[str]:
    """The names TRL logs the rewards under (`rewards/<name>/mean`): each function's name."""
    return [parse(e).name for e in trainer_cfg.reward_funcs]
