"""Regenerate aitraining/trainers/trl_fields.json from the installed TRL (run after bumping trl).

    python scripts/gen_trl_fields.py

The lists let the config check `trainer.args` keys without importing TRL (and so torch): one list
per TRL config class that a record in aitraining/trainers/registry.py names.
tests/test_trl_fields.py fails when they drift from the installed TRL.
"""

import dataclasses
import json
import os

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

import trl

from aitraining.trainers.base import load
from aitraining.trainers.registry import TRAINERS, TRL_FIELDS_FILE


def fields(config_class: type) -> list[str]:
    return sorted(f.name for f in dataclasses.fields(config_class) if not f.name.startswith("_"))


if __name__ == "__main__":
    configs = {spec.trl_config: fields(load(spec.trl_config)) for spec in TRAINERS.values()}
    data = {"trl_version": trl.__version__, "configs": dict(sorted(configs.items()))}
    TRL_FIELDS_FILE.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {TRL_FIELDS_FILE} (trl {trl.__version__}, {len(configs)} config classes)")
