"""LoRA variants (DoRA, rsLoRA, init_lora_weights, modules_to_save) and Liger kernels: validated early,
passed to PEFT (and to Unsloth's get_peft_model), recorded in run.json, tested on the tiny model."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from aitraining.compose import compose
from aitraining.errors import ConfigError
from aitraining.loading import liger_problem
from conftest import QUICK, read_run

# --------------------------------------------------------------------------- validation (no model)


def test_variants_compose_and_reach_peft_arguments():
    from aitraining.adapters import lora_kwargs

    cfg = compose(["peft.use_dora=true", "peft.use_rslora=true", "peft.init_lora_weights=gaussian",
                   "+peft.modules_to_save=[lm_head]"])  # fmt: skip
    kwargs = lora_kwargs(cfg)
    assert kwargs["use_dora"] is True and kwargs["use_rslora"] is True
    assert kwargs["init_lora_weights"] == "gaussian" and kwargs["modules_to_save"] == ["lm_head"]
    assert lora_kwargs(compose([]))["init_lora_weights"] is True  # PEFT's default


@pytest.mark.parametrize(
    "overrides,key,needle",
    [
        (["peft.init_lora_weights=svd"], "peft.init_lora_weights",
         "not one of default, gaussian, orthogonal, pissa, olora"),
        (["peft.init_lora_weights=pissa", "peft.use_dora=true"], "peft.use_dora",
         "peft.use_dora=true with peft.init_lora_weights=pissa: the pissa adapter is saved converted"),
        (["peft.init_lora_weights=pissa", "quant=int4"], "peft.init_lora_weights",
         "peft.init_lora_weights=pissa needs full-precision base weights (quant=int4)"),
        (["peft.init_lora_weights=orthogonal", "quant=int8"], "peft.init_lora_weights", "needs full-precision"),
        (["+peft.modules_to_save=['']"], "peft.modules_to_save", "peft.modules_to_save must be a list of module names"),
        (["model.liger_kernel=true", "accel=unsloth"], "model.liger_kernel", "Unsloth brings its own fused kernels"),
        (["peft.use_dora=maybe"], "peft.use_dora", "peft.use_dora=maybe: expected true or false"),
    ],
)  # fmt: skip
def test_variants_are_validated(overrides, key, needle):
    with pytest.raises(ConfigError) as caught:
        compose(overrides)
    assert caught.value.key == key and needle in str(caught.value)


def test_dora_with_quantization_and_olora_without_it_are_fine():
    assert compose(["peft.use_dora=true", "quant=int4"]).peft.use_dora
    assert compose(["peft.init_lora_weights=olora"]).peft.init_lora_weights.value == "olora"
    assert compose(["peft=none", "peft.init_lora_weights=pissa", "quant=none"])  # full fine-tuning ignores LoRA keys


@pytest.mark.parametrize(
    "gpu,installed,needle",
    [(False, False, "needs a CUDA GPU"), (False, True, "needs a CUDA GPU"),
     (True, False, "pip install 'aitraining[liger]'"), (True, True, None)],
)  # fmt: skip
def test_liger_needs_a_gpu_and_the_package(gpu, installed, needle):
    problem = liger_problem(gpu, installed)
    assert problem is None if needle is None else needle in problem


def test_liger_on_this_machine_is_one_error_before_the_weights_load(cli, tmp_path):
    """The real check on this CPU machine (no GPU, no liger-kernel); the GPU arm is in scripts/gpu_check.sh."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is here: the GPU arm runs in scripts/gpu_check.sh")
    result = cli(*QUICK, "model.liger_kernel=true", f"output_dir={tmp_path / 'run'}")
    assert result.returncode != 0 and "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
    assert errors == [
        "ERROR: model.liger_kernel=true needs a CUDA GPU: Liger's kernels are Triton GPU kernels, and no GPU was "
        "found. Set model.liger_kernel=false."
    ]
    assert not (tmp_path / "run" / "run.json").exists()  # nothing trained, nothing recorded as a run


# --------------------------------------------------------------------------- PiSSA / OLoRA saved converted


@pytest.mark.parametrize("init", ["pissa", "olora"])
def test_converted_adapter_reproduces_the_trained_model_on_the_unchanged_base(cache_dir, tmp_path, init):
    """adapters.save_initial before training, adapters.save after: the plain LoRA it writes, loaded on the
    base model as it ships, gives the outputs of the trained PiSSA/OLoRA model (whose base was changed)."""
    import torch
    from peft import PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    from aitraining import adapters, tiny
    from aitraining.loading import lora_config

    cfg = compose(["experiment=quickstart", f"peft.init_lora_weights={init}", "peft.use_rslora=true"])
    path = tiny.ensure_tiny("tiny:llama")
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(path), lora_config(cfg, ["q_proj", "v_proj"]))
    initial = adapters.save_initial(model, cfg, tmp_path)
    assert initial is not None and initial.is_dir()
    with torch.no_grad():  # "training": move every trainable weight
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    ids = torch.tensor([[3, 50, 97, 200, 411, 7]])
    with torch.no_grad():
        trained = model.eval()(input_ids=ids).logits  # eval: no LoRA dropout
    adapters.save(model, tmp_path / "adapter", initial)
    assert not initial.exists()  # the initial copy is only needed for the conversion
    saved = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert saved["r"] == 2 * cfg.peft.r and saved["init_lora_weights"] is True
    reloaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(path), tmp_path / "adapter")
    with torch.no_grad():
        assert torch.allclose(reloaded(input_ids=ids).logits, trained, atol=1e-4)
        # and a plain save (what the adapter would be without the conversion) would not be
        assert not torch.allclose(AutoModelForCausalLM.from_pretrained(path)(input_ids=ids).logits, trained, atol=1e-2)


