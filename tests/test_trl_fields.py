"""The static field lists that check trainer.args (without importing TRL) match the installed TRL."""

from __future__ import annotations

import os

from aitraining.trainers.registry import TRAINERS, trl_fields, trl_version


def test_field_lists_match_the_installed_trl():
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    import dataclasses

    import trl

    from aitraining.trainers.base import load

    hint = "run `python scripts/gen_trl_fields.py` after changing the TRL version"
    assert trl_version() == trl.__version__, hint
    for spec in TRAINERS.values():
        config_class = load(spec.trl_config)
        names = {f.name for f in dataclasses.fields(config_class) if not f.name.startswith("_")}
        assert names == trl_fields(spec.trl_config), hint
