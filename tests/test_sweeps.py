"""Experiments (shipped, and a user's own repository) and multirun sweeps: their summary, a failing
job, an Optuna search, the submitit launchers, and every experiment run with debug=smoke."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from aitraining import sweep
from aitraining.app import experiment_git
from aitraining.compose import register_configs, validate
from aitraining.conf_files import CONF_DIR
from aitraining.config import Accel, DataFormat, PeftKind, Quant, TrainerKind
from conftest import ALPACA, PAIRS, REPO, read_run

# A sweep job that takes a few seconds on the tiny model.
TINY = ["trainer.max_steps=3", "trainer.logging_steps=1", "data.max_samples=32", "trainer.samples=0"]
SHIPPED = ["fast_model", "quantized_model", "quickstart", "sharegpt_chat"]


def compose_cfg(overrides: list[str], hydra: bool = False):
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=overrides, return_hydra_config=hydra)


def git_head(folder: Path) -> Optional[str]:
    done = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else None


def read_csv(sweep_dir: Path) -> list[dict[str, str]]:
    with (sweep_dir / "summary.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def jobs(sweep_dir: Path) -> dict[str, dict]:
    """run.json of every numbered job folder, by job number."""
    return {p.name: read_run(p) for p in sorted(sweep_dir.iterdir()) if p.is_dir() and p.name.isdigit()}


def user_experiments(root: Path, git: bool) -> Path:
    """A user's experiments repository: experiment/my_exp.yaml building on the shipped quickstart."""
    (root / "experiment").mkdir(parents=True)
    (root / "experiment" / "my_exp.yaml").write_text(
        "# @package _global_\n"
        "# python -m aitraining --config-dir THIS_FOLDER experiment=my_exp\n"
        "defaults:\n  - quickstart\n\nproject_name: my-exp\npeft:\n  r: 8\n"
    )
    if git:
        for args in (["init", "-q"], ["add", "."], ["commit", "-q", "-m", "my experiments"]):
            subprocess.run(
                ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-C", str(root), *args], check=True
            )
    return root


# --------------------------------------------------------------------------- experiments (fast)


def test_shipped_experiments_state_the_product_page_examples():
    fast = validate(compose_cfg(["experiment=fast_model"]))
    assert fast.model.name == "meta-llama/Llama-3.2-1B" and fast.trainer.kind is TrainerKind.sft
    assert fast.accel.kind is Accel.unsloth and fast.quant.kind is Quant.none
    assert fast.peft.kind is PeftKind.lora and fast.peft.r == 16 and fast.peft.alpha == 32
    assert fast.project_name == "fast-model" and fast.trainer.epochs == 3 and fast.data.path == "./data"

    quantized = validate(compose_cfg(["experiment=quantized_model"]))
    assert quantized.model.name == "meta-llama/Llama-3.2-3B" and quantized.quant.kind is Quant.int4
    assert quantized.accel.kind is Accel.unsloth and quantized.peft.r == 16
    assert quantized.project_name == "quantized-model"

    chat = validate(compose_cfg(["experiment=sharegpt_chat"]))
    assert chat.data.format is DataFormat.sharegpt and chat.data.use_sharegpt_mapping is True
    assert chat.data.path == "./sharegpt_data.json" and chat.accel.kind is Accel.unsloth


@pytest.mark.parametrize("name", SHIPPED)
def test_experiment_files_are_overlays_with_their_command(name):
    text = (REPO / "experiments" / f"{name}.yaml").read_text()
    assert text.startswith("# @package _global_\n")
    assert f"python -m aitraining experiment={name}" in text
    if name == "quickstart":
        return  # older than this rule: it states trainer.logging_steps=10, the default, too
    # only what differs: no value that the defaults already give
    overlay = yaml.safe_load(text)
    defaults = OmegaConf.to_container(compose_cfg([]))
    for group, values in overlay.items():
        if isinstance(values, dict):
            same = {k for k, v in values.items() if defaults.get(group, {}).get(k) == v}
            assert not same, f"{name}.yaml repeats defaults: {group}.{same}"


@pytest.mark.parametrize("where", ["repo", "elsewhere"])
def test_experiment_is_selected_from_any_working_directory(cli, tmp_path, where):
    cwd = REPO if where == "repo" else tmp_path
    result = cli("experiment=fast_model", "--cfg", "job", cwd=cwd)
    assert result.returncode == 0, result.output
    printed = OmegaConf.create(result.stdout)
    assert printed.project_name == "fast-model" and printed.accel.kind == "unsloth"


