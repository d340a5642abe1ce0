"""After training: samples.md, the tracker's event file, `aitraining chat` through a pipe, `aitraining
export` (merge with logits checked, GGUF read back, the Hub up to the network boundary).

One tiny run serves every test here: a tiny llama with a byte-fallback tokenizer (the shape llama.cpp's
converter reads), chat data (so the chat template is used and carried into the GGUF file),
logger=tensorboard, and two samples."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import pytest

from aitraining import tiny
from conftest import ALPACA, LLAMA_CPP, console_script, read_run, run_command

pytestmark = pytest.mark.slow

STEPS = 6
TOKEN = "hf_aitrainingTestToken0123456789"  # never to be written anywhere


def chat_data(path: Path) -> Path:
    rows = json.loads(ALPACA.read_text())[:48]
    with path.open("w") as handle:
        for row in rows:
            messages = [
                {"role": "user", "content": row["instruction"]},
                {"role": "assistant", "content": row["output"]},
            ]
            handle.write(json.dumps({"messages": messages}) + "\n")
    return path


@pytest.fixture(scope="module")
def trained(env, tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("after-training")
    model = tiny.build("llama", base / "tiny-llama-bf", tokenizer=tiny.build_byte_fallback_tokenizer())
    out = base / "run"
    overrides = [f"model.name={model}", "data=custom", f"data.path={chat_data(base / 'chat.jsonl')}",
                 "data.valid_size=0.1", f"trainer.max_steps={STEPS}", "trainer.logging_steps=2",
                 "trainer.learning_rate=5e-3", "trainer.batch_size=8", "trainer.gradient_checkpointing=false",
                 "model.max_seq_length=256", "logger=tensorboard", "trainer.samples=2",
                 "trainer.sample_max_new_tokens=8", "project_name=tiny-chat", f"output_dir={out}"]  # fmt: skip
    result = run_command([sys.executable, "-m", "aitraining", *overrides], base, env, None)
    assert result.returncode == 0, result.output[-3000:]
    return out


@pytest.fixture
def aitraining(env, tmp_path):
    def run(*args: str, stdin: str | None = None, extra_env: dict | None = None):
        import subprocess

        done = subprocess.run([*console_script(), *args], cwd=tmp_path, env={**env, **(extra_env or {})},
                              input=stdin, capture_output=True, text=True, timeout=600)  # fmt: skip
        return done

    return run


# --------------------------------------------------------------------------- the run's own outputs


def test_run_records_prompt_style_tracker_and_samples(trained):
    run = read_run(trained)
    assert run["prompt_style"] == "chat"
    assert run["logger"]["kind"] == "tensorboard" and run["logger"]["where"] == str(trained / "tensorboard")
    assert run["samples"] == "samples.md"
    text = (trained / "samples.md").read_text()
    assert f"## After training (step {STEPS})" in text
    assert text.count("### Prompt ") == 2 and "from the validation set" in text
    assert text.count("**Trained model**") == 2 and text.count("**Base model**") == 2
    assert "<|im_start|>user" in text  # the prompts went through the run's chat template


def test_tensorboard_event_file_holds_losses_parameters_and_run_folder(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = list((trained / "tensorboard").glob("events.out.tfevents.*"))
    assert files, list(trained.iterdir())
    events = EventAccumulator(str(trained / "tensorboard"), size_guidance={"tensors": 0, "scalars": 0}).Reload()
    losses = [e.value for e in events.Scalars("train/loss")]
    logged = [h["loss"] for h in json.loads((trained / "metrics.json").read_text()) if "loss" in h]
    assert losses == pytest.approx(logged, rel=1e-5) and len(losses) >= 3
    assert "eval/loss" in events.Tags()["scalars"]
    texts = {tag: events.Tensors(tag)[0].tensor_proto.string_val[0].decode() for tag in events.Tags()["tensors"]
             if tag.startswith("aitraining/")}  # fmt: skip
    assert "trainer.learning_rate: 0.005" in texts["aitraining/config/text_summary"]
    assert "accelerator.used: none" in texts["aitraining/config/text_summary"]
    assert texts["aitraining/run_dir/text_summary"] == str(trained)
    from tensorboard.plugins.hparams import plugin_data_pb2  # the HPARAMS tab

    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["accelerator.used"].string_value == "none" and hparams["trainer.learning_rate"].number_value == 0.005
    assert hparams["run_dir"].string_value == str(trained) and hparams["logger.kind"].string_value == "tensorboard"


# --------------------------------------------------------------------------- aitraining chat


def greedy_answers(run_dir: Path, prompts: list[str], max_new_tokens: int) -> list[str]:
    """What the adapter on the base answers, computed here with PEFT and the chat template directly."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = read_run(run_dir)
    tokenizer = AutoTokenizer.from_pretrained(run_dir / "adapter")
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(run["model"]["path"]), run_dir / "adapter")
    stops = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")]
    answers = []
    for prompt in prompts:
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)  # fmt: skip
        ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=stops)
        answers.append(tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True))
    return answers


