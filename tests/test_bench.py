"""Smoke test: the benchmark script runs end to end with a tiny budget (no timing is asserted)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow


def test_bench_runs_with_a_tiny_budget(env):
    done = subprocess.run(
        [sys.executable, "scripts/bench.py", "--quick"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    for heading in ("1. Overhead", "2. Start-up", "3. Data preparation", "4. Checkpoints"):
        assert heading in done.stdout
    assert "heavy modules imported by --cfg job: none" in done.stdout
    assert "checkpoints saved: 2" in done.stdout and "at the default trainer.save_steps=500" in done.stdout
