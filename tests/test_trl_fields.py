"""The static field lists that check trainer.args (without importing TRL) match the installed TRL."""

from __future__ import annotations

import dataclasses
import os

from aitraining import trl_fields


def test_field_lists_match_the_installed_trl():
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    import trl
    from trl import DPOConfig, SFTConfig
    from trl.experimental.orpo import ORPOConfig

    hint = "run `python scripts/gen_trl_fields.py` after changing the TRL version"
    assert trl_fields.TRL_VERSION == trl.__version__, hint
    for config_class, names in ((SFTConfig, trl_fields.SFT_CONFIG_FIELDS), (DPOConfig, trl_fields.DPO_CONFIG_FIELDS),
                                (ORPOConfig, trl_fields.ORPO_CONFIG_FIELDS)):  # fmt: skip
        assert {f.name for f in dataclasses.fields(config_class) if not f.name.startswith("_")} == names, hint