def test_chat_answers_one_line_per_piped_prompt_and_exits_at_end_of_input(trained, aitraining):
    prompts = ["Name a colour.", "Give three tips for staying healthy."]
    result = aitraining("chat", str(trained), "--temperature", "0", "--max-new-tokens", "12",
                        stdin="\n".join(prompts) + "\n")  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.split("\n")
    assert lines[-1] == "" and len(lines) == len(prompts) + 1, result.stdout
    expected = [a.replace("\n", "\\n") for a in greedy_answers(trained, prompts, 12)]
    assert lines[:-1] == expected
    assert "Loaded tiny-llama-bf" not in result.stdout and "adapter/" in result.stderr
    assert "Traceback" not in result.stderr


def test_chat_refuses_a_folder_that_is_not_a_finished_run(aitraining, tmp_path):
    (tmp_path / "failed").mkdir()
    (tmp_path / "failed" / "run.json").write_text(json.dumps({"status": "failed", "error": "loss became nan"}))
    cases = [(tmp_path / "nothing", "no such folder"), (tmp_path, "not a run folder"),
             (tmp_path / "failed", "did not finish (run.json status: failed: loss became nan)")]  # fmt: skip
    for folder, needle in cases:
        result = aitraining("chat", str(folder), stdin="hi\n")
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR:")]
        assert len(errors) == 1 and needle in errors[0], result.stderr
    bad = aitraining("chat", str(tmp_path), "--temperature", "-1")
    assert bad.returncode == 2 and "--temperature -1.0: must be >= 0" in bad.stderr


# --------------------------------------------------------------------------- aitraining export --merge


def test_merge_writes_a_loadable_model_whose_logits_equal_base_plus_adapter(trained, aitraining):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    result = aitraining("export", str(trained), "--merge")
    assert result.returncode == 0, result.stderr[-2000:]
    merged = trained / "merged"
    names = {p.name for p in merged.iterdir()}
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
            "chat_template.jinja"} <= names, names  # fmt: skip
    run = read_run(trained)
    assert run["export"]["merged"] == "merged" and run["export"]["merged_into"] == f"{run['model']['name']} in float32"
    assert (trained / "adapter" / "adapter_model.safetensors").exists()  # the adapter stays
    tokenizer = AutoTokenizer.from_pretrained(merged)
    assert tokenizer.chat_template == AutoTokenizer.from_pretrained(trained / "adapter").chat_template
    ids = tokenizer(["### Instruction:\nName three colours.\n\n### Response:\n"], return_tensors="pt")
    plain = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(run["model"]["path"]), trained / "adapter")
    with torch.no_grad():
        expected = plain(**ids).logits
        got = AutoModelForCausalLM.from_pretrained(merged)(**ids).logits
        base = AutoModelForCausalLM.from_pretrained(run["model"]["path"])(**ids).logits
    assert (got - expected).abs().max().item() <= 1e-3
    assert (base - expected).abs().max().item() > 1e-3  # the adapter changed something: the check can fail

    again = aitraining("chat", str(trained), "--merged", "--temperature", "0", "--max-new-tokens", "6", stdin="Hi\n")
    assert again.returncode == 0 and "merged/" in again.stderr and again.stdout.count("\n") == 1, again.stderr


