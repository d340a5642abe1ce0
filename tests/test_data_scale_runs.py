"""Data at scale, whole runs on the tiny model: a rerun and a sweep over weights load the data cache,
a mixture's sources in run.json, and a stream whose bad row stops training with its file and line and
the checkpoint of what was trained."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import QUICK, read_run

pytestmark = pytest.mark.slow


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def alpaca(n: int, tag: str = "q") -> list[dict]:
    return [{"instruction": f"{tag} {i}?", "input": "", "output": f"answer {i}."} for i in range(n)]


def test_a_rerun_loads_the_cache_and_run_json_says_so(cli, tmp_path):
    data = write_jsonl(tmp_path / "a.jsonl", alpaca(40))
    runs = []
    for name in ("first", "again"):
        out = tmp_path / name
        result = cli(*QUICK, "trainer.max_steps=2", f"data.path={data}", f"data.cache_dir={tmp_path / 'cache'}",
                     f"output_dir={out}")  # fmt: skip
        assert result.returncode == 0, result.output[-3000:]
        runs.append(read_run(out))
    first, again = (r["data"] for r in runs)
    assert first["cache"]["misses"] == 1 and again["cache"]["hits"] == 1 and again["cache"]["misses"] == 0
    assert again["sources"] == [{**first["sources"][0], "cache": "hit"}]
    assert first["sources"][0]["rows_read"] == 40 and first["sources"][0]["format"] == "alpaca"
    assert again["cache"]["folder_bytes"] >= again["cache"]["entries_bytes"] > 0
    assert runs[1]["seconds_to_first_step"] is not None
    assert "Data cache: 1 hit(s), 0 miss(es)" in result.stderr


def test_a_sweep_over_mixture_weights_prepares_each_source_once(cli, tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", alpaca(40, "a"))
    b = write_jsonl(tmp_path / "b.jsonl", [{"text": f"plain text {i}"} for i in range(40)])
    result = cli("-m", *QUICK, "trainer.max_steps=2", f"data.cache_dir={tmp_path / 'cache'}",
                 f"data.mix=[{{path: {a}}}, {{path: {b}, weight: 0.5}}]", "data.mix.0.weight=0.8,0.2",
                 f"hydra.sweep.dir={tmp_path / 'sweep'}")  # fmt: skip
    assert result.returncode == 0, result.output[-3000:]
    jobs = [read_run(tmp_path / "sweep" / str(n))["data"] for n in (0, 1)]
    assert [[s["weight"] for s in job["sources"]] for job in jobs] == [[0.8, 0.5], [0.2, 0.5]]
    assert [s["cache"] for s in jobs[0]["sources"]] == ["miss", "miss"]
    assert [s["cache"] for s in jobs[1]["sources"]] == ["hit", "hit"]  # the weights are not in the key
    assert [s["format"] for s in jobs[0]["sources"]] == ["alpaca", "text"]
    used = [[s["rows_used"] for s in job["sources"]] for job in jobs]
    assert used[0][0] > used[0][1] and used[1][0] < used[1][1]


def test_a_bad_row_met_while_streaming_keeps_the_checkpoint(cli, tmp_path):
    rows = [json.dumps(r) for r in alpaca(1200)]
    rows[1099] = json.dumps({"instruction": 7, "output": "x"})  # line 1100: past the first 1,000 checked
    data = tmp_path / "stream.jsonl"
    data.write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    result = cli("experiment=quickstart", f"data.path={data}", "data.streaming=true", "trainer.max_steps=200",
                 "trainer.batch_size=16", "trainer.logging_steps=10", "model.max_seq_length=64",
                 f"output_dir={out}")  # fmt: skip
    assert result.returncode != 0 and "Traceback" not in result.output
    error = [line for line in result.stderr.splitlines() if line.startswith("ERROR:")]
    assert len(error) == 1 and f"{data} line 1100: 'instruction' must be a string" in error[0], result.output[-3000:]
    checkpoints = sorted((out / "checkpoints").glob("checkpoint-*"))
    assert len(checkpoints) == 1 and str(checkpoints[0]) in error[0]
    assert (checkpoints[0] / "adapter_model.safetensors").exists() and (checkpoints[0] / "trainer_state.json").exists()
    run = read_run(out)
    assert run["status"] == "failed" and "line 1100" in run["error"]


def test_streaming_trains_with_packing(cli, tmp_path):
    data = write_jsonl(tmp_path / "s.jsonl", alpaca(64))
    out = tmp_path / "out"
    result = cli(*QUICK, "trainer.max_steps=3", f"data.path={data}", "data.streaming=true", "trainer.packing=true",
                 f"output_dir={out}")  # fmt: skip
    assert result.returncode == 0, result.output[-3000:]
    run = read_run(out)
    assert run["steps"] == 3 and run["data"]["streaming"] is True and run["data"]["train_examples"] is None
    assert run["data"]["sources"][0]["rows_read"] is None
