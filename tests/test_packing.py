"""Packing (TRL's bfd) keeps attention inside each example: logits of a packed batch, as the real
trainer collates it, equal those of each example run alone."""

from __future__ import annotations

import pytest
import torch

from aitraining import loading, tiny
from aitraining.config import Config, DataConfig, DataFormat, ModelConfig, PeftConfig, PeftKind, TrainerKind
from aitraining.data import Examples
from aitraining.data.encode import prepare
from aitraining.trainers import build
from aitraining.trainers.registry import TRAINERS
from aitraining.trainers.sft import SFTTrainerConfig
from conftest import QUICK, read_run

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("model_type", ["llama", "gemma2", "qwen2"])
def test_packed_batch_does_not_leak_attention(cache_dir, tmp_path, model_type):
    cfg = Config(
        model=ModelConfig(name=f"tiny:{model_type}", max_seq_length=64),
        trainer=SFTTrainerConfig(packing=True, batch_size=2, gradient_checkpointing=False),
        peft=PeftConfig(kind=PeftKind.none),
        data=DataConfig(path="unused"),
    )
    path = str(tiny.ensure_tiny(cfg.model.name))
    tokenizer = loading.load_tokenizer(cfg, path)
    rows = [{"text": t} for t in ("one two three", "four five six seven eight", "nine", "ten eleven")]
    encoded = prepare(Examples.from_rows(DataFormat.text, rows, name="test"), tokenizer, cfg, None)
    loaded = loading.load_model(cfg, path, model_type)
    trainer, _ = build.build_trainer(TRAINERS[TrainerKind.sft], cfg, loaded, tokenizer, encoded.train, None, tmp_path)
    batch = next(iter(trainer.get_train_dataloader()))
    assert "attention_mask" not in batch and batch["input_ids"].shape[0] == 1  # padding-free, flattened
    model = trainer.model.eval()
    positions = batch["position_ids"][0]
    starts = [i for i, p in enumerate(positions.tolist()) if p == 0] + [len(positions)]
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits[0]
        for a, b in zip(starts, starts[1:]):
            alone = model(input_ids=batch["input_ids"][:, a:b], use_cache=False).logits[0]
            torch.testing.assert_close(packed[a:b], alone, atol=1e-4, rtol=1e-4)
    assert len(starts) > 2, "the batch should hold several packed examples"


def test_packing_trains_and_reports_padding(cli, tmp_path):
    out = tmp_path / "packed"
    result = cli(*QUICK, f"output_dir={out}", "trainer.packing=true")
    assert result.returncode == 0, result.output[-3000:]
    stats = read_run(out)["data"]
    assert stats["packing"] is True
    assert stats["padding_share_with_packing"] == 0.0 < stats["padding_share_without_packing"]
