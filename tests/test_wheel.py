"""The built wheel carries conf/ and experiments/ and runs from any folder, with nothing of the checkout."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from conftest import REPO, Result, read_run

pytestmark = pytest.mark.slow

SHIPPED_EXPERIMENTS = sorted(p.stem for p in (REPO / "experiments").glob("*.yaml"))


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The wheel built from a copy of the checkout, installed (without dependencies) into a folder."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    shutil.copytree(
        REPO, source, symlinks=True,
        ignore=shutil.ignore_patterns(".git", ".venv*", "outputs", "multirun", "build", "*.egg-info", "__pycache__",
                                      ".pytest_cache", ".ruff_cache", ".whl*"),
    )  # fmt: skip
    dist = work / "dist"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), str(source)], check=True)
    (wheel,) = dist.glob("aitraining-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"aitraining/conf/config.yaml", "aitraining/conf/trainer/sft.yaml", "aitraining/samples/alpaca_en_demo.json",
            "aitraining/trainers/trl_fields.json"} <= names  # fmt: skip
    assert {f"aitraining/conf/experiment/{name}.yaml" for name in SHIPPED_EXPERIMENTS} <= names
    site = work / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True)
    return site


def run_installed(site: Path, cwd: Path, env: dict, *args: str) -> Result:
    cwd.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-m", "aitraining", *args], cwd=cwd, env={**env, "PYTHONPATH": str(site)},
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    return Result(done.returncode, done.stdout, done.stderr)


def test_the_installed_package_is_the_wheel(installed, env, tmp_path):
    code = "import aitraining.conf_files as c; print(c.__file__); print(c.CONF_DIR)"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={**env, "PYTHONPATH": str(installed)},
                          capture_output=True, text=True, check=True)  # fmt: skip
    module, conf = done.stdout.split()
    assert module.startswith(str(installed)) and conf.startswith(str(installed)) and Path(conf).is_dir()


def test_help_and_every_shipped_experiment_compose_outside_the_checkout(installed, env, tmp_path):
    helped = run_installed(installed, tmp_path, env, "--help")
    assert helped.returncode == 0 and "trainer         sft" in helped.stdout
    for name in SHIPPED_EXPERIMENTS:
        result = run_installed(installed, tmp_path, env, f"experiment={name}", "--cfg", "job")
        assert result.returncode == 0, result.output
        assert yaml.safe_load(result.stdout)["project_name"]


def test_quickstart_smoke_trains_from_the_wheel(installed, env, tmp_path):
    out = tmp_path / "run"
    result = run_installed(installed, tmp_path / "elsewhere", env, "experiment=quickstart", "debug=smoke",
                           f"output_dir={out}")  # fmt: skip
    assert result.returncode == 0, result.output[-3000:]
    run = read_run(out)
    assert run["status"] == "succeeded" and run["steps"] == 3
    assert run["data"]["sources"][0]["path"].startswith(str(installed))  # the sample shipped in the wheel


def test_a_users_own_experiment_folder_still_works(installed, env, tmp_path):
    mine = tmp_path / "my-experiments" / "experiment"
    mine.mkdir(parents=True)
    (mine / "mine.yaml").write_text("# @package _global_\ndefaults:\n  - override /model: tiny\nproject_name: mine\n")
    result = run_installed(installed, tmp_path, env, "--config-dir", str(mine.parent), "experiment=mine",
                           "--cfg", "job")  # fmt: skip
    assert result.returncode == 0, result.output
    printed = yaml.safe_load(result.stdout)
    assert printed["project_name"] == "mine" and printed["model"]["name"] == "tiny:llama"
