"""Errors the runner reports to the user as one clear message (no traceback).

Each carries the whole message: which key or file (and line), what was wrong, what is allowed.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class AitrainingError(Exception):
    """Base class: an error the user can fix; printed without a traceback."""


class ConfigError(AitrainingError):
    """A config key holds a value that is not allowed."""


class DataError(AitrainingError):
    """The training data cannot be read or does not fit its format."""


class TrainingError(AitrainingError):
    """Training ran but its result must not be trusted (e.g. the loss became NaN)."""


def closest(word: str, choices: Iterable[str]) -> str:
    """' Did you mean 'x'?' for the closest choice, or '' when nothing is close."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" Did you mean '{match[0]}'?" if match else ""
