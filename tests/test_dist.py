"""Several processes, one run: torchrun and accelerate launch on the CPU (gloo), the dist= strategies,
the SLURM world, the existing tool's --distributed-backend. The strategies that need GPUs (fsdp,
zero2, zero3) are refused here with their reason; their real runs are arms of scripts/gpu_check.sh."""

from __future__ import annotations

import importlib.util
import json
import math
import signal
import socket
import sys
from pathlib import Path

import pytest

from aitraining import dist
from aitraining.choices import DistKind, PeftKind, Quant
from aitraining.compat import cli, options
from aitraining.compose import compose
from aitraining.errors import ConfigError
from aitraining.record import RunRecord, read
from conftest import QUICK, Background, complete, console_script, losses, read_run, run_command, weights

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
# 16 examples, batch 2 per process, 2 processes: 4 optimizer steps in the one epoch.
SMALL = ["experiment=quickstart", "trainer.max_steps=-1", "trainer.epochs=1", "data.max_samples=16",
         "trainer.batch_size=2", "trainer.logging_steps=1", "model.max_seq_length=128"]  # fmt: skip
HAS_DEEPSPEED = importlib.util.find_spec("deepspeed") is not None


def never():
    raise AssertionError("the check asked for a fact it should not need")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------- the world (fast)


@pytest.mark.parametrize(
    "env,expected",
    [
        ({}, dist.World(0, 0, 1, "python")),
        (
            {"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2", "TORCHELASTIC_RUN_ID": "x"},
            dist.World(1, 1, 2, "torchrun"),
        ),
        (
            {
                "RANK": "3",
                "LOCAL_RANK": "1",
                "WORLD_SIZE": "4",
                "TORCHELASTIC_RUN_ID": "none",
                "ACCELERATE_MIXED_PRECISION": "no",
            },
            dist.World(3, 1, 4, "accelerate"),
        ),
        ({"ACCELERATE_MIXED_PRECISION": "no"}, dist.World(0, 0, 1, "accelerate")),
        # SLURM tasks started by submitit (hydra/launcher=slurm_multi), before start() exports RANK etc.
        (
            {"SUBMITIT_EXECUTOR": "slurm", "SLURM_NTASKS": "16", "SLURM_PROCID": "9", "SLURM_LOCALID": "1"},
            dist.World(9, 1, 16, "slurm"),
        ),
        ({"SUBMITIT_EXECUTOR": "slurm", "SLURM_NTASKS": "1", "SLURM_PROCID": "0"}, dist.World(0, 0, 1, "python")),
    ],
)
def test_world_from_the_launcher_environment(env, expected):
    assert dist.world(env) == expected


def test_launch_time_resolver_formats_the_agreed_time(monkeypatch):
    monkeypatch.setenv(dist.LAUNCH_TIME_ENV, "1700000000.5")
    expected = dist.launch_time("%Y-%m-%d_%H-%M-%S")
    assert compose(["experiment=quickstart"]).output_dir == f"outputs/quickstart/{expected}"
    monkeypatch.delenv(dist.LAUNCH_TIME_ENV)
    assert compose(["experiment=quickstart"]).output_dir != f"outputs/quickstart/{expected}"


# --------------------------------------------------------------------------- the strategy table (fast)


def facts(deepspeed=True, gpu=True) -> dist.Facts:
    return dist.Facts(lambda: deepspeed, lambda: gpu)


TORCHRUN_WORLD = dist.World(0, 0, 2, "torchrun")


@pytest.mark.parametrize("kind", [DistKind.none, DistKind.ddp])
def test_ddp_runs_anywhere_and_asks_nothing(kind):
    assert dist.problem(kind, TORCHRUN_WORLD, dist.Facts(never, never)) is None
    assert dist.problem(kind, dist.World(), dist.Facts(never, never)) is None


@pytest.mark.parametrize("kind", [DistKind.zero2, DistKind.zero3])
def test_deepspeed_not_installed_is_named_with_its_pin(kind):
    error = dist.problem(kind, TORCHRUN_WORLD, dist.Facts(lambda: False, never))
    assert isinstance(error, ConfigError) and error.key == "dist"
    assert f"dist={kind.value} needs DeepSpeed" in str(error) and "deepspeed==0.19.8" in str(error)


