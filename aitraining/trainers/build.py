"""Build the TRL trainer a record names, from the config; train; refuse a diverged result.

Imports torch/transformers/trl: run.py imports this module only after the accelerator is decided
(Unsloth must be imported before transformers).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from transformers import TrainerCallback

from aitraining import trackers
from aitraining.config import Config
from aitraining.errors import TrainingError
from aitraining.loading import Loaded
from aitraining.trainers.base import TrainerSpec, load
from aitraining.trainers.registry import trl_fields

log = logging.getLogger(__name__)


def common_args(cfg: Config, loaded: Loaded, out_dir: Path) -> dict[str, Any]:
    """Keyword arguments every TRL config takes (TrainingArguments), from aitraining's fields."""
    t = cfg.trainer
    return {
        "output_dir": str(out_dir / "checkpoints"),
        "learning_rate": t.learning_rate,
        "num_train_epochs": t.epochs,
        "max_steps": t.max_steps,
        "per_device_train_batch_size": t.batch_size,
        "per_device_eval_batch_size": t.batch_size,
        "gradient_accumulation_steps": t.gradient_accumulation,
        # The loader says whether the model already checkpoints itself (Unsloth does).
        "gradient_checkpointing": t.gradient_checkpointing and not loaded.gradient_checkpointing_by_model,
        "gradient_checkpointing_kwargs": {"use_reentrant": False},
        "logging_steps": t.logging_steps,
        "logging_first_step": True,
        "logging_nan_inf_filter": False,  # a NaN loss must show, not be averaged away
        "seed": cfg.seed,
        "data_seed": cfg.seed,
        "max_length": cfg.model.max_seq_length,
        "use_liger_kernel": cfg.model.liger_kernel,
        "use_cpu": not torch.cuda.is_available(),
        "bf16": loaded.dtype == "bfloat16",
        "fp16": loaded.dtype == "float16",
        **trackers.trl_args(cfg, out_dir),  # logger=: transformers' integration (report_to), run name, project
        "save_strategy": "no",  # the adapter is saved once, after the loss check
        "eval_strategy": "no",  # evaluated once at the end when there is an eval set
        "disable_tqdm": False,
    }


def trl_args(spec: TrainerSpec, cfg: Config, loaded: Loaded, out_dir: Path) -> dict[str, Any]:
    """TRL config keyword arguments: the common ones its config has (GRPOConfig has no max_length),
    the record's own, then `trainer.args` on top."""
    fields = trl_fields(spec.trl_config)
    common = {k: v for k, v in common_args(cfg, loaded, out_dir).items() if k in fields}
    return {**common, **spec.config_args(cfg), **cfg.trainer.args}


class NonFiniteLossGuard(TrainerCallback):
    """Stops training at the first logged loss that is NaN or infinite (and notes when step 1 began)."""

    def __init__(self) -> None:
        self.bad_step: Optional[int] = None
        self.bad_value: Optional[float] = None
        self.first_step_at: Optional[float] = None  # epoch seconds when the first step began

    def on_step_begin(self, args, state, control, **kwargs):
        if self.first_step_at is None:
            self.first_step_at = time.time()

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss) and self.bad_step is None:
            self.bad_step, self.bad_value = state.global_step, loss
            control.should_training_stop = True
        return control


def build_trainer(spec: TrainerSpec, cfg: Config, loaded: Loaded, tokenizer, train_ds, valid_ds, out_dir: Path):
    """The TRL trainer the record names, with the NaN guard attached."""
    args = trl_args(spec, cfg, loaded, out_dir)
    if args.get("packing"):
        attention = getattr(loaded.model.config, "_attn_implementation", None) or "default"
        if "flash" not in attention:
            log.warning(
                "trainer.packing=true with %s attention: examples stay apart (position_ids), but attention runs "
                "over each whole packed row, which is usually slower than padding. Packing pays off with "
                "model.attn_implementation=flash_attention_2 (GPU).",
                attention,
            )
    guard = NonFiniteLossGuard()
    config_class, trainer_class = load(spec.trl_config), load(spec.trl_trainer)
    extra = load(spec.trainer_kwargs)(cfg, loaded) if spec.trainer_kwargs else {}
    trainer = trainer_class(
        model=loaded.model,
        args=config_class(**args),
        train_dataset=train_ds,
        eval_dataset=valid_ds,
        processing_class=tokenizer,
        peft_config=loaded.peft_config,  # None on the Unsloth path: the model already is a PeftModel
        callbacks=[guard],
        **extra,
    )
    return trainer, guard


def reference_model(cfg: Config, loaded: Loaded) -> dict[str, Any]:
    """DPO's `ref_model`: a named model, or None (with LoRA TRL uses the base with the adapters disabled)."""
    if not cfg.trainer.ref_model:
        return {"ref_model": None}
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        cfg.trainer.ref_model, dtype=getattr(torch, loaded.dtype), trust_remote_code=cfg.model.trust_remote_code
    )
    return {"ref_model": model}


@dataclass
class TrainStats:
    train_loss_first: Optional[float]
    train_loss_last: Optional[float]
    eval_loss: Optional[float]
    steps: int
    tokens: Optional[int]
    train_seconds: float
    first_step_at: Optional[float]
    peak_gpu_memory_gib: Optional[float]
    log_history: list[dict[str, Any]]

    @property
    def tokens_per_second(self) -> Optional[float]:
        return self.tokens / self.train_seconds if self.tokens and self.train_seconds > 0 else None


def _non_finite_params(model) -> list[str]:
    return [n for n, p in model.named_parameters() if p.requires_grad and not torch.isfinite(p).all()]


def train(trainer, guard: NonFiniteLossGuard, cfg: Config) -> TrainStats:
    """Train; raise TrainingError (nothing saved) when the loss or the weights are not finite."""
    output = trainer.train()
    history = trainer.state.log_history
    losses = [h["loss"] for h in history if "loss" in h]
    hint = (
        f"trainer.learning_rate={cfg.trainer.learning_rate}, model.dtype={cfg.model.dtype.value}, "
        f"quant={cfg.quant.kind.value}"
    )
    if guard.bad_step is not None:
        raise TrainingError(
            f"training diverged: the loss became {guard.bad_value} at step {guard.bad_step} ({hint}). "
            "Nothing was saved as a result. Try a lower trainer.learning_rate or model.dtype=float32."
        )
    bad = _non_finite_params(trainer.model)
    if bad or not math.isfinite(output.training_loss):
        raise TrainingError(
            f"training diverged: {len(bad)} trainable tensor(s) hold NaN/inf (e.g. {bad[:2]}) ({hint}). "
            "Nothing was saved as a result."
        )
    eval_loss = trainer.evaluate()["eval_loss"] if trainer.eval_dataset is not None else None
    tokens = next((h["num_tokens"] for h in reversed(history) if "num_tokens" in h), None)
    return TrainStats(
        train_loss_first=losses[0] if losses else None,
        train_loss_last=losses[-1] if losses else None,
        eval_loss=eval_loss,
        steps=trainer.state.global_step,
        tokens=int(tokens) if tokens is not None else None,
        train_seconds=output.metrics.get("train_runtime", 0.0),
        first_step_at=guard.first_step_at,
        peak_gpu_memory_gib=torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
        log_history=history,
    )
