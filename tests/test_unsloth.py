"""The real Unsloth path, end to end on CPU (Unsloth 2026.10.9's own CPU mode).

Runs in the second environment (`make test-unsloth`, part of `make test`), where unsloth is
installed; skipped where it is not.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from conftest import PAIRS, QUICK, Background, complete, losses, read_run, weights

pytestmark = [
    pytest.mark.unsloth,
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("unsloth") is None, reason="unsloth is not installed here"),
]


def train(cli, tmp_path, *args: str, extra_env=None):
    out = tmp_path / "run"
    return cli(*QUICK, f"output_dir={out}", "accel=unsloth", *args, extra_env=extra_env), out


@pytest.mark.parametrize("quant", ["none", "int4"])
@pytest.mark.parametrize("model_type", ["llama", "mistral", "gemma2", "qwen2"])
def test_unsloth_trains_supported_types(cli, tmp_path, model_type, quant):
    result, out = train(cli, tmp_path, f"model.name=tiny:{model_type}", f"quant={quant}")
    assert result.returncode == 0, result.output[-3000:]
    assert "continuing without it" not in result.output
    # Unsloth warns when transformers/trl/peft were imported before it; the runner must not.
    assert "should be imported before" not in result.output
    run = read_run(out)
    assert run["accelerator"] == {"requested": "unsloth", "used": "unsloth", "reason": None,
                                  "unsloth_version": "2026.10.9"}  # fmt: skip
    assert run["loss"]["train_last"] == run["loss"]["train_last"]  # finite, not NaN
    assert run["versions"]["unsloth"] == "2026.10.9"
    if model_type != "llama":
        return  # the reload below is per quantization, not per architecture (it costs a process)
    # the adapter loads with plain PEFT, in a process that never imports Unsloth
    check = (
        "import sys, torch; from transformers import AutoModelForCausalLM; from peft import PeftModel\n"
        f"m = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained({run['model']['path']!r}), "
        f"{str(out / 'adapter')!r})\n"
        "ids = torch.tensor([[1, 5, 9, 12]]); assert torch.isfinite(m(input_ids=ids).logits).all()\n"
        "assert 'unsloth' not in sys.modules"
    )
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_checkpoint_sigterm_and_resume_on_the_unsloth_path_are_exact(cli, env, tmp_path):
    """Unsloth's model and trainer patches keep the HF checkpoint format: a run stopped by SIGTERM
    after a checkpoint resumes to the uninterrupted run's losses and adapter, bit for bit."""
    import signal

    args = ["experiment=quickstart", "accel=unsloth", "trainer.max_steps=6", "trainer.logging_steps=1",
            "data.max_samples=32", "model.max_seq_length=256", "trainer.batch_size=4",
            "trainer.save_steps=2"]  # fmt: skip
    whole = tmp_path / "whole"
    result = cli(*args, f"output_dir={whole}")
    assert result.returncode == 0, result.output[-3000:]
    out = tmp_path / "stopped"
    run = Background(env, tmp_path, *args, f"output_dir={out}")
    run.wait_for(lambda: complete(out, 2), "a checkpoint at step 2")
    run.send(signal.SIGTERM)
    assert run.finish() == 128 + signal.SIGTERM, run.output[-3000:]
    stopped = read_run(out)["steps"]
    assert read_run(out)["status"] == "interrupted" and complete(out, stopped)
    resumed = cli(*args, f"output_dir={out}", "resume=true")
    assert resumed.returncode == 0, resumed.output[-3000:]
    assert "should be imported before" not in resumed.output
    run_record = read_run(out)
    assert run_record["accelerator"]["used"] == "unsloth" and len(run_record["segments"]) == 2
    ours, theirs = losses(out), losses(whole)
    assert sorted(ours) == sorted(theirs) == list(range(1, 7))
    largest = max(abs(ours[s] - theirs[s]) for s in theirs if s > stopped)
    print(f"\nUnsloth: largest per-step loss difference after the resume at step {stopped}: {largest:.3g}")
    assert largest <= 1e-5 and weights(out) == weights(whole)


def test_int8_on_cpu_falls_back_with_the_reason(cli, tmp_path):
    result, out = train(cli, tmp_path, "quant=int8")
    assert result.returncode == 0, result.output[-3000:]
    run = read_run(out)
    assert run["accelerator"]["used"] == "none"
    assert "int8 is not supported by Unsloth's CPU mode" in run["accelerator"]["reason"]


def test_import_failure_falls_back_with_the_first_line(cli, tmp_path):
    result, out = train(cli, tmp_path, extra_env={"UNSLOTH_DISABLE_CPU_FALLBACK": "1"})
    assert result.returncode == 0, result.output[-3000:]
    warnings = [line for line in result.stderr.splitlines() if "continuing without it" in line]
    assert len(warnings) == 1 and "failed to import: NotImplementedError" in warnings[0]
    assert read_run(out)["accelerator"]["used"] == "none"


def test_full_finetuning_through_unsloth(cli, tmp_path):
    result, out = train(cli, tmp_path, "peft=none", "trainer.learning_rate=1e-4")
    assert result.returncode == 0, result.output[-3000:]
    run = read_run(out)
    assert run["accelerator"]["used"] == "unsloth" and run["peft"] == "full"
    assert (out / "model" / "config.json").exists()


