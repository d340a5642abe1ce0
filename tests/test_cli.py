"""The existing tool's interfaces: `aitraining llm --train ...` and LLMTrainingParams/AutoTrainProject
translate into Hydra overrides and run through the same app as `python -m aitraining`."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser

from aitraining.compat.cli import parse
from aitraining.compat.options import (
    OPTIONS,
    ParamsError,
    existing_defaults,
    hydra_value,
    to_overrides,
    with_table,
)
from aitraining.config import Accel, PeftKind, Quant, TrainerKind
from aitraining.errors import ConfigError, TrainingError
from conftest import REPO, console_script, read_run, write_page_data

HEAVY = {"torch", "transformers", "trl", "peft"}


def imported(stderr: str) -> set[str]:
    return {line.split("|")[-1].strip() for line in stderr.splitlines() if line.startswith("import time:")}


def one_error(result, *needles: str) -> str:
    """Exit non-zero, one ERROR line holding every needle, no traceback."""
    assert result.returncode != 0, result.output
    assert "Traceback" not in result.output, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR:")]
    assert len(errors) == 1, result.output
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def printed_config(result) -> dict:
    assert result.returncode == 0, result.output
    return yaml.safe_load(result.stdout)


# --------------------------------------------------------------------------- the console script


def test_console_script_is_declared_and_installed():
    pyproject = (REPO / "pyproject.toml").read_text()
    assert '[project.scripts]\naitraining = "aitraining.cli:main"' in pyproject
    assert (Path(sys.executable).parent / "aitraining").exists(), "reinstall: pip install --no-deps -e ."


@pytest.mark.parametrize("args", [["--help"], ["llm", "--help"]])
def test_help_is_fast_and_imports_nothing_heavy(console, args):
    result = console(*args, extra_env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert result.returncode == 0 and "llm" in result.stdout
    modules = imported(result.stderr)
    assert "aitraining.cli" in modules
    assert not (HEAVY | {"hydra", "omegaconf", "yaml"}) & modules
    best = min(_wall(console_script() + args) for _ in range(3))
    assert best < 1.0, f"aitraining {' '.join(args)} took {best:.2f} s"


def _wall(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, capture_output=True, check=True)
    return time.perf_counter() - started


def test_llm_help_lists_every_flag_and_its_key(console):
    out = console("llm", "--help").stdout
    for option in OPTIONS:
        assert option.flag in out
    assert "--print-config" in out and "--config" in out and "{default,dpo,grpo,kto,orpo,reward,sft,simpo}" in out


def test_readme_flag_table_is_generated_from_the_declaration():
    readme = (REPO / "README.md").read_text()
    section = readme.split("## The existing tool's interface", 1)[1].split("\n## ", 1)[0]
    assert with_table(section) == section, "run: python -m aitraining.compat.options README.md"
    for option in OPTIONS:
        assert f"| `{option.flag}" in section and f"| `{option.name}` |" in section, option.flag


def test_each_option_default_is_what_the_run_uses():
    """An option's declared default, when aitraining's own applies, is what the composed config holds."""
    from aitraining import LLMTrainingParams

    cfg = LLMTrainingParams(model="tiny:llama", peft=True).to_config()
    declared = {o.name: o for o in OPTIONS}
    for name, key in (("lora_r", "peft.r"), ("lora_alpha", "peft.alpha"), ("lora_dropout", "peft.dropout"),
                      ("epochs", "trainer.epochs"), ("seed", "seed"), ("train_split", "data.train_split"),
                      ("text_column", "data.text_column"), ("max_steps", "trainer.max_steps")):  # fmt: skip
        node: object = cfg
        for part in key.split("."):
            node = getattr(node, part)
        assert node == declared[name].default, name


def test_every_problem_maps_to_the_flag_that_set_its_key(console):
    result = console("llm", "--train", "--model", "tiny:llama", "--peft", "--lora-r", "0", "--lr", "-1",
                     "--quantization", "int4", "--no-peft")  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.output
    assert "--lr -1.0: trainer.learning_rate must be > 0" in result.stderr
    assert "--quantization int4: quant=int4 needs peft=lora" in result.stderr and "Add --peft." in result.stderr


def test_importing_aitraining_stays_light_until_the_api_is_used():
    code = (
        "import sys, aitraining; before = {'torch', 'hydra', 'aitraining.compat.api'} & set(sys.modules); "
        "from aitraining import LLMTrainingParams, AutoTrainProject; "
        "print(sorted(before), 'aitraining.compat.api' in sys.modules, 'torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["[]", "True", "False"]


# --------------------------------------------------------------------------- flags -> overrides

EVERY_FLAG = [
    "--train", "--model", "tiny:llama", "--data-path", "./data", "--project-name", "every-flag", "--overwrite",
    "--trainer", "sft", "--unsloth", "--peft", "--lora-r", "8", "--lora-alpha", "16", "--lora-dropout", "0.1",
    "--target-modules", "q_proj,v_proj", "--quantization", "int8", "--use-sharegpt-mapping", "--epochs", "3",
    "--batch-size", "4", "--lr", "1e-4", "--gradient-accumulation", "2", "--block-size", "512",
    "--model-max-length", "1024", "--max-steps", "10", "--train-split", "train", "--valid-split", "validation",
    "--text-column", "body", "--chat-template", "chatml", "--seed", "7",
]  # fmt: skip


def test_every_flag_maps_to_its_hydra_key(tmp_path):
    request = parse(["llm", *EVERY_FLAG])
    assert request is not None
    assert to_overrides(request.values, tmp_path) == [
        "model.name=tiny:llama",
        "data=custom",
        "data.path=./data",
        "project_name=every-flag",
        f"output_dir={tmp_path / 'every-flag'}",
        "overwrite=true",
        "trainer=sft",
        "accel=unsloth",
        "peft=lora",
        "peft.r=8",
        "peft.alpha=16",
        "peft.dropout=0.1",
        "peft.target_modules=[q_proj,v_proj]",
        "quant=int8",
        "data.use_sharegpt_mapping=true",
        "trainer.epochs=3.0",
        "trainer.batch_size=4",
        "trainer.learning_rate=0.0001",
        "trainer.gradient_accumulation=2",
        "model.max_seq_length=512",  # --block-size and --model-max-length: the smaller
        "trainer.max_steps=10",
        "data.train_split=train",
        "data.valid_split=validation",
        "data.text_column=body",
        "model.chat_template=chatml",
        "seed=7",
    ]


def test_more_of_the_existing_tools_flags(console):
    flags = (
        "--max-samples 10 --logging-steps 5 --disable-gradient-checkpointing --warmup-ratio 0.1 --weight-decay 0.01 "
        "--max-grad-norm 0.5 --optimizer adamw_torch --scheduler cosine --auto-convert-dataset --merge-adapter --peft"
    )
    result = console("llm", "--train", "--model", "tiny:llama", *flags.split(), "--print-config")
    cfg = printed_config(result)
    assert cfg["data"]["max_samples"] == 10 and cfg["trainer"]["logging_steps"] == 5
    assert cfg["trainer"]["gradient_checkpointing"] is False
    assert cfg["trainer"]["args"] == {
        "warmup_steps": 0.1,  # transformers 5: a warmup_steps below 1 is a ratio
        "weight_decay": 0.01,
        "max_grad_norm": 0.5,
        "optim": "adamw_torch",
        "lr_scheduler_type": "cosine",
    }
    assert cfg["export"]["merge"] is True
    assert not [line for line in result.stderr.splitlines() if line.startswith("WARNING:")]
    full = console("llm", "--train", "--model", "tiny:llama", "--merge-adapter", "--print-config")
    assert "--merge-adapter: export.merge=true needs peft=lora" in full.stderr and "Add --peft." in full.stderr


def test_print_config_shows_every_flag_in_the_composed_config(console, tmp_path):
    result = console("llm", *EVERY_FLAG, "--print-config", extra_env={"PYTHONPROFILEIMPORTTIME": "1"})
    cfg = printed_config(result)
    assert not HEAVY & imported(result.stderr)
    assert cfg["model"] == {**cfg["model"], "name": "tiny:llama", "max_seq_length": 512, "chat_template": "chatml"}
    assert cfg["data"]["path"] == "./data" and cfg["data"]["use_sharegpt_mapping"] is True
    assert cfg["data"]["valid_split"] == "validation" and cfg["data"]["text_column"] == "body"
    assert cfg["trainer"]["kind"] == "sft" and cfg["trainer"]["learning_rate"] == 1e-4
    assert cfg["trainer"]["epochs"] == 3 and cfg["trainer"]["max_steps"] == 10
    assert cfg["trainer"]["batch_size"] == 4 and cfg["trainer"]["gradient_accumulation"] == 2
    assert cfg["accel"]["kind"] == "unsloth" and cfg["quant"]["kind"] == "int8"
    assert cfg["peft"]["kind"] == "lora" and cfg["peft"]["target_modules"] == ["q_proj", "v_proj"]
    assert (cfg["peft"]["r"], cfg["peft"]["alpha"], cfg["peft"]["dropout"]) == (8, 16, 0.1)
    assert cfg["project_name"] == "every-flag" and cfg["output_dir"] == str(tmp_path / "every-flag")
    assert cfg["overwrite"] is True and cfg["seed"] == 7
    assert not (tmp_path / "every-flag").exists(), "--print-config wrote something"


def test_defaults_are_the_existing_tools(console):
    cfg = printed_config(console("llm", "--train", "--model", "tiny:llama", "--print-config"))
    assert cfg["trainer"]["kind"] == "default" and cfg["peft"]["kind"] == "none"  # full fine-tuning
    assert cfg["accel"]["kind"] == "none" and cfg["quant"]["kind"] == "none"
    assert cfg["data"]["path"] == "data" and cfg["data"]["use_sharegpt_mapping"] is False
    assert cfg["trainer"]["learning_rate"] == 3e-5 and cfg["trainer"]["batch_size"] == 2
    assert cfg["trainer"]["gradient_accumulation"] == 4 and cfg["trainer"]["epochs"] == 1
    assert (cfg["peft"]["r"], cfg["peft"]["alpha"], cfg["peft"]["dropout"]) == (16, 32, 0.05)
    assert cfg["seed"] == 42 and cfg["model"]["max_seq_length"] == 2048


def test_config_file_with_flags_winning_and_overrides_after_the_separator(console, tmp_path):
    (tmp_path / "job.yaml").write_text(
        "model: tiny:llama\ndata-path: ./data\npeft: true\nlora_r: 32\nlr: 1e-4\nepochs: 2\nunsloth: true\n"
    )
    result = console(
        "llm", "--train", "--config", "job.yaml", "--lora_r", "8", "--no-unsloth", "--print-config",
        "--", "trainer.learning_rate=5e-3", "+trainer.args.warmup_steps=0.1",
    )  # fmt: skip
    cfg = printed_config(result)
    assert cfg["model"]["name"] == "tiny:llama" and cfg["data"]["path"] == "./data"
    assert cfg["peft"]["kind"] == "lora" and cfg["peft"]["r"] == 8  # the flag wins over the file
    assert cfg["accel"]["kind"] == "none" and cfg["trainer"]["epochs"] == 2
    assert cfg["trainer"]["learning_rate"] == 5e-3  # an override after `--` wins over everything
    assert cfg["trainer"]["args"] == {"warmup_steps": 0.1}


@pytest.mark.parametrize(
    "args,needles",
    [
        (["--lora-rank", "8"], ["unknown flag --lora-rank", "Did you mean '--lora-r'?"]),
        (["--data_pth", "x"], ["unknown flag --data-pth", "Did you mean '--data-path'?"]),
        (["--trainer", "ppo"], ["--trainer: 'ppo': TRL no longer ships a PPO trainer", "Use --trainer grpo."]),
        (["--trainer", "sftt"], ["--trainer: invalid choice 'sftt'", "Allowed: default, dpo, grpo, kto, orpo"]),
        (["--quantization", "int3"], ["--quantization: invalid choice 'int3'", "int4, int8, none"]),
        (["--lr", "fast"], ["--lr: invalid float value: 'fast'"]),
        (["--peft", "--lora-r", "0"], ["--lora-r 0: peft.r must be >= 1 (got 0)"]),
        (["--quantization", "int4"], ["--quantization int4: quant=int4 needs peft=lora", "Add --peft"]),
        (["--project-name", "a/b"], ["--project-name a/b: project_name 'a/b' must be a folder name"]),
        (["trainer.epochs=3"], ["unexpected argument 'trainer.epochs=3'", "-- trainer.epochs=3"]),
        (["--", "trainer.learnin_rate=1"], ["unknown key 'trainer.learnin_rate'", "Did you mean 'learning_rate'?"]),
        (["--", "quant=int3"], ["quant/int3", "int4", "int8"]),
    ],
)
def test_mistakes_are_one_line_naming_the_flag(console, args, needles):
    cut = args.index("--") if "--" in args else len(args)
    result = console("llm", "--train", "--model", "tiny:llama", *args[:cut], "--print-config", *args[cut:])
    one_error(result, *needles)


def test_config_file_mistakes_name_the_file_and_key(console, tmp_path):
    (tmp_path / "job.yaml").write_text("model: tiny:llama\nlora_rank: 8\n")
    one_error(console("llm", "--train", "--config", "job.yaml"), "job.yaml: unknown key 'lora_rank'", "'lora_r'?")
    (tmp_path / "job.yaml").write_text("peft: yes please\n")
    one_error(console("llm", "--train", "--config", "job.yaml"), "job.yaml: peft: expected true or false")


def test_nothing_to_do_without_train(console):
    one_error(console("llm", "--model", "tiny:llama"), "add --train")


def test_project_folder_in_use_is_refused_unless_overwrite(console, tmp_path):
    (tmp_path / "fast-model").mkdir()
    (tmp_path / "fast-model" / "notes.txt").write_text("mine")
    args = ["llm", "--train", "--model", "tiny:llama", "--data-path", "./missing", "--project-name", "fast-model"]
    one_error(console(*args), "--project-name fast-model", "is not empty (notes.txt)", "--overwrite")
    assert (tmp_path / "fast-model" / "notes.txt").read_text() == "mine"
    # --overwrite lets it through to the run, which then stops at the (missing) data, before torch
    forced = console(*args, "--overwrite")
    one_error(forced, "data.path=./missing", "no such file")
    assert "is not empty" not in forced.output


def test_hydra_values_round_trip():
    parser = OverridesParser.create()
    for value in ["tiny:llama", "./my data/x.json", "~/x", "true", "1e-4", "it's", "C:\\d\\", "a,b", "x${y}", "null"]:
        parsed = parser.parse_override(f"data.path={hydra_value(value)}").value()
        assert parsed.replace("\\${", "${") == value, (value, parsed)


# --------------------------------------------------------------------------- the Python API


def test_params_give_the_same_overrides_as_the_flags(tmp_path):
    from aitraining import LLMTrainingParams

    request = parse(
        ["llm", "--train", "--model", "tiny:llama", "--peft", "--lora-r", "8", "--lr", "1e-4", "--epochs", "2"]
    )
    assert request is not None
    params = LLMTrainingParams(model="tiny:llama", peft=True, lora_r=8, lr=1e-4, epochs=2)
    assert params.to_overrides(tmp_path) == to_overrides(request.values, tmp_path)


def test_params_defaults_are_what_the_run_uses():
    from aitraining import LLMTrainingParams

    params = LLMTrainingParams(model="tiny:llama", peft=True)
    cfg = params.to_config()
    assert cfg.trainer.kind is TrainerKind.default and cfg.accel.kind is Accel.none and cfg.quant.kind is Quant.none
    assert cfg.peft.kind is PeftKind.lora
    assert (cfg.peft.r, cfg.peft.alpha, cfg.peft.dropout) == (params.lora_r, params.lora_alpha, params.lora_dropout)
    assert cfg.trainer.learning_rate == params.lr and cfg.trainer.batch_size == params.batch_size
    assert cfg.trainer.gradient_accumulation == params.gradient_accumulation and cfg.trainer.epochs == params.epochs
    assert cfg.trainer.max_steps == params.max_steps and cfg.seed == params.seed
    assert cfg.data.path == params.data_path and cfg.data.train_split == params.train_split
    assert cfg.data.text_column == params.text_column and cfg.data.valid_split is None
    assert cfg.data.use_sharegpt_mapping is params.use_sharegpt_mapping is False
    defaults = {f.name: f.default for f in dataclasses.fields(LLMTrainingParams)}
    assert {name: defaults[name] for name in existing_defaults()} == existing_defaults()
    assert list(defaults) == [option.name for option in OPTIONS]


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"lora_rank": 8}, "LLMTrainingParams has no field 'lora_rank'. Did you mean 'lora_r'?"),
        ({"peft": True, "lora_r": 0}, "lora_r=0: peft.r must be >= 1 (got 0)."),
        ({"quantization": "int4"}, "quantization='int4': quant=int4 needs peft=lora"),
        ({"trainer": "ppo"}, "trainer: 'ppo': TRL no longer ships a PPO trainer"),
        (
            {"trainer": "rlhf"},
            "trainer: invalid choice 'rlhf'. Allowed: default, dpo, grpo, kto, orpo, reward, sft, simpo.",
        ),
        ({"lr": "fast"}, "lr: invalid float value: 'fast'."),
        ({"project_name": "a/b"}, "project_name='a/b': project_name 'a/b' must be a folder name"),
    ],
)
def test_params_validate_on_construction(kwargs, message):
    from aitraining import LLMTrainingParams

    with pytest.raises(ParamsError) as caught:
        LLMTrainingParams(model="tiny:llama", **kwargs)
    assert message in str(caught.value)
    assert isinstance(caught.value, ConfigError) and isinstance(caught.value, ValueError)


def test_params_refuse_unknown_attributes_after_construction():
    from aitraining import LLMTrainingParams

    params = LLMTrainingParams(model="tiny:llama")
    params.epochs = 2
    assert "trainer.epochs=2.0" in params.to_overrides()
    with pytest.raises(ParamsError, match="Did you mean 'epochs'"):
        params.epoch = 2


def test_params_accept_what_they_ignore():
    from aitraining import LLMTrainingParams

    params = LLMTrainingParams(model="tiny:llama", peft=True, auto_convert_dataset=True)
    assert params.to_overrides() == LLMTrainingParams(model="tiny:llama", peft=True).to_overrides()


def test_merge_push_log_and_token_map_onto_export_logger_and_the_environment(monkeypatch):
    from aitraining import LLMTrainingParams

    params = LLMTrainingParams(model="tiny:llama", peft=True, project_name="fast-model", merge_adapter=True,
                               push_to_hub=True, username="me", token="hf_secret123", log="tensorboard")  # fmt: skip
    overrides = params.to_overrides()
    assert "export.merge=true" in overrides and "logger=tensorboard" in overrides
    assert "export.push_to_hub=me/${project_name}" in overrides
    assert not any("hf_secret123" in o for o in overrides) and "hf_secret123" not in repr(params)
    cfg = params.to_config()
    assert cfg.export.merge and cfg.export.push_to_hub == "me/fast-model" and cfg.export.private
    assert cfg.logger.kind.value == "tensorboard"
    mine = LLMTrainingParams(model="tiny:llama", peft=True, push_to_hub=True).to_config()
    assert mine.export.push_to_hub == "aitraining"  # no --username: the token's own account
    assert "export.merge=false" in LLMTrainingParams(model="tiny:llama", merge_adapter=False).to_overrides()


def test_cli_token_goes_to_the_environment_not_the_overrides(monkeypatch, tmp_path):
    import os

    from aitraining.compat.cli import prepare

    monkeypatch.setenv("HF_TOKEN", "before")  # restored after the test
    arguments = prepare(["llm", "--train", "--model", "tiny:llama", "--peft", "--push-to-hub", "--token", "hf_x1",
                         "--log", "wandb", "--merge-adapter"], tmp_path)  # fmt: skip
    assert arguments is not None and not any("hf_x1" in a for a in arguments)
    assert os.environ["HF_TOKEN"] == "hf_x1"
    assert {"logger=wandb", "export.merge=true", "export.push_to_hub=${project_name}"} <= set(arguments)


def test_only_the_local_backend(tmp_path):
    from aitraining import AutoTrainProject, LLMTrainingParams

    with pytest.raises(ParamsError, match="backend='spaces-a10g-large' is not available"):
        AutoTrainProject(params=LLMTrainingParams(model="tiny:llama"), backend="spaces-a10g-large")


def test_create_refuses_a_project_folder_in_use(tmp_path, monkeypatch):
    from aitraining import AutoTrainProject, LLMTrainingParams

    monkeypatch.chdir(tmp_path)
    (tmp_path / "fast-model").mkdir()
    (tmp_path / "fast-model" / "run.json").write_text("{}")
    project = AutoTrainProject(params=LLMTrainingParams(model="tiny:llama", project_name="fast-model"), process=True)
    with pytest.raises(ParamsError, match=r"fast-model is not empty \(run.json\)\. .*overwrite=True"):
        project.create()


def test_create_reports_a_failed_run(tmp_path, monkeypatch, env):
    from aitraining import AutoTrainProject, LLMTrainingParams

    monkeypatch.chdir(tmp_path)
    for key in ("AITRAINING_CACHE", "HF_HUB_OFFLINE"):
        monkeypatch.setenv(key, env[key])
    params = LLMTrainingParams(model="tiny:llama", data_path="./missing", project_name="failed")
    with pytest.raises(TrainingError, match=r"exit code 2\): data.path=./missing: no such file"):
        AutoTrainProject(params=params, backend="local", process=True).create()


# --------------------------------------------------------------------------- the page's examples, three ways

API = """
import json, sys
from aitraining import AutoTrainProject, LLMTrainingParams
params = LLMTrainingParams(**json.loads(sys.argv[1]))
job = AutoTrainProject(params=params, backend="local", process=sys.argv[2] == "process").create()
print("JOB " + json.dumps({"output_dir": str(job.output_dir), "succeeded": job.succeeded}))
"""

# (flags, LLMTrainingParams, python -m aitraining overrides, AutoTrainProject process=)
EXAMPLES = {
    "quick-start": (
        "--model tiny:llama --data-path ./data --project-name fast-model --trainer sft --unsloth --peft --lora-r 16",
        {"model": "tiny:llama", "data_path": "./data", "project_name": "fast-model", "trainer": "sft",
         "unsloth": True, "peft": True, "lora_r": 16},
        "model.name=tiny:llama data=custom data.path=./data project_name=fast-model trainer=sft accel=unsloth "
        "peft=lora peft.r=16",
        True,
    ),
    "int4": (
        "--model tiny:llama --data-path ./data --project-name quantized-model --quantization int4 --peft "
        "--trainer sft",
        {"model": "tiny:llama", "data_path": "./data", "project_name": "quantized-model", "quantization": "int4",
         "peft": True, "trainer": "sft"},
        "model.name=tiny:llama data=custom data.path=./data project_name=quantized-model quant=int4 peft=lora "
        "trainer=sft",
        True,
    ),
    "sharegpt": (
        "--model tiny:llama --data-path ./sharegpt_data.json --project-name sharegpt-model --trainer sft "
        "--use-sharegpt-mapping --peft",
        {"model": "tiny:llama", "data_path": "./sharegpt_data.json", "project_name": "sharegpt-model",
         "trainer": "sft", "use_sharegpt_mapping": True, "peft": True},
        "model.name=tiny:llama data=custom data.path=./sharegpt_data.json project_name=sharegpt-model trainer=sft "
        "data.use_sharegpt_mapping=true peft=lora",
        False,  # this one runs in the calling process
    ),
}  # fmt: skip
# The existing tool's defaults that differ from aitraining's, spelt out for python -m aitraining.
EXISTING = ["trainer.learning_rate=3e-05", "trainer.batch_size=2"]
# A few seconds of training each: 2 steps of 2 examples of at most 256 tokens.
BUDGET_FLAGS = "--max-steps 2 --gradient-accumulation 1 --block-size 256"
BUDGET_PARAMS = {"max_steps": 2, "gradient_accumulation": 1, "block_size": 256}
BUDGET_OVERRIDES = "trainer.max_steps=2 trainer.gradient_accumulation=1 model.max_seq_length=256"


@pytest.mark.slow
@pytest.mark.parametrize("example", list(EXAMPLES))
def test_page_example_runs_the_same_through_cli_api_and_module(example, console, cli, env, tmp_path):
    flags, kwargs, overrides, process = EXAMPLES[example]
    project = kwargs["project_name"]
    folders = {way: write_page_data(tmp_path / way) for way in ("cli", "api", "module")}

    by_cli = console("llm", "--train", *flags.split(), *BUDGET_FLAGS.split(), cwd=folders["cli"])
    assert by_cli.returncode == 0, by_cli.output[-3000:]
    by_api = subprocess.run(
        [sys.executable, "-c", API, json.dumps({**kwargs, **BUDGET_PARAMS}), "process" if process else "here"],
        cwd=folders["api"], env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert by_api.returncode == 0, (by_api.stdout + by_api.stderr)[-3000:]
    job = json.loads(by_api.stdout.split("JOB ")[-1])
    assert job == {"output_dir": str(folders["api"] / project), "succeeded": True}
    module_out = folders["module"] / project
    module_overrides = [*overrides.split(), *EXISTING, *BUDGET_OVERRIDES.split(), f"output_dir={module_out}"]
    by_module = cli(*module_overrides, cwd=folders["module"])
    assert by_module.returncode == 0, by_module.output[-3000:]

    configs, runs = {}, {}
    for way, folder in folders.items():
        out = folder / project
        runs[way] = read_run(out)
        assert runs[way]["status"] == "succeeded" and (out / "adapter" / "adapter_model.safetensors").exists()
        configs[way] = yaml.safe_load((out / "config.yaml").read_text())
        assert configs[way].pop("output_dir") == str(out)
    assert configs["cli"] == configs["api"] == configs["module"]
    cfg = configs["cli"]
    assert cfg["model"]["name"] == "tiny:llama" and cfg["trainer"]["kind"] == "sft" and cfg["peft"]["kind"] == "lora"
    assert cfg["trainer"]["learning_rate"] == 3e-5 and cfg["trainer"]["batch_size"] == 2
    assert cfg["trainer"]["max_steps"] == 2 and cfg["model"]["max_seq_length"] == 256
    # the CLI and the API hand the app the very same overrides
    relative = {way: [o.replace(str(folders[way]), ".") for o in runs[way]["overrides"]] for way in folders}
    assert relative["cli"] == relative["api"]
    assert sorted(relative["cli"]) == sorted(o.replace(str(folders["module"]), ".") for o in module_overrides)
    if example == "quick-start":
        assert runs["cli"]["accelerator"]["requested"] == "unsloth"
    if example == "int4":
        assert cfg["quant"]["kind"] == "int4" and runs["cli"]["quant"] == "int4"
    if example == "sharegpt":
        assert cfg["data"]["use_sharegpt_mapping"] is True and cfg["data"]["path"] == "./sharegpt_data.json"


def test_a_command_is_required_and_a_wrong_one_is_named(console):
    one_error(console("--lora-r", "3"), "a command is required", "Commands: llm")
    one_error(console("lm", "--train"), "unknown command 'lm'. Did you mean 'llm'?")


def test_trainer_takes_the_new_names_the_existing_tool_shares(console):
    """--trainer reward and grpo (the existing tool's names), and kto, simpo, compose as trainer=NAME; a
    trainer's own settings go after `--`."""
    for name in ("reward", "grpo", "kto", "simpo"):
        extra = ["--", "trainer.num_generations=2"] if name == "grpo" else []
        cfg = printed_config(console("llm", "--train", "--model", "tiny:llama", "--trainer", name, "--print-config",
                                     *extra))  # fmt: skip
        assert cfg["trainer"]["kind"] == name
        assert name != "grpo" or cfg["trainer"]["num_generations"] == 2


def test_the_existing_tools_column_flags_rename_columns(tmp_path):
    request = parse(["llm", "--train", "--model", "tiny:llama", "--prompt-text-column", "question",
                     "--rejected-text-column", "worse", "--train-split", "alpaca:train"])  # fmt: skip
    assert request is not None
    overrides = to_overrides(request.values, tmp_path)
    assert {"++data.columns.question=prompt", "++data.columns.worse=rejected", "data.subset=alpaca",
            "data.train_split=train"} <= set(overrides)  # fmt: skip
    from aitraining.compose import compose

    cfg = compose([o for o in overrides if not o.startswith(("data=", "data.path="))])
    assert cfg.data.columns == {"question": "prompt", "worse": "rejected"} and cfg.data.subset == "alpaca"