# --------------------------------------------------------------------------- end to end


def load_adapter_check(run: dict, adapter: str, expect: str) -> str:
    """Python that loads the adapter on the base in a fresh process and asserts `expect` about it."""
    return (
        "import json, torch; from transformers import AutoModelForCausalLM; from peft import PeftModel\n"
        f"m = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained({run['model']['path']!r}), {adapter!r})\n"
        "names = [n for n, _ in m.named_parameters()]\n"
        f"config = json.load(open({adapter + '/adapter_config.json'!r}))\n"
        "assert torch.isfinite(m(input_ids=torch.tensor([[1, 5, 9, 12]])).logits).all()\n"
        f"assert {expect}, (names[:8], config)\n"
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides,recorded",
    [
        (["peft.use_dora=true", "peft.use_rslora=true", "peft.init_lora_weights=gaussian",
          "+peft.modules_to_save=[lm_head]"],
         {"use_dora": True, "use_rslora": True, "init_lora_weights": "gaussian", "modules_to_save": ["lm_head"],
          "saved_as": None}),
        (["peft.init_lora_weights=pissa"],
         {"init_lora_weights": "pissa",
          "saved_as": "plain LoRA r=32 converted from pissa (loads on the unchanged base)"}),
    ],
    ids=["dora-rslora-gaussian-modules", "pissa"],
)  # fmt: skip
def test_variants_train_are_recorded_and_load(cli, tmp_path, overrides, recorded):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = tmp_path / "run"
    result = cli(*QUICK, "trainer.max_steps=2", *overrides, f"output_dir={out}")
    assert result.returncode == 0, result.output[-3000:]
    run = read_run(out)
    assert {k: run["lora"][k] for k in recorded} == recorded
    assert not (out / "adapter_init").exists()
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(run["model"]["path"]), out / "adapter")
    names = [n for n, _ in model.named_parameters()]
    config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert torch.isfinite(model(input_ids=torch.tensor([[1, 5, 9, 12]])).logits).all()
    if "use_dora" in recorded:
        assert run["peft"].startswith("DoRA r=16 (rsLoRA, init gaussian) on ")
        assert config["use_dora"] and config["use_rslora"] and config["init_lora_weights"] == "gaussian"
        assert any("lora_magnitude_vector" in n for n in names) and any("lm_head.modules_to_save" in n for n in names)
    else:
        assert config["r"] == 32 and config["init_lora_weights"] is True  # loads without redoing the SVD


def test_a_module_to_save_the_model_lacks_is_named(cli, tmp_path):
    result = cli(*QUICK, "+peft.modules_to_save=[score_head]", f"output_dir={tmp_path / 'run'}")
    assert result.returncode != 0 and "Traceback" not in result.output
    assert "peft.modules_to_save: the model has no module named ['score_head']. Its modules include:" in result.stderr


# --------------------------------------------------------------------------- through Unsloth's get_peft_model

needs_unsloth = [
    pytest.mark.unsloth,
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("unsloth") is None, reason="unsloth is not installed here"),
]


@pytest.mark.parametrize(
    "overrides,expect",
    [
        (["peft.use_dora=true", "peft.use_rslora=true", "+peft.modules_to_save=[lm_head]"],
         "config['use_dora'] and config['use_rslora'] and any('lm_head.modules_to_save' in n for n in names)"),
        (["peft.init_lora_weights=pissa"], "config['r'] == 32"),
    ],
    ids=["dora-rslora-modules", "pissa"],
)  # fmt: skip
@pytest.mark.parametrize("_", [pytest.param(None, marks=needs_unsloth, id="unsloth")])
def test_variants_through_unsloth(cli, tmp_path, overrides, expect, _):
    out = tmp_path / "run"
    result = cli(*QUICK, "accel=unsloth", "trainer.max_steps=2", *overrides, f"output_dir={out}")
    assert result.returncode == 0, result.output[-3000:]
    run = read_run(out)
    assert run["accelerator"]["used"] == "unsloth"
    done = subprocess.run([sys.executable, "-c", load_adapter_check(run, str(out / "adapter"), expect)],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
