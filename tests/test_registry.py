"""The trainer registry: one record per trainer kind, one option file each holding only differences,
and every kind-specific fact (data shape, Unsloth, TRL classes, owned keys) read from the record."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from aitraining.choices import DataFormat, TrainerKind
from aitraining.compose import compose
from aitraining.conf_files import CONF_DIR
from aitraining.data import Examples, check_trainer
from aitraining.errors import ConfigError, DataError
from aitraining.trainers.registry import TRAINERS, kinds_for, trl_fields


def test_every_trainer_kind_has_one_record_and_one_option_file():
    assert set(TRAINERS) == set(TrainerKind)
    assert {p.stem for p in (CONF_DIR / "trainer").glob("*.yaml")} == {k.value for k in TrainerKind}
    for kind, spec in TRAINERS.items():
        assert spec.kind is kind and spec.schema().kind is kind
        assert spec.data_formats and spec.summary and spec.data_needs
        assert spec.trl_config in {c for s in TRAINERS.values() for c in [s.trl_config]} and trl_fields(spec.trl_config)


@pytest.mark.parametrize("kind", list(TrainerKind))
def test_option_files_hold_only_what_differs_from_the_schema(kind):
    text = yaml.safe_load((CONF_DIR / "trainer" / f"{kind.value}.yaml").read_text())
    assert text["defaults"] == [f"/schema/trainer/{kind.value}@_here_", "_self_"]
    defaults = {f.name: f.default for f in dataclasses.fields(TRAINERS[kind].schema)}
    restated = {k: v for k, v in text.items() if k != "defaults" and defaults.get(k) == v}
    assert not restated, f"conf/trainer/{kind.value}.yaml restates the schema's defaults: {restated}"
    cfg = compose([f"trainer={kind.value}"])
    assert type(cfg.trainer) is TRAINERS[kind].schema


def test_a_field_of_another_kind_names_the_kinds_it_applies_to():
    with pytest.raises(ConfigError) as caught:
        compose(["trainer=sft", "trainer.ref_model=x"])
    assert caught.value.key == "trainer.ref_model" and "applies to trainer=dpo only, not to trainer=sft" in str(
        caught.value
    )


def test_trainer_kind_cannot_be_swapped_under_its_schema():
    with pytest.raises(ConfigError, match="choose a trainer with trainer=dpo"):
        compose(["trainer=sft", "trainer.kind=dpo"])


def test_owned_keys_come_from_the_record():
    with pytest.raises(ConfigError, match=r"trainer.args.beta is set by aitraining: set trainer.beta instead"):
        compose(["trainer=dpo", "+trainer.args.beta=0.2"])
    with pytest.raises(ConfigError, match="set trainer.packing instead"):
        compose(["trainer=sft", "+trainer.args.packing=true"])


@pytest.mark.parametrize("kind", list(TrainerKind))
def test_data_shape_is_checked_against_the_record(kind):
    spec = TRAINERS[kind]
    for fmt in DataFormat:
        if fmt is DataFormat.auto:
            continue
        examples = Examples(fmt, [{}], None, ["data.json"], ["x"])
        if fmt in spec.data_formats:
            check_trainer(kind, examples)
        else:
            with pytest.raises(DataError, match=f"trainer={kind.value} needs"):
                check_trainer(kind, examples)
    assert all(kind in kinds_for(fmt) for fmt in spec.data_formats)


def test_unsloth_applies_to_the_kinds_the_product_page_names():
    assert {k.value for k, s in TRAINERS.items() if s.unsloth} == {"sft", "default"}


def test_readme_trainer_table_is_generated_from_the_records():
    from aitraining.trainers.table import TABLE_START, markdown_table, with_table

    readme = (CONF_DIR.parent.parent / "README.md").read_text()
    assert with_table(readme) == readme, "run: python -m aitraining.trainers.table README.md"
    assert TABLE_START in readme and markdown_table() in readme
    for kind, spec in TRAINERS.items():
        assert spec.example.startswith("python -m aitraining ") and spec.logs, kind
        assert kind is TrainerKind.sft or f"trainer={kind.value}" in spec.example, spec.example


@pytest.mark.parametrize("kind", list(TrainerKind))
def test_each_example_command_composes(kind, tmp_path, monkeypatch):
    import re
    import shlex

    monkeypatch.chdir(tmp_path)
    overrides = [a for a in shlex.split(TRAINERS[kind].example)[3:] if "=" in a]
    for file, function in re.findall(r"([\w/]+\.py):(\w+)", TRAINERS[kind].example):  # the user's reward file
        (tmp_path / file).write_text(f"def {function}(completions, **kwargs):\n    return [0.0] * len(completions)\n")
    assert type(compose(overrides).trainer) is TRAINERS[kind].schema