@pytest.mark.parametrize("how", ["--config-dir", "hydra.searchpath"])
def test_user_experiments_repository(cli, tmp_path, how):
    mine = user_experiments(tmp_path / "my-experiments", git=False)
    flag = ["--config-dir", str(mine)] if how == "--config-dir" else [f"hydra.searchpath=[file://{mine}]"]
    result = cli(*flag, "experiment=my_exp", "--cfg", "job")
    assert result.returncode == 0, result.output
    printed = OmegaConf.create(result.stdout)
    # my_exp builds on the shipped quickstart and changes two values
    assert printed.project_name == "my-exp" and printed.peft.r == 8 and printed.model.name == "tiny:llama"
    shipped = cli(*flag, "experiment=quantized_model", "--cfg", "job")
    assert shipped.returncode == 0 and OmegaConf.create(shipped.stdout).quant.kind == "int4"


def test_experiment_git_names_the_file_and_its_repository(tmp_path):
    assert experiment_git(None) is None
    outside = tmp_path / "loose.yaml"
    outside.write_text("# @package _global_\n")
    state = experiment_git(outside)
    assert state is not None and state["file"] == str(outside)
    if git_head(tmp_path) is None:  # tmp is not inside a repository
        assert state["commit"] is None and state["dirty"] is None
    shipped = REPO / "experiments" / "quickstart.yaml"
    state = experiment_git(shipped)
    assert state is not None and state["commit"] == git_head(REPO)


# --------------------------------------------------------------------------- sweep configs (fast)


