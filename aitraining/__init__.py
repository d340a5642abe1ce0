"""aitraining: a declarative LLM fine-tuning runner (Hydra config -> TRL trainer).

Importing this package is cheap: it imports neither torch nor transformers. The existing tool's
Python API (`from aitraining import LLMTrainingParams, AutoTrainProject`) loads on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["AutoTrainProject", "LLMTrainingParams", "TrainingJob", "__version__"]

if TYPE_CHECKING:
    from aitraining.compat.api import AutoTrainProject, LLMTrainingParams, TrainingJob

_LAZY = {
    "AutoTrainProject": "aitraining.compat.api",
    "LLMTrainingParams": "aitraining.compat.api",
    "TrainingJob": "aitraining.compat.api",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'aitraining' has no attribute {name!r}")