# --------------------------------------------------------------------------- aitraining export --push-to-hub


def test_push_to_hub_uploads_privately_with_a_card_and_writes_no_token(trained, monkeypatch, capsys):
    from huggingface_hub import HfApi

    from aitraining import export

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    commit = SimpleNamespace(commit_url="https://huggingface.co/me/tiny-chat/commit/abc123")
    with mock.patch.object(HfApi, "create_repo", return_value=SimpleNamespace(repo_id="me/tiny-chat")) as create, \
         mock.patch.object(HfApi, "upload_folder", return_value=commit) as upload, \
         mock.patch.object(HfApi, "upload_file", return_value=commit) as upload_file:  # fmt: skip
        export.main(["export", str(trained), "--push-to-hub", "tiny-chat"])
    create.assert_called_once_with("tiny-chat", private=True, exist_ok=True, repo_type="model")
    pushed = trained / ("merged" if (trained / "merged").is_dir() else "adapter")
    first = upload.call_args_list[0].kwargs
    assert first["repo_id"] == "me/tiny-chat" and Path(first["folder_path"]) == pushed
    card = upload_file.call_args.kwargs["path_or_fileobj"].decode()
    assert upload_file.call_args.kwargs["path_in_repo"] == "README.md"
    run = read_run(trained)
    facts = ["tiny-llama-bf", "sft", "LoRA r=16", "accelerator | none", f"over {STEPS} steps", "trl ", "eval loss",
             "python -m aitraining model.name=.../tiny-llama-bf", "logger=tensorboard", "chat.jsonl"]  # fmt: skip
    for fact in facts:
        assert fact in card, (fact, card)
    assert str(trained.parent) not in card  # local paths by name only
    assert run["export"]["hub_repo"] == "me/tiny-chat" and run["export"]["hub_url"] == commit.commit_url
    assert (trained / "model_card.md").read_text() == card
    for call in (*create.call_args_list, *upload.call_args_list, *upload_file.call_args_list):
        assert "token" not in call.kwargs  # huggingface_hub reads HF_TOKEN itself
    leaked = [p for p in trained.rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()]
    assert not leaked
    assert "me/tiny-chat" in capsys.readouterr().out


# --------------------------------------------------------------------------- aitraining export --gguf

HAS_BINDING = importlib.util.find_spec("llama_cpp") is not None


@pytest.mark.skipif(not (LLAMA_CPP / "convert_hf_to_gguf.py").exists(), reason="no llama.cpp converter: make setup")
def test_gguf_carries_the_chat_template_and_reads_back(trained, aitraining):
    from gguf import GGUFReader
    from transformers import AutoTokenizer

    types = "f16,q8_0" + (",q4_k_m" if HAS_BINDING else "")
    result = aitraining("export", str(trained), "--gguf", types, extra_env={"LLAMA_CPP_DIR": str(LLAMA_CPP)})
    assert result.returncode == 0, result.stderr[-3000:]
    run = read_run(trained)
    template = AutoTokenizer.from_pretrained(trained / "adapter").chat_template
    kinds = {"f16": "F16", "q8_0": "Q8_0", "q4_k_m": None}
    for quant in types.split(","):
        path = trained / run["export"]["gguf"][quant]
        assert path.name == f"tiny-chat-{quant}.gguf"
        reader = GGUFReader(path)
        assert reader.fields["general.architecture"].contents() == "llama"
        assert reader.fields["tokenizer.chat_template"].contents() == template
        tensor_types = {t.tensor_type.name for t in reader.tensors}
        assert kinds[quant] is None or kinds[quant] in tensor_types, tensor_types
    assert not list((trained / "gguf").glob(".*"))  # the intermediate f16 of q4_k_m is gone
    if HAS_BINDING:
        from llama_cpp import Llama

        llm = Llama(model_path=str(trained / run["export"]["gguf"]["q8_0"]), n_ctx=128, verbose=False)
        out = llm.create_chat_completion([{"role": "user", "content": "Name a colour."}], max_tokens=4, temperature=0)
        assert out["choices"][0]["message"]["role"] == "assistant" and out["usage"]["completion_tokens"] >= 1