@pytest.mark.parametrize("kind", [DistKind.fsdp, DistKind.zero2, DistKind.zero3])
def test_sharding_strategies_need_gpus(kind):
    error = dist.problem(kind, TORCHRUN_WORLD, facts(gpu=False))
    assert "needs CUDA GPUs" in str(error) and "silently run plain DDP" in str(error)
    assert dist.problem(kind, TORCHRUN_WORLD, facts()) is None


def test_fsdp_needs_a_distributed_launch():
    assert "needs a distributed launch" in str(dist.problem(DistKind.fsdp, dist.World(), facts()))
    assert dist.problem(DistKind.zero3, dist.World(), facts()) is None  # DeepSpeed runs one process too


def test_trainer_args_of_each_strategy():
    ddp = dist.trainer_args(compose(["dist=ddp"]))
    assert ddp == {"ddp_find_unused_parameters": False}  # LoRA: no search for unused parameters
    assert dist.trainer_args(compose(["dist=ddp", "peft=none"])) == {}  # full fine-tuning: transformers decides
    fsdp = dist.trainer_args(compose(["dist=fsdp"]))
    assert fsdp["fsdp"] is True and fsdp["fsdp_config"]["version"] == 2
    assert fsdp["fsdp_config"]["auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    zero3 = dist.trainer_args(compose(["dist=zero3"]))["deepspeed"]
    assert zero3["zero_optimization"]["stage"] == 3 and zero3["train_micro_batch_size_per_gpu"] == "auto"
    assert zero3["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    assert type(zero3) is dict and type(zero3["zero_optimization"]) is dict  # plain, for json/DeepSpeed
    assert dist.trainer_args(compose(["dist=zero2"]))["deepspeed"]["zero_optimization"]["stage"] == 2


@pytest.mark.parametrize("kind", list(DistKind))
def test_qlora_storage_under_sharding(kind):
    import torch

    cfg = compose([f"dist={kind.value}", "quant=int4"])
    expected = {"bnb_4bit_quant_storage": torch.bfloat16} if kind in (DistKind.fsdp, DistKind.zero3) else {}
    assert dist.quantization_kwargs(cfg, torch.bfloat16) == expected
    assert dist.quantization_kwargs(compose([f"dist={kind.value}"]), torch.bfloat16) == {}


def test_qlora_under_fsdp_gets_the_storage_in_its_bitsandbytes_config():
    import torch

    from aitraining.loading import quantization_config

    config = quantization_config(compose(["dist=fsdp", "quant=int4"]), torch.bfloat16)
    assert config.bnb_4bit_quant_storage == torch.bfloat16


def test_launch_env_for_the_loaders(monkeypatch):
    for name in ("ACCELERATE_USE_FSDP", "FSDP_VERSION", "ACCELERATE_USE_DEEPSPEED", "ACCELERATE_DEEPSPEED_ZERO_STAGE"):
        monkeypatch.setenv(name, "")  # recorded, so what the test sets is removed after it (later trainers
        monkeypatch.delenv(name)  # in this process would otherwise believe they run under DeepSpeed)
    dist.export_launch_env(compose(["dist=ddp"]))
    assert "ACCELERATE_USE_FSDP" not in dist.os.environ and "ACCELERATE_USE_DEEPSPEED" not in dist.os.environ
    dist.export_launch_env(compose(["dist=fsdp"]))
    assert dist.os.environ["ACCELERATE_USE_FSDP"] == "true" and dist.os.environ["FSDP_VERSION"] == "2"
    dist.export_launch_env(compose(["dist=zero3"]))
    assert dist.os.environ["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == "3"


@pytest.mark.parametrize(
    "overrides,key",
    [
        (["dist=zero2", "dist.deepspeed.zero_optimization.stage=3"], "dist.deepspeed.zero_optimization.stage"),
        (["dist=fsdp", "dist.fsdp_config.version=1"], "dist.fsdp_config.version"),
        (["dist=ddp", "+dist.fsdp_config.version=2"], "dist.fsdp_config"),
        (["dist=none", "+dist.deepspeed.zero_optimization.stage=2"], "dist.deepspeed"),
        (["+trainer.args.deepspeed=ds.json"], "trainer.args.deepspeed"),
        (["+trainer.args.fsdp=full_shard"], "trainer.args.fsdp"),
    ],
)
def test_strategy_config_mistakes_are_refused(overrides, key):
    with pytest.raises(ConfigError) as caught:
        compose(overrides)
    assert caught.value.key == key


def test_record_of_an_older_run_reads_as_one_process(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"status": "succeeded"}))
    run = read(tmp_path)
    assert run.world_size == 1 and run.launcher is None
    assert RunRecord(world_size=2, global_batch_size=8, launcher="torchrun", dist="ddp").to_dict()["world_size"] == 2


# --------------------------------------------------------------------------- the existing tool's flags (fast)


@pytest.mark.parametrize("backend,expected", [("ddp", "dist=ddp"), ("deepspeed", "dist=zero3")])
def test_distributed_backend_maps_onto_dist(backend, expected):
    assert expected in options.to_overrides({"distributed_backend": backend})
    assert options.to_overrides({}) == []


def test_launch_command_of_the_existing_tools_flags(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    command = cli.launch_command({"distributed_backend": "ddp", "num_processes": 2}, ["dist=ddp"])
    assert command[1:4] == ["-m", "accelerate.commands.launch", "--multi_gpu"]
    assert command[command.index("--num_processes") + 1] == "2" and command[-3:] == ["-m", "aitraining", "dist=ddp"]
    assert cli.launch_command({"distributed_backend": "ddp", "num_processes": 1}, []) is None
    assert cli.launch_command({}, []) is None
    monkeypatch.setenv("WORLD_SIZE", "2")  # already one process of a launch
    assert cli.launch_command({"distributed_backend": "ddp", "num_processes": 2}, []) is None


def test_num_processes_needs_a_backend():
    with pytest.raises(options.ParamsError, match="needs --distributed-backend"):
        options.to_overrides({"num_processes": 2})


# --------------------------------------------------------------------------- real launches on the CPU (slow)


def check_one_run(out_dir: Path, launcher: str, world_size: int = 2) -> dict:
    """One folder, written once: run.json of the whole launch, finite losses, an adapter that loads."""
    run = read_run(out_dir)
    assert run["status"] == "succeeded"
    assert run["world_size"] == world_size and run["launcher"] == launcher
    assert run["global_batch_size"] == 2 * 1 * world_size
    assert run["steps"] == 16 // (2 * world_size)  # the epoch is shared: 16 examples / global batch
    assert math.isfinite(run["loss"]["train_first"]) and math.isfinite(run["loss"]["train_last"])
    log = (out_dir / "train.log").read_text()
    assert log.count("Output folder:") == 1 and log.count("] - Data: ") == 1

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(run["model"]["path"])
    model = PeftModel.from_pretrained(base, out_dir / "adapter")
    assert any("lora_A" in name for name, _ in model.named_parameters())
    return run


def slow_rank_wrapper(tmp_path: Path) -> Path:
    """`python wrapper.py ARGS` = `python -m aitraining ARGS`, with rank 1 starting 3 seconds late."""
    script = tmp_path / "late_rank.py"
    script.write_text(
        "import os, runpy, sys, time\n"
        "if os.environ.get('RANK') == '1':\n    time.sleep(3)\n"
        "sys.argv = ['aitraining', *sys.argv[1:]]\n"
        "runpy.run_module('aitraining', run_name='__main__')\n"
    )
    return script


@pytest.mark.slow
def test_torchrun_two_processes_one_run_in_the_default_folder(env, tmp_path):
    """The default outputs/<project>/<time> folder, with rank 1 starting late: still one folder."""
    work = tmp_path / "work"
    work.mkdir()
    result = run_command([*TORCHRUN, str(slow_rank_wrapper(tmp_path)), *SMALL], work, env, None)
    assert result.returncode == 0, result.output[-3000:]
    folders = list((work / "outputs" / "quickstart").iterdir())
    assert len(folders) == 1, folders
    check_one_run(folders[0], "torchrun")
    # The main process prints and logs; the other one says nothing.
    assert result.stdout.count("aitraining: succeeded") == 1
    assert result.stderr.count("INFO: Data: ") == 1
    assert "find_unused_parameters=True" not in result.output  # LoRA: DDP without the extra graph pass


@pytest.mark.slow
def test_sigterm_under_torchrun_checkpoints_once_and_the_resume_is_exact(env, tmp_path):
    """2 processes: SIGTERM to torchrun stops both after the same step with one checkpoint (each
    process's RNG state in it); `resume=true` under torchrun continues to the uninterrupted run's
    losses and adapter."""
    config = [
        *(o for o in SMALL if not o.startswith("data.max_samples")),
        "data.max_samples=32",
        "trainer.save_steps=3",
    ]  # fmt: skip  (8 optimizer steps)
    baseline = run_command([*TORCHRUN, "-m", "aitraining", *config, f"output_dir={tmp_path / 'baseline'}"],
                           tmp_path, env, None)  # fmt: skip
    assert baseline.returncode == 0, baseline.output[-3000:]
    out = tmp_path / "stopped"
    run = Background(env, tmp_path, *config, f"output_dir={out}", launch=[*TORCHRUN, "-m", "aitraining"])
    run.wait_for(lambda: complete(out, 3), "a checkpoint at step 3")
    run.send(signal.SIGTERM)
    run.finish()
    record = read_run(out)
    stopped = record["steps"]
    assert record["status"] == "interrupted" and 3 <= stopped < 8, run.output[-3000:]
    assert complete(out, stopped) and record["checkpoint"].endswith(f"checkpoint-{stopped}")
    folder = out / "checkpoints" / f"checkpoint-{stopped}"
    assert (folder / "rng_state_0.pth").exists() and (folder / "rng_state_1.pth").exists()
    assert run.output.count(f"Interrupted by SIGTERM at step {stopped} of 8") == 1, run.output[-3000:]

    resumed = run_command([*TORCHRUN, "-m", "aitraining", *config, f"output_dir={out}", "resume=true"],
                          tmp_path, env, None)  # fmt: skip
    assert resumed.returncode == 0, resumed.output[-3000:]
    record = read_run(out)
    assert record["status"] == "succeeded" and record["world_size"] == 2 and record["steps"] == 8
    assert [s["status"] for s in record["segments"]] == ["interrupted (SIGTERM)", "succeeded"]
    ours, theirs = losses(out), losses(tmp_path / "baseline")
    assert sorted(ours) == sorted(theirs) == list(range(1, 9))
    largest = max(abs(ours[s] - theirs[s]) for s in theirs if s > stopped)
    print(f"\nDDP resume at step {stopped}: largest per-step loss difference {largest:.3g}")
    assert largest <= 1e-5
    assert weights(out) == weights(tmp_path / "baseline")


@pytest.mark.slow
def test_accelerate_launch_two_processes(env, tmp_path):
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "1",
              "--num_processes", "2", "--main_process_port", str(free_port())]  # fmt: skip
    out_dir = tmp_path / "run"
    result = run_command(
        [*launch, "-m", "aitraining", *SMALL, "dist=ddp", f"output_dir={out_dir}"], tmp_path, env, None
    )
    assert result.returncode == 0, result.output[-3000:]
    run = check_one_run(out_dir, "accelerate")
    assert run["dist"] == "ddp"
    assert result.stdout.count("aitraining: succeeded") == 1


@pytest.mark.slow
def test_existing_tools_distributed_backend_launches_two_processes(env, tmp_path):
    data = tmp_path / "data.json"
    data.write_text(json.dumps(json.loads((Path(cli.__file__).parents[1] / "samples" / "alpaca_en_demo.json")
                                          .read_text())[:16]))  # fmt: skip
    args = ["llm", "--train", "--model", "tiny:llama", "--data-path", str(data), "--project-name", "ddp-run",
            "--trainer", "sft", "--peft", "--lr", "2e-4", "--batch-size", "2", "--gradient-accumulation", "1",
            "--block-size", "128", "--disable-gradient-checkpointing", "--distributed-backend", "ddp",
            "--num-processes", "2"]  # fmt: skip
    result = run_command([*console_script(), *args], tmp_path, env, None)
    assert result.returncode == 0, result.output[-3000:]
    run = check_one_run_existing_tool(tmp_path / "ddp-run")
    assert run["dist"] == "ddp" and run["launcher"] == "accelerate"


def check_one_run_existing_tool(out_dir: Path) -> dict:
    run = read_run(out_dir)
    assert run["status"] == "succeeded" and run["world_size"] == 2 and run["steps"] == 4
    return run


FAILURES = {
    "config": (["trainer.learning_rate=-1"], "trainer.learning_rate must be > 0"),
    "data": (["data=custom", "data.path=missing.jsonl"], "data.path=missing.jsonl: no such file"),
    "fsdp on CPU": (["dist=fsdp"], "dist=fsdp needs CUDA GPUs"),
}


@pytest.mark.slow
@pytest.mark.parametrize("what", list(FAILURES))
def test_an_error_stops_every_process_with_one_message(env, tmp_path, what):
    overrides, message = FAILURES[what]
    result = run_command([*TORCHRUN, "-m", "aitraining", *SMALL, *overrides], tmp_path, env, {"PYTHONUNBUFFERED": "1"})
    assert result.returncode != 0
    assert result.output.count(message) == 1, result.output[-3000:]
    assert result.output.count("ERROR:") == 1
    assert result.output.count("Traceback (most recent call last)") == 1  # torchrun's own report, none of ours
    assert "exitcode  : 2" in result.output  # our exit code (torchrun's report), not a crash


@pytest.mark.slow
@pytest.mark.skipif(HAS_DEEPSPEED, reason="DeepSpeed is installed here: its real run is in scripts/gpu_check.sh")
def test_zero3_without_deepspeed_names_the_extra(env, tmp_path):
    result = run_command([*TORCHRUN, "-m", "aitraining", *SMALL, "dist=zero3"], tmp_path, env, None)
    assert result.returncode != 0
    assert result.output.count("dist=zero3 needs DeepSpeed, which is not installed") == 1


AGREE = """
import os, sys
from aitraining import dist
from aitraining.errors import AitrainingError
dist.start()
rank = dist.current().rank
try:
    dist.everywhere(lambda: 1 / 0 if rank == 1 else None)
except ZeroDivisionError:
    print(f"rank {rank} failed itself", flush=True)
except AitrainingError as exc:
    print(f"rank {rank} stopped: {exc}", flush=True)
try:
    dist.on_main(lambda: (_ for _ in ()).throw(FileNotFoundError("gone")))
except FileNotFoundError:
    print(f"rank {rank} failed itself", flush=True)
except AitrainingError as exc:
    print(f"rank {rank} stopped: {exc}", flush=True)
print(f"rank {rank} result {dist.on_main(lambda: [rank, 'main'])}", flush=True)
"""


@pytest.mark.slow
def test_a_failure_in_one_process_reaches_every_process(env, tmp_path):
    """dist.everywhere / on_main: an error in any process stops all of them with its message (no hang
    in the next collective); a result of the main process reaches the others."""
    script = tmp_path / "agree.py"
    script.write_text(AGREE)
    result = run_command([*TORCHRUN, str(script)], tmp_path, env, None)
    assert result.returncode == 0, result.output[-3000:]
    lines = result.stdout
    assert "rank 0 stopped: process 1 failed: ZeroDivisionError: division by zero" in lines
    assert "rank 1 failed itself" in lines  # the failing process raises its own exception
    assert "rank 0 failed itself" in lines and "rank 1 stopped: process 0 failed: FileNotFoundError: gone" in lines
    assert "rank 0 result [0, 'main']" in lines and "rank 1 result [0, 'main']" in lines


@pytest.mark.slow
@pytest.mark.unsloth
def test_unsloth_trains_under_torchrun(env, tmp_path):
    """unsloth 2026.10.9 under DDP (its CPU mode here): used, not fallen back from."""
    pytest.importorskip("unsloth")
    out_dir = tmp_path / "run"
    result = run_command([*TORCHRUN, "-m", "aitraining", *SMALL, "accel=unsloth", f"output_dir={out_dir}"],
                         tmp_path, env, None)  # fmt: skip
    assert result.returncode == 0, result.output[-3000:]
    run = check_one_run(out_dir, "torchrun")
    assert run["accelerator"]["used"] == "unsloth" and run["accelerator"]["reason"] is None


def test_quick_overrides_still_compose():
    # The suite's QUICK runs and this file's SMALL ones compose with the dist group in place.
    assert compose(QUICK).dist.kind is DistKind.none
    cfg = compose(SMALL)
    assert cfg.peft.kind is PeftKind.lora and cfg.quant.kind is Quant.none