def test_unsupported_type_does_not_import_unsloth(cli, tmp_path):
    result, out = train(cli, tmp_path, "model.name=tiny:phi3")
    assert result.returncode == 0, result.output[-3000:]
    assert "model type 'phi3' is not supported" in read_run(out)["accelerator"]["reason"]
    assert read_run(out)["versions"]["unsloth"] == "2026.10.9"  # installed, yet never imported:
    assert "no GPU found, training on CPU" not in result.output  # Unsloth's import banner


@pytest.mark.parametrize("name", ["chatml", "llama3", "mistral", "gemma", "qwen2.5"])
def test_sharegpt_mapping_unsloth_and_runner_give_the_same_token_ids(cache_dir, tmp_path, name):
    import json

    import unsloth  # noqa: F401  (the Unsloth road needs it imported)
    from transformers import AutoTokenizer
    from unsloth.chat_templates import get_chat_template

    from aitraining import chat_templates, tiny, unsloth_accel
    from aitraining.config import Config, DataConfig, ModelConfig
    from aitraining.data import load_examples
    from aitraining.data.encode import prepare
    from aitraining.trainers.sft import SFTTrainerConfig

    rows = json.loads(PAIRS.read_text())[:20]
    path = tmp_path / "sharegpt.json"
    path.write_text(json.dumps([{"conversations": [*r["conversations"], r["chosen"]]} for r in rows]))
    tokenizer_path = tiny.ensure_tiny("tiny:llama")
    # The template as Unsloth installs it for `name` (placeholders filled), without the mapping.
    plain = get_chat_template(AutoTokenizer.from_pretrained(tokenizer_path), chat_template=name, map_eos_token=False)
    unsloth_template = tmp_path / "unsloth.jinja"
    unsloth_template.write_text(plain.chat_template)

    def token_ids(chat_template: str, unsloth_used: bool):
        cfg = Config(
            model=ModelConfig(name="tiny:llama", chat_template=chat_template),
            trainer=SFTTrainerConfig(response_only_loss=False),
            data=DataConfig(path=str(path), use_sharegpt_mapping=True),
        )
        examples = load_examples(cfg.data)
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
        mapped = unsloth_accel.sharegpt_template(tokenizer, cfg, examples.chat_format) if unsloth_used else None
        template = mapped or chat_templates.setup(tokenizer, cfg, examples.format)
        assert template.renders_sharegpt is unsloth_used
        return prepare(examples, tokenizer, cfg, template).train["input_ids"]

    through_unsloth = token_ids(name, unsloth_used=True)  # get_chat_template(..., mapping=...)
    through_runner = token_ids(str(unsloth_template), unsloth_used=False)  # same template, own mapping
    assert through_unsloth == through_runner


def test_sharegpt_mapping_trains_through_unsloth(cli, tmp_path):
    import json

    rows = json.loads(PAIRS.read_text())[:32]
    path = tmp_path / "sharegpt.json"
    path.write_text(json.dumps([{"conversations": [*r["conversations"], r["chosen"]]} for r in rows]))
    result, out = train(cli, tmp_path, f"data.path={path}", "data.format=sharegpt", "data.use_sharegpt_mapping=true",
                        "model.chat_template=chatml")  # fmt: skip
    assert result.returncode == 0, result.output[-3000:]
    run = read_run(out)
    assert run["accelerator"]["used"] == "unsloth"
    assert run["data"]["chat_template"] == "unsloth:chatml (ShareGPT mapping)"


def test_sharegpt_mapping_with_tool_turns_trains_through_the_templates_tool_support(cli, tmp_path):
    """Unsloth's get_chat_template(mapping=...) maps roles and keys only (no tool roles, no tools): tool
    data asked onto that road is converted to messages with tool calls instead, and a warning says why."""
    from test_chat_data import GLAIVE

    result, out = train(cli, tmp_path, f"data.path={GLAIVE}", "data.use_sharegpt_mapping=true",
                        "model.chat_template=qwen2.5", "model.max_seq_length=2048", "trainer.max_steps=2",
                        "trainer.batch_size=2", "data.max_samples=8")  # fmt: skip
    assert result.returncode == 0, result.output[-3000:]
    assert "cannot render; they are converted to messages with tool calls" in result.output
    run = read_run(out)
    assert run["accelerator"]["used"] == "unsloth"
    assert run["data"]["format"] == "messages" and run["data"]["chat_template"] == "built-in qwen2.5"


def test_chat_and_samples_of_an_unsloth_run_use_its_fast_inference(cli, env, tmp_path):
    result, out = train(cli, tmp_path, "trainer.samples=1", "trainer.sample_max_new_tokens=4")
    assert result.returncode == 0, result.output[-3000:]
    assert read_run(out)["samples"] == "samples.md" and "**Base model**" in (out / "samples.md").read_text()
    done = subprocess.run([sys.executable, "-m", "aitraining.cli", "chat", str(out), "--temperature", "0",
                           "--max-new-tokens", "4"], input="Name a colour.\nName a fruit.\n", capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "adapter/ with Unsloth's fast inference" in done.stderr
    assert done.stdout.count("\n") == 2