def test_optuna_search_config():
    cfg = compose_cfg(["hparams_search=optuna", "experiment=quickstart"], hydra=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "minimize"
    assert set(sweeper.params) == {"trainer.learning_rate", "peft.r"}
    assert sweeper.sampler._target_.endswith("TPESampler") and sweeper.sampler.seed == 42


def sbatch_script(overrides: list[str], tmp_path: Path, monkeypatch) -> str:
    """The sbatch script submitit writes for a launcher config, made as the plugin makes it (no cluster)."""
    cfg = compose_cfg(overrides, hydra=True)
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"].endswith("SlurmLauncher")
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "srun").write_text("#!/bin/sh\nexit 0\n")
    (fake / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")  # submitit looks for srun
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    own = {"_target_", "submitit_folder", "max_num_timeout"}
    params = {k if k in base else f"slurm_{k}": v for k, v in launcher.items() if k not in own}
    executor = submitit.AutoExecutor(folder=tmp_path / "submitit", cluster="slurm")
    executor.update_parameters(**{**params, "name": "aitraining"})  # refuses unknown sbatch options
    return executor._executor._make_submission_file_text("python -m aitraining", "1")


def test_slurm_launcher_config_makes_an_sbatch_script(tmp_path, monkeypatch):
    """conf/hydra/launcher/slurm.yaml, turned into sbatch parameters as the plugin does."""
    overrides = ["hydra/launcher=slurm", "experiment=fast_model", "hydra.launcher.partition=gpu"]
    script = sbatch_script(overrides, tmp_path, monkeypatch)
    for line in ("--nodes=1", "--gpus-per-node=1", "--ntasks-per-node=1", "--partition=gpu", "--time=720",
                 "--mem=64GB"):  # fmt: skip
        assert f"#SBATCH {line}" in script, script


@pytest.mark.parametrize("nodes,gpus", [(1, 4), (2, 8)])
def test_multi_node_launcher_makes_one_task_per_gpu(tmp_path, monkeypatch, nodes, gpus):
    """hydra/launcher=slurm_multi: nodes x GPUs per node, one task (process) per GPU, each task started
    by srun (submitit); the tasks join one process group from SLURM's environment (tests/test_dist.py)."""
    overrides = ["hydra/launcher=slurm_multi", "experiment=fast_model", "dist=ddp", f"hydra.launcher.nodes={nodes}",
                 f"hydra.launcher.gpus_per_node={gpus}", "hydra.launcher.partition=gpu"]  # fmt: skip
    script = sbatch_script(overrides, tmp_path, monkeypatch)
    for line in (f"--nodes={nodes}", f"--gpus-per-node={gpus}", f"--ntasks-per-node={gpus}", "--partition=gpu"):
        assert f"#SBATCH {line}" in script, script
    assert "\nsrun " in script  # one srun starts every task of the job


# --------------------------------------------------------------------------- the summary (fast)


def fake_job(sweep_dir: Path, name: str, run: Optional[dict], losses: tuple[float, ...] = ()) -> None:
    folder = sweep_dir / name
    folder.mkdir(parents=True)
    if run is not None:
        (folder / "run.json").write_text(json.dumps(run))
    if losses:
        history = [{"loss": v, "step": i + 1} for i, v in enumerate(losses)] + [{"eval_loss": 1.0, "step": 3}]
        (folder / "metrics.json").write_text(json.dumps(history))


def succeeded(lr: str, train: float, evaluation: Optional[float]) -> dict:
    return {
        "status": "succeeded",
        "overrides": ["experiment=quickstart", f"trainer.learning_rate={lr}"],
        "loss": {"train_first": 3.0, "train_last": train, "eval": evaluation},
        "tokens_per_second": 1234.5,
        "wall_seconds": 6.25,
        "accelerator": {"requested": "unsloth", "used": "none", "reason": "not installed"},
    }


def test_summary_of_a_sweep_folder(tmp_path):
    fake_job(tmp_path, "0", succeeded("1e-4", 2.5, 2.0), (3.0, 2.7, 2.5))
    fake_job(tmp_path, "1", succeeded("3e-4", 2.2, 1.5), (3.0, 2.4, 2.2))
    fake_job(
        tmp_path,
        "2",
        {"status": "failed", "error": "training diverged:\nnan", "overrides": ["experiment=quickstart", "x=1"]},
    )
    fake_job(tmp_path, "3", None)  # killed before writing run.json
    (tmp_path / ".submitit").mkdir()  # a launcher's folder is no job

    summary = sweep.summarize(tmp_path)
    assert [job.name for job in summary.jobs] == ["1", "0", "2", "3"]  # best eval loss first, failures last
    assert summary.common_overrides == ["experiment=quickstart"]
    assert [job.name for job in summary.failed] == ["2", "3"]
    rows = read_csv(tmp_path)
    assert [r["job"] for r in rows] == ["1", "0", "2", "3"] and [r["rank"] for r in rows] == ["1", "2", "", ""]
    assert rows[0]["eval_loss"] == "1.5" and rows[0]["train_loss"] == "2.2" and rows[0]["status"] == "succeeded"
    assert rows[0]["tokens_per_s"] == "1234.5" and rows[0]["wall_s"] == "6.25"
    assert rows[0]["accelerator"] == "none (requested unsloth)"
    assert rows[0]["overrides"] == "experiment=quickstart trainer.learning_rate=3e-4"
    assert rows[2]["status"] == "failed" and rows[2]["error"] == "training diverged: nan"
    assert rows[3]["status"] == "missing" and "no run.json" in rows[3]["error"]
    md = (tmp_path / "summary.md").read_text()
    assert "| 1    | 1   | succeeded | trainer.learning_rate=3e-4" in md and "training diverged: nan" in md
    assert "Overrides of every job: `experiment=quickstart`" in md and "![loss curves](loss_curves.png)" in md
    assert (tmp_path / "loss_curves.png").read_bytes().startswith(b"\x89PNG")


def test_summary_imports_no_torch(tmp_path):
    fake_job(tmp_path, "0", succeeded("1e-4", 2.5, None), (3.0, 2.5))
    code = (
        f"import sys, pathlib, aitraining.sweep as s; s.summarize(pathlib.Path({str(tmp_path)!r})); "
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]" and (tmp_path / "loss_curves.png").exists()


def test_failed_jobs_are_recorded_and_the_sweep_goes_on(cli, tmp_path):
    """Jobs that fail validation (no training, so fast): each recorded, every job run, exit non-zero."""
    out = tmp_path / "sweep"
    result = cli("-m", "experiment=quickstart", "peft.r=0,-1", f"hydra.sweep.dir={out}")
    assert result.returncode != 0
    assert "Traceback" not in result.output
    runs = jobs(out)
    assert sorted(runs) == ["0", "1"]  # the second job ran after the first failed
    for run, r in zip(runs.values(), ["0", "-1"], strict=True):
        assert run["status"] == "failed" and f"peft.r must be >= 1 (got {r})" in run["error"]
        assert run["overrides"] == ["experiment=quickstart", f"peft.r={r}"]
        assert run["experiment"] == "quickstart"
        assert run["experiment_git"]["file"] == str(REPO / "experiments" / "quickstart.yaml")
        assert run["experiment_git"]["commit"] == git_head(REPO)
    assert [r["status"] for r in read_csv(out)] == ["failed", "failed"]
    assert "ERROR: 2 of 2 sweep jobs failed" in result.stderr


def test_an_optuna_search_whose_trials_fail_ends_with_its_summary(cli, tmp_path):
    """Failed trials return +inf: the search goes on, no traceback, summary and exit status say it."""
    out = tmp_path / "sweep"
    args = ["-m", "experiment=quickstart", "hparams_search=optuna", "hydra.sweeper.n_trials=2", "peft.r=0"]
    result = cli(*args, f"hydra.sweep.dir={out}")
    assert result.returncode != 0 and "Traceback" not in result.output, result.output
    assert [r["status"] for r in read_csv(out)] == ["failed", "failed"]
    assert yaml.safe_load((out / "optimization_results.yaml").read_text())["best_value"] == float("inf")


def test_a_sweep_cut_short_still_gets_its_summary(cli, tmp_path):
    """Here the second batch cannot compose (no such model option): Hydra ends the sweep with an error."""
    out = tmp_path / "sweep"
    args = ["-m", "experiment=quickstart", "peft.r=0", "model=tiny,no_such_model", "hydra.sweeper.max_batch_size=1"]
    result = cli(*args, f"hydra.sweep.dir={out}")
    assert result.returncode != 0 and "no_such_model" in result.output
    assert "the sweep ended early" in result.stderr
    assert [r["job"] for r in read_csv(out)] == ["0"]


def test_a_sweep_value_of_the_wrong_type_stops_it_before_any_job(cli, tmp_path):
    out = tmp_path / "sweep"
    result = cli(
        "-m", "experiment=quickstart", "peft.r=8,abc", "trainer.learning_rate=1e-4,fast", f"hydra.sweep.dir={out}"
    )
    assert result.returncode == 2 and "Traceback" not in result.output
    assert "peft.r=abc: expected an integer" in result.stderr and "trainer.learning_rate=fast" in result.stderr
    assert not out.exists()


# --------------------------------------------------------------------------- sweeps that train (slow)


@pytest.mark.slow
def test_grid_sweep_runs_every_job_in_its_folder_and_summarises(cli, tmp_path):
    out = tmp_path / "sweep"
    args = ["-m", "experiment=quickstart", "trainer.learning_rate=1e-4,3e-4", "peft.r=8,16", *TINY]
    result = cli(*args, f"hydra.sweep.dir={out}")
    assert result.returncode == 0, result.output[-3000:]
    runs = jobs(out)
    assert sorted(runs) == ["0", "1", "2", "3"]
    combos = set()
    for run in runs.values():
        assert run["status"] == "succeeded" and run["steps"] == 3
        assert (Path(run["output_dir"]) / "adapter").is_dir() and Path(run["output_dir"]).parent == out
        overrides = dict(o.split("=", 1) for o in run["overrides"])
        assert f"r={overrides['peft.r']} " in run["peft"]
        combos.add((float(overrides["trainer.learning_rate"]), int(overrides["peft.r"])))
    assert combos == {(1e-4, 8), (1e-4, 16), (3e-4, 8), (3e-4, 16)}
    rows = read_csv(out)
    objectives = [float(r["eval_loss"] or r["train_loss"]) for r in rows]
    assert len(rows) == 4 and objectives == sorted(objectives) and all(r["status"] == "succeeded" for r in rows)
    assert all(float(r["tokens_per_s"]) > 0 and float(r["wall_s"]) > 0 and r["accelerator"] == "none" for r in rows)
    assert (out / "summary.md").exists() and (out / "loss_curves.png").read_bytes().startswith(b"\x89PNG")
    # the console shows the table, best job first
    assert "Sweep summary, best first: 4 jobs" in result.stdout
    table = result.stdout[result.stdout.index("| rank") :]
    assert table.splitlines()[2].startswith(f"| 1    | {rows[0]['job']} ")


@pytest.mark.slow
def test_one_failing_job_does_not_lose_the_others(cli, tmp_path):
    out = tmp_path / "sweep"
    # (3e-4, r8) trains; r=0 fails validation; lr=1e38 diverges to NaN while training
    result = cli("-m", "experiment=quickstart", "trainer.learning_rate=3e-4,1e38", "peft.r=8,0", *TINY)
    assert result.returncode != 0 and "Traceback" not in result.output
    sweeps = list((tmp_path / "multirun" / "quickstart").iterdir())  # the default sweep folder
    assert len(sweeps) == 1
    out = sweeps[0]
    rows = {r["job"]: r for r in read_csv(out)}
    assert len(rows) == 4
    assert rows["0"]["status"] == "succeeded" and rows["0"]["rank"] == "1"
    assert read_csv(out)[0]["job"] == "0"  # the one that worked comes first
    assert {rows[j]["status"] for j in ("1", "2", "3")} == {"failed"}
    assert "peft.r must be >= 1" in rows["1"]["error"] and "peft.r must be >= 1" in rows["3"]["error"]
    assert "training diverged" in rows["2"]["error"]
    assert read_run(out / "2")["status"] == "failed" and not (out / "2" / "adapter").exists()
    assert "ERROR: 3 of 4 sweep jobs failed (1, 2, 3)" in result.stderr


@pytest.mark.slow
def test_optuna_search_minimises_what_the_runs_return(cli, tmp_path):
    out = tmp_path / "sweep"
    args = ["-m", "experiment=quickstart", "hparams_search=optuna", "hydra.sweeper.n_trials=2", *TINY]
    result = cli(*args, f"hydra.sweep.dir={out}")
    assert result.returncode == 0, result.output[-3000:]
    runs = jobs(out)
    assert sorted(runs) == ["0", "1"]
    objectives = {}
    for name, run in runs.items():
        overrides = dict(o.split("=", 1) for o in run["overrides"])
        assert 1e-5 <= float(overrides["trainer.learning_rate"]) <= 1e-2 and overrides["peft.r"] in {
            "8",
            "16",
            "32",
            "64",
        }
        objectives[name] = run["loss"]["eval"] if run["loss"]["eval"] is not None else run["loss"]["train_last"]
    results = yaml.safe_load((out / "optimization_results.yaml").read_text())
    assert results["best_value"] == pytest.approx(min(objectives.values()))
    assert read_csv(out)[0]["job"] == min(objectives, key=objectives.__getitem__)


@pytest.mark.slow
def test_submitit_local_launcher_runs_the_same_sweep(cli, tmp_path):
    """What a cluster user changes: hydra/launcher=submitit_local here, hydra/launcher=slurm there.
    The jobs run in submitit's own processes; one of them fails (peft.r=0) and is recorded there."""
    out = tmp_path / "sweep"
    args = ["-m", "experiment=quickstart", "peft.r=8,0", *TINY, "hydra/launcher=submitit_local"]
    result = cli(*args, f"hydra.sweep.dir={out}")
    assert result.returncode != 0 and "Traceback" not in result.output, result.output[-3000:]
    assert (out / ".submitit").is_dir()
    runs = jobs(out)
    assert runs["0"]["status"] == "succeeded" and (out / "0" / "adapter").is_dir()
    assert runs["1"]["status"] == "failed" and "peft.r must be >= 1" in runs["1"]["error"]
    assert [(r["job"], r["status"]) for r in read_csv(out)] == [("0", "succeeded"), ("1", "failed")]
    assert (out / "loss_curves.png").exists() and "ERROR: 1 of 2 sweep jobs failed (1)" in result.stderr


@pytest.mark.slow
def test_every_experiment_runs_with_debug_smoke(cli, tmp_path):
    """`-m 'experiment=glob(*)' debug=smoke`: every shipped experiment and a user's own (from its git
    repository through --config-dir), on the tiny model; each keeps its data path, format, accel, quant."""
    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)  # the hub experiments' ./data: the Alpaca sample
    alpaca = json.loads(ALPACA.read_text())
    (work / "data" / "train.json").write_text(json.dumps(alpaca[:64]))
    rows = json.loads(PAIRS.read_text())[:48]  # ShareGPT preference pairs
    (work / "sharegpt_data.json").write_text(
        json.dumps([{"conversations": [*r["conversations"], r["chosen"]]} for r in rows])
    )
    mine = user_experiments(tmp_path / "my-experiments", git=True)
    out = tmp_path / "sweep"
    result = cli(
        "--config-dir", str(mine), "-m", "experiment=glob(*)", "debug=smoke", f"hydra.sweep.dir={out}", cwd=work
    )
    assert result.returncode == 0, result.output[-4000:]
    runs = {run["experiment"]: run for run in jobs(out).values()}
    assert sorted(runs) == sorted([*SHIPPED, "my_exp"])
    for name, run in runs.items():
        assert run["status"] == "succeeded" and run["model"]["name"] == "tiny:llama" and run["steps"] == 3, name
        repo = mine if name == "my_exp" else REPO / "experiments"
        assert run["experiment_git"]["file"] == str(
            (repo / "experiment" if name == "my_exp" else repo) / f"{name}.yaml"
        )
        assert run["experiment_git"]["commit"] == git_head(repo)
    assert runs["my_exp"]["experiment_git"]["dirty"] is False and runs["my_exp"]["peft"].startswith("LoRA r=8 ")
    for name in ("fast_model", "quantized_model", "sharegpt_chat"):
        assert runs[name]["accelerator"]["requested"] == "unsloth"
    assert runs["quantized_model"]["quant"] == "int4" and runs["fast_model"]["quant"] == "none"
    assert [Path(s["path"]).name for s in runs["fast_model"]["data"]["sources"]] == ["train.json"]
    assert runs["sharegpt_chat"]["data"]["format"] in {"sharegpt", "messages"}