def test_gguf_without_a_converter_is_one_error_before_anything_loads(trained, aitraining, tmp_path):
    result = aitraining("export", str(trained), "--gguf", "q8_0",
                        extra_env={"LLAMA_CPP_DIR": str(tmp_path), "AITRAINING_CACHE": str(tmp_path)})  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "python -m aitraining.export.llamacpp" in result.stderr and "LLAMA_CPP_DIR" in result.stderr
    assert "error" in read_run(trained)["export"] and "convert_hf_to_gguf.py" in read_run(trained)["export"]["error"]


# --------------------------------------------------------------------------- logger=wandb, offline, in a sweep


@pytest.mark.skipif(importlib.util.find_spec("wandb") is None, reason="wandb is not installed (aitraining[wandb])")
def test_wandb_offline_sweep_job_gets_parameters_losses_and_the_sweep_as_group(env, tmp_path):
    from conftest import QUICK

    sweep = tmp_path / "sweep"
    command = [sys.executable, "-m", "aitraining", "-m", *QUICK, "trainer.max_steps=4", "logger=wandb",
               "trainer.samples=0", f"hydra.sweep.dir={sweep}"]  # fmt: skip
    result = run_command(command, tmp_path, env, {"WANDB_MODE": "offline"})
    assert result.returncode == 0, result.output[-3000:]
    job = sweep / "0"
    runs = list((job / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1, list(job.rglob("*"))[:20]
    # wandb 0.31 has no Python reader for its .wandb log: its protobuf records hold the strings as they are.
    data = runs[0].read_bytes()
    for needle in (str(sweep), "accelerator.used", "trainer.learning_rate", "train/loss", str(job)):
        assert needle.encode() in data, needle
    assert read_run(job)["logger"] == {"kind": "wandb", "project": "quickstart", "name": "0", "group": str(sweep),
                                       "where": str(job / "wandb")}  # fmt: skip


# --------------------------------------------------------------------------- a quantized run, a full fine-tune


def quick_run(env, folder: Path, *overrides: str) -> Path:
    from conftest import QUICK

    out = folder / "run"
    command = [sys.executable, "-m", "aitraining", *QUICK, "trainer.max_steps=4", "trainer.samples=1",
               "trainer.sample_max_new_tokens=4", f"output_dir={out}", *overrides]  # fmt: skip
    result = run_command(command, folder, env, None)
    assert result.returncode == 0, result.output[-3000:]
    return out


def test_a_quantized_run_merges_at_the_end_of_training_into_its_base_reloaded_unquantized(env, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = quick_run(env, tmp_path, "quant=int4", "export=merged")  # export.merge=true: merged after training
    run = read_run(out)
    assert run["export"]["merged"] == "merged" and run["export"]["error"] is None
    assert "reloaded unquantized" in run["export"]["merged_into"] and "int4" in run["export"]["merged_into"]
    merged = AutoModelForCausalLM.from_pretrained(out / "merged")
    assert not hasattr(merged.config, "quantization_config") and merged.dtype == torch.float32
    ids = torch.tensor([[1, 40, 41, 42, 43, 44]])
    base = AutoModelForCausalLM.from_pretrained(run["model"]["path"])  # unquantized
    with torch.no_grad():
        expected = PeftModel.from_pretrained(base, out / "adapter")(input_ids=ids).logits
        assert (merged(input_ids=ids).logits - expected).abs().max().item() <= 1e-3


def test_a_full_fine_tune_samples_against_its_base_and_chats_from_model(env, tmp_path, aitraining):
    out = quick_run(env, tmp_path, "peft=none", "trainer.learning_rate=1e-4")
    assert read_run(out)["samples"] == "samples.md"
    assert "beside the base model's (the base weights)" in (out / "samples.md").read_text()
    result = aitraining("chat", str(out), "--temperature", "0", "--max-new-tokens", "4", stdin="Name a colour.\n")
    assert result.returncode == 0 and "Loaded model/" in result.stderr and result.stdout.count("\n") == 1, result.stderr
    refused = aitraining("export", str(out), "--merge")
    assert refused.returncode == 2 and "a full fine-tuning run has nothing to merge" in refused.stderr
