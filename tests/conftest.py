"""Shared fixtures. Nothing here touches the network or anything outside the repository: tiny
models are built offline into a per-session cache, and data comes from tests/data (see its
SOURCES.md), the package's shipped sample, or files the tests write."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from aitraining import checkpoints

REPO = Path(__file__).resolve().parents[1]
TEST_DATA = REPO / "tests" / "data"
ALPACA = REPO / "aitraining" / "samples" / "alpaca_en_demo.json"  # shipped with the package
TEXT = TEST_DATA / "c4_demo.jsonl"  # 64 plain-text rows
PAIRS = TEST_DATA / "dpo_en_demo.json"  # 64 ShareGPT preference pairs
# llama.cpp's converter, unpacked by `make setup` (python -m aitraining.export.llamacpp .llama.cpp).
LLAMA_CPP = Path(os.environ.get("LLAMA_CPP_DIR", REPO / ".llama.cpp"))


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    """AITRAINING_CACHE for this session (also in this process): tiny models are built here once."""
    path = tmp_path_factory.mktemp("aitraining-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AITRAINING_CACHE", str(path))
        yield path


@pytest.fixture(scope="session")
def env(cache_dir) -> dict[str, str]:
    """Environment for the runner: offline, tiny models in the session cache."""
    return {
        **os.environ,
        "AITRAINING_CACHE": str(cache_dir),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture
def cli(env, tmp_path):
    """Run `python -m aitraining ARGS` in a fresh working directory; returns a Result."""

    def run(*args: str, cwd: Path | None = None, extra_env: dict[str, str] | None = None, python_flags=()):
        return run_command([sys.executable, *python_flags, "-m", "aitraining", *args], cwd or tmp_path, env, extra_env)

    return run


def run_command(command: list[str], cwd: Path, env: dict[str, str], extra_env: dict[str, str] | None) -> Result:
    done = subprocess.run(
        command, cwd=cwd, env={**env, **(extra_env or {})}, capture_output=True, text=True, timeout=900
    )
    return Result(done.returncode, done.stdout, done.stderr)


@pytest.fixture(scope="session")
def tokenizer_path(cache_dir) -> Path:
    """The tiny llama's folder (its tokenizer: byte-level BPE, ChatML template with generation marks)."""
    from aitraining import tiny

    return tiny.ensure_tiny("tiny:llama")


@pytest.fixture
def tokenizer(tokenizer_path):
    """A fresh copy of the tiny llama's tokenizer (tests may change its chat template)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tokenizer_path)


def read_run(output_dir: Path) -> dict:
    return json.loads((output_dir / "run.json").read_text())


# Overrides that make a training run take a few seconds on the tiny model.
# No samples.md (seconds a run): the tests of samples set trainer.samples themselves.
QUICK = ["experiment=quickstart", "trainer.max_steps=6", "trainer.logging_steps=2", "data.max_samples=64",
         "model.max_seq_length=512", "trainer.samples=0"]  # fmt: skip


# --------------------------------------------------------------------------- the existing tool's CLI


def console_script() -> list[str]:
    """The `aitraining` console script beside this Python (pip install -e . makes it), else the module."""
    script = Path(sys.executable).parent / "aitraining"
    return [str(script)] if script.exists() else [sys.executable, "-m", "aitraining.cli"]


@pytest.fixture
def console(env, tmp_path):
    """Run the `aitraining ARGS` console script in a fresh working directory; returns a Result."""

    def run(*args: str, cwd: Path | None = None, extra_env: dict[str, str] | None = None):
        return run_command([*console_script(), *args], cwd or tmp_path, env, extra_env)

    return run


def write_page_data(folder: Path) -> Path:
    """The product page's data, tiny: ./data/train.json (48 Alpaca rows) and ./sharegpt_data.json
    (48 ShareGPT conversations: each DPO row's conversation plus its chosen turn)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data").mkdir(exist_ok=True)
    alpaca = json.loads(ALPACA.read_text())[:48]
    (folder / "data" / "train.json").write_text(json.dumps(alpaca))
    dpo = json.loads(PAIRS.read_text())[:48]
    sharegpt = [{"conversations": [*row["conversations"], row["chosen"]]} for row in dpo]
    (folder / "sharegpt_data.json").write_text(json.dumps(sharegpt))
    return folder


# --------------------------------------------------------------------------- runs the tests stop (test_resume.py)


def losses(out: Path) -> dict[int, float]:
    """Step -> train loss, from metrics.json; each step at most once (one curve)."""
    history = json.loads((out / "metrics.json").read_text())
    steps = [h["step"] for h in history if "loss" in h]
    assert len(steps) == len(set(steps)), f"a step logged twice: {steps}"
    return {h["step"]: h["loss"] for h in history if "loss" in h}


def weights(out: Path) -> bytes:
    folder = out / ("adapter" if (out / "adapter").is_dir() else "model")
    return b"".join(p.read_bytes() for p in sorted(folder.glob("*.safetensors")))


def complete(out: Path, step: int) -> bool:
    found = checkpoints.at(checkpoints.folder(out) / f"checkpoint-{step}")
    return found is not None and found.complete


class Background:
    """`python -m aitraining ARGS` running while the test watches its folder and signals it."""

    def __init__(self, env, cwd: Path, *args: str, launch: Sequence[str] = (sys.executable, "-m", "aitraining")):
        self.log = cwd / f"background-{time.monotonic_ns()}.log"
        self.handle = self.log.open("w")
        self.proc = subprocess.Popen([*launch, *args], cwd=cwd, env=env,
                                     stdout=self.handle, stderr=subprocess.STDOUT)  # fmt: skip

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, what: Callable[[], bool], description: str, poll: float = 0.02) -> None:
        deadline = time.monotonic() + 600  # a guard against a hang, not a speed check
        while not what():
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"the run ended ({self.proc.returncode}) before {description}:\n{self.output[-3000:]}"
                )
            if time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError(f"no {description} after 600 s:\n{self.output[-3000:]}")
            time.sleep(poll)

    def send(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def finish(self) -> int:
        code = self.proc.wait(timeout=600)
        self.handle.close()
        return code
