"""The run record: one typed description, written through one function, read back as it was written."""

from __future__ import annotations

from aitraining import record
from aitraining.record import AcceleratorRecord, ExportRecord, LossRecord, RunRecord, Status, TrackerRecord


def test_write_then_read_gives_the_same_record(tmp_path):
    run = RunRecord(status=Status.succeeded, output_dir=str(tmp_path), overrides=["seed=1"],
                    accelerator=AcceleratorRecord("unsloth", "none", "not installed"),
                    loss=LossRecord(3.0, 2.0, None), data={"format": "text", "sources": ["x"]},
                    logger=TrackerRecord("wandb", "p", "0", "/sweep", "/sweep/0/wandb"),
                    export=ExportRecord(merged="merged", gguf={"q8_0": "gguf/x-q8_0.gguf"}))  # fmt: skip
    record.write(tmp_path, run)
    assert record.read(tmp_path) == run
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]  # written atomically, nothing left beside it
    assert run.objective == 2.0 and run.accelerator.label == "none (requested unsloth)"


def test_missing_or_unreadable_records_read_as_none(tmp_path):
    assert record.read(tmp_path) is None
    (tmp_path / "run.json").write_text("{not json")
    assert record.read(tmp_path) is None


def test_partial_records_read_with_defaults(tmp_path):
    (tmp_path / "run.json").write_text('{"status": "failed", "error": "boom", "future_field": 1}')
    run = record.read(tmp_path)
    assert run is not None and run.status is Status.failed and run.error == "boom" and run.loss == LossRecord()
