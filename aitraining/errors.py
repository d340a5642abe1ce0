"""Errors the runner reports to the user as clear messages (no traceback).

A config error is structured: each `Problem` carries the key it is about, the whole message (what
was wrong, what is allowed) and, where one assignment would fix it, that assignment. Validation
collects every problem before raising (`collecting`), so one run reports them all; the existing
tool's CLI maps a problem's key back to the flag that set it.
"""

from __future__ import annotations

import contextlib
import contextvars
import difflib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Optional


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the config."""

    key: Optional[str]
    """The config key it is about (`trainer.learning_rate`), or None for the config as a whole."""
    message: str
    """The whole sentence: names the key, says what was wrong and what is allowed."""
    fix: dict[str, str] = field(default_factory=dict)
    """Assignments that would fix it, e.g. {"peft": "lora"}; the CLI turns them into flags."""


class AitrainingError(Exception):
    """Base class: an error the user can fix; printed without a traceback."""


class ConfigError(AitrainingError):
    """One or more config keys hold values that are not allowed."""

    def __init__(self, message: str | Iterable[Problem], key: Optional[str] = None, fix: Optional[dict] = None):
        if isinstance(message, str):
            problems: tuple[Problem, ...] = (Problem(key, message, dict(fix or {})),)
        else:
            problems = tuple(message)
        self.problems = problems
        super().__init__(render(problems))

    @property
    def key(self) -> Optional[str]:
        return self.problems[0].key


class DataError(AitrainingError):
    """The training data cannot be read or does not fit its format."""


class TrainingError(AitrainingError):
    """Training ran but its result must not be trusted (e.g. the loss became NaN)."""


class DivergedError(TrainingError):
    """The loss or the weights became NaN/inf: nothing of the run is saved or resumed as good."""


class RunError(AitrainingError):
    """A folder given to `aitraining chat` or `export` is not a finished run, or what it asks
    for cannot be done with it (a missing optional package, a converter that refuses the model)."""


def render(problems: tuple[Problem, ...]) -> str:
    """One problem: its message. Several: a count, then one line each."""
    if len(problems) == 1:
        return problems[0].message
    return f"{len(problems)} problems in the config:\n" + "\n".join(f"  - {p.message}" for p in problems)


_collected: contextvars.ContextVar[Optional[list[Problem]]] = contextvars.ContextVar("collected", default=None)


def require(ok: bool, key: Optional[str], message: str, fix: Optional[dict[str, str]] = None) -> bool:
    """A check inside validation: report `message` unless `ok`. Inside `collecting()` the problem is
    kept and validation goes on; outside it, ConfigError is raised at once. Returns `ok`."""
    if not ok:
        report(Problem(key, message, dict(fix or {})))
    return ok


def report(problem: Problem) -> None:
    collected = _collected.get()
    if collected is None:
        raise ConfigError([problem])
    collected.append(problem)


@contextlib.contextmanager
def reporting() -> Iterator[None]:
    """Inside validation, a check that raises ConfigError reports its problems instead of stopping."""
    try:
        yield
    except ConfigError as exc:
        for problem in exc.problems:
            report(problem)


@contextlib.contextmanager
def collecting() -> Iterator[list[Problem]]:
    """Collect every problem reported inside; raise one ConfigError holding them all at the end."""
    problems: list[Problem] = []
    token = _collected.set(problems)
    try:
        yield problems
    finally:
        _collected.reset(token)
    if problems:
        unique = {(p.key, p.message): p for p in problems}  # a check reached twice reports once
        raise ConfigError(unique.values())


def closest(word: str, choices: Iterable[str]) -> str:
    """' Did you mean 'x'?' for the closest choice, or '' when nothing is close."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" Did you mean '{match[0]}'?" if match else ""
