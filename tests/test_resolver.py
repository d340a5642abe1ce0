"""The accelerator decision table, with no GPU and no Unsloth needed (the machine's facts are
passed in as callables; a call that must not happen fails the test)."""

from __future__ import annotations

import logging

import pytest

from aitraining.config import Accel, AccelConfig, Config, DistKind, ModelConfig, Quant, TrainerKind
from aitraining.resolver import Environment, Imported, apply, decide, resolve
from aitraining.trainers.registry import TRAINERS

SUPPORTED = ["llama", "mistral", "gemma", "gemma2", "qwen2"]


def never():
    raise AssertionError("the resolver asked for something it should not need")


WORKS = Imported(version="2026.10.9")


def env(installed=True, gpu=True, imported=WORKS):
    return Environment(lambda: installed, lambda: gpu, lambda: imported)


def decide_table(
    model_type="llama",
    trainer=TrainerKind.sft,
    quant=Quant.none,
    environment=None,
    requested=Accel.unsloth,
    dist=DistKind.none,
):
    return resolve(requested, trainer, model_type, SUPPORTED, quant, environment or env(), dist)


def test_accel_none_asks_nothing():
    decision = decide_table(requested=Accel.none, environment=Environment(never, never, never))
    assert decision.used is Accel.none and decision.reason is None and not decision.fell_back


@pytest.mark.parametrize("model_type", SUPPORTED)
def test_supported_model_types_use_unsloth(model_type):
    decision = decide_table(model_type=model_type)
    assert decision.used is Accel.unsloth and decision.reason is None
    assert decision.unsloth_version == "2026.10.9"


@pytest.mark.parametrize("trainer", [TrainerKind.sft, TrainerKind.default])
def test_both_sft_trainers_use_unsloth(trainer):
    assert decide_table(trainer=trainer).used is Accel.unsloth


@pytest.mark.parametrize("model_type", ["phi3", "gpt2", "gemma3", "llama4"])
def test_unsupported_model_type_falls_back_without_importing(model_type):
    decision = decide_table(model_type=model_type, environment=Environment(never, never, never))
    assert decision.used is Accel.none
    assert f"model type '{model_type}' is not supported" in decision.reason
    assert "llama, mistral, gemma, gemma2, qwen2" in decision.reason


def test_gemma2_is_not_matched_exactly_against_gemma():
    # The existing tool's defect: exact matching made gemma2 (Gemma 2) fall back.
    assert decide_table(model_type="gemma2").used is Accel.unsloth


def test_not_installed():
    decision = decide_table(environment=Environment(lambda: False, never, never))
    assert decision.used is Accel.none and "not installed" in decision.reason


def test_import_failure_reports_first_line():
    imported = Imported(error="NotImplementedError: Unsloth cannot find any torch accelerator? You need a GPU.")
    decision = decide_table(environment=env(imported=imported))
    assert decision.used is Accel.none
    assert decision.reason == f"Unsloth is installed but failed to import: {imported.error}"


@pytest.mark.parametrize("dist", list(DistKind))
@pytest.mark.parametrize("quant", [Quant.none, Quant.int4])
def test_unsloth_trains_under_every_strategy_but_qlora_under_zero3(dist, quant):
    """unsloth 2026.10.9: DDP (models/_ddp_defaults.py), FSDP2 with QLoRA (fsdp2_launch.py,
    models/fsdp2_qlora.py), DeepSpeed ZeRO (models/loader_utils.py); 4-bit storage for sharding only
    under FSDP2 (models/llama.py:4022-4025), so QLoRA under ZeRO-3 falls back, with that reason,
    before anything is imported."""
    if dist is DistKind.zero3 and quant is Quant.int4:
        decision = decide_table(quant=quant, dist=dist, environment=Environment(never, never, never))
        assert decision.used is Accel.none
        assert "zero3" in decision.reason and "bnb_4bit_quant_storage" in decision.reason
    else:
        assert decide_table(quant=quant, dist=dist).used is Accel.unsloth


def test_int8_on_cpu_falls_back_before_importing():
    decision = decide_table(quant=Quant.int8, environment=Environment(lambda: True, lambda: False, never))
    assert decision.used is Accel.none and "int8" in decision.reason and "CPU mode" in decision.reason


@pytest.mark.parametrize("quant", [Quant.none, Quant.int4])
def test_cpu_mode_allows_none_and_int4(quant):
    assert decide_table(quant=quant, environment=env(gpu=False)).used is Accel.unsloth


def test_int8_with_gpu_uses_unsloth():
    assert decide_table(quant=Quant.int8, environment=env(gpu=True)).used is Accel.unsloth


def config(accel=Accel.unsloth, trainer=TrainerKind.sft) -> Config:
    return Config(
        model=ModelConfig(name="tiny:llama"),
        trainer=TRAINERS[trainer].schema(),
        accel=AccelConfig(kind=accel, supported_model_types=SUPPORTED if accel is Accel.unsloth else []),
    )


def test_fallback_logs_one_warning_with_the_reason_and_rewrites_config(caplog):
    cfg = config()
    with caplog.at_level(logging.WARNING):
        decision = decide(cfg, "llama", Environment(lambda: False, never, never))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "continuing without it" in message and "not installed" in message
    assert apply(cfg, decision).accel.kind is Accel.none
    assert cfg.accel.kind is Accel.unsloth  # the original is untouched
    assert decision.as_dict() == {
        "requested": "unsloth",
        "used": "none",
        "reason": "Unsloth is not installed (pip install unsloth)",
        "unsloth_version": None,
    }


def test_accel_none_logs_nothing(caplog):
    with caplog.at_level(logging.DEBUG):
        decision = decide(config(accel=Accel.none), "llama", Environment(never, never, never))
    assert decision.used is Accel.none
    assert not [r for r in caplog.records if "nsloth" in r.getMessage()]


def test_used_unsloth_keeps_config():
    cfg = config()
    decision = decide(cfg, "llama", env())
    assert apply(cfg, decision) is cfg


@pytest.mark.parametrize("trainer", [TrainerKind.dpo, TrainerKind.orpo, TrainerKind.simpo, TrainerKind.kto,
                                     TrainerKind.grpo, TrainerKind.reward])  # fmt: skip
def test_other_trainers_say_not_applied_without_importing(trainer):
    decision = decide_table(trainer=trainer, environment=Environment(never, never, never))
    assert decision.used is Accel.none and decision.not_applied
    assert decision.reason == (
        f"Unsloth not applied: trainer '{trainer.value}' is not supported (Unsloth applies to sft and default only)"
    )
