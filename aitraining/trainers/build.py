"""Build the TRL trainer a record names, from the config; train; refuse a diverged result.

Imports torch/transformers/trl: run.py imports this module only after the accelerator is decided
(Unsloth must be imported before transformers).
"""

from __future__ import annotations

import logging
import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from transformers import EarlyStoppingCallback, TrainerCallback, set_seed

from aitraining import checkpoints, dist, interrupt, trackers
from aitraining.checkpoints import Checkpoint
from aitraining.config import Config
from aitraining.errors import DataError, DivergedError
from aitraining.loading import Loaded
from aitraining.trainers.base import TrainerSpec, load
from aitraining.trainers.registry import trl_fields

log = logging.getLogger(__name__)


def seed(value: int) -> None:
    """Seed Python, NumPy and torch before the model and its LoRA are built (TRL's trainers create
    the LoRA before the Trainer seeds anything)."""
    set_seed(value)


def common_args(cfg: Config, loaded: Loaded, out_dir: Path, has_eval: bool) -> dict[str, Any]:
    """Keyword arguments every TRL config takes (TrainingArguments), from aitraining's fields."""
    t = cfg.trainer
    every_eval = t.periodic_eval_steps if has_eval else 0
    return {
        "output_dir": str(checkpoints.folder(out_dir)),
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
        # Checkpoints in the Trainer's own format; aitraining marks each complete, then rotates
        # (Checkpointing below), so the Trainer deletes none itself.
        "save_strategy": "steps" if t.save_steps else "no",
        "save_steps": t.save_steps or 500,
        "save_total_limit": None,
        # With an eval set: evaluated every `every_eval` steps (if > 0) and once at the end.
        "eval_strategy": "steps" if every_eval else "no",
        "eval_steps": every_eval or None,
        "metric_for_best_model": "eval_loss" if every_eval else None,
        "greater_is_better": False,
        "load_best_model_at_end": t.load_best_at_end,
        "disable_tqdm": False,
        **dist.trainer_args(cfg),  # fsdp / deepspeed of dist=, DDP without the unused-parameter search for LoRA
    }


def trl_args(spec: TrainerSpec, cfg: Config, loaded: Loaded, out_dir: Path, has_eval: bool) -> dict[str, Any]:
    """TRL config keyword arguments: the common ones its config has (GRPOConfig has no max_length),
    the record's own, then `trainer.args` on top."""
    fields = trl_fields(spec.trl_config)
    common = {k: v for k, v in common_args(cfg, loaded, out_dir, has_eval).items() if k in fields}
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


class Checkpointing(TrainerCallback):
    """Checkpoints complete or not used, and the clean stop.

    - at the end of an optimizer step, a stop asked for (interrupt.STOP: SIGTERM, SIGINT, a
      launcher's signal) saves a checkpoint of that step and ends training; the last step gets no
      extra checkpoint or evaluation (unless load_best_at_end chooses among them);
    - each checkpoint the Trainer saved is marked complete (checkpoints.mark_complete) unless its
      weights or the loss are not finite (then it is removed and training stops: the NaN guard's
      error follows), the oldest beyond trainer.save_total_limit go, and `on_checkpoint` is told.
    """

    def __init__(self, cfg: Config, guard: NonFiniteLossGuard, info: dict[str, Any],
                 on_checkpoint: Callable[[Checkpoint], None]) -> None:  # fmt: skip
        self.keep = cfg.trainer.save_total_limit
        self.load_best = cfg.trainer.load_best_at_end
        self.guard = guard
        self.info = info
        self.on_checkpoint = on_checkpoint

    def on_step_end(self, args, state, control, **kwargs):
        stop = interrupt.STOP
        last = state.global_step >= state.max_steps
        # Several processes stop at the same step: each may have seen the signal, or only some.
        requested = dist.any_process(stop.requested and stop.step is None)
        if requested and stop.signum is None:
            interrupt.request(signal.SIGTERM, log_it=False)  # another process's signal: the same stop here
        if requested and stop.step is None and not last:
            stop.step = state.global_step
            control.should_save = True
            control.should_training_stop = True
        elif last and not self.load_best:
            # The Trainer adds a checkpoint and an evaluation at the last step; the run saves its
            # weights and evaluates once itself right after (run.py), so only periodic ones are kept.
            control.should_save = control.should_save and state.global_step % args.save_steps == 0
            every = args.eval_steps if args.eval_strategy != "no" else None
            control.should_evaluate = control.should_evaluate and bool(every) and state.global_step % every == 0
        return control

    def on_save(self, args, state, control, model=None, **kwargs):
        bad = self.guard.bad_step is not None or (model is not None and bool(_non_finite_params(model)))
        bad = dist.any_process(bad)
        dist.barrier()  # every process wrote its part (its RNG state) before the main one marks it
        if bad:
            control.should_training_stop = True
        if not dist.is_main():
            return control
        saved = checkpoints.at(Path(args.output_dir) / f"{checkpoints.PREFIX}{state.global_step}")
        if saved is None:
            return control
        if bad:
            checkpoints.remove([saved], "its loss or weights are not finite")
            return control
        checkpoints.mark_complete(saved, self.info)
        checkpoints.rotate(Path(args.output_dir).parent, self.keep, protect=state.best_model_checkpoint)
        self.on_checkpoint(saved)
        return control


def build_trainer(spec: TrainerSpec, cfg: Config, loaded: Loaded, tokenizer, train_ds, valid_ds, out_dir: Path,
                  marker: Optional[dict[str, Any]] = None,
                  on_checkpoint: Callable[[Checkpoint], None] = lambda saved: None):  # fmt: skip
    """The TRL trainer the record names, with the NaN guard, checkpointing and early stopping attached.
    `marker`: what each checkpoint records it was trained on; `on_checkpoint`: told of each one."""
    args = trl_args(spec, cfg, loaded, out_dir, has_eval=valid_ds is not None)
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
    info = {**(marker or {}), "trainer": cfg.trainer.kind.value}
    trainer.add_callback(Checkpointing(cfg, guard, info, on_checkpoint))
    if cfg.trainer.early_stopping_patience is not None and args["eval_strategy"] != "no":
        trainer.add_callback(EarlyStoppingCallback(early_stopping_patience=cfg.trainer.early_stopping_patience))
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


def end_progress_bar(trainer) -> None:
    """Close the Trainer's progress bar left open by an error in the training loop."""
    from transformers.trainer_callback import ProgressCallback

    for callback in trainer.callback_handler.callbacks:
        bar = getattr(callback, "training_bar", None) if isinstance(callback, ProgressCallback) else None
        if bar is not None:
            bar.close()
            callback.training_bar = None


def keep_progress(trainer, error: DataError) -> DataError:
    """A bad row met while streaming stopped training: save what was trained so far as a checkpoint
    (weights, optimizer, scheduler, trainer state) and say where, with the row's file and line."""
    step = trainer.state.global_step
    if step == 0:
        return error
    trainer._save_checkpoint(trainer.model, trial=None)
    trainer.callback_handler.on_save(trainer.args, trainer.state, trainer.control)  # marked complete, recorded
    folder = Path(trainer.args.output_dir) / f"checkpoint-{step}"
    return DataError(f"{error} Training stopped after step {step}; what was trained so far is saved in {folder}.")


@dataclass
class Best:
    """The evaluation of lowest eval loss during training (the Trainer's state)."""

    step: Optional[int]
    checkpoint: Optional[str]
    eval_loss: Optional[float]
    evaluations: int


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
    max_steps: int
    interrupted: bool  # a stop was asked for: training ended at `steps` with a checkpoint of it
    best: Best

    @property
    def tokens_per_second(self) -> Optional[float]:
        return self.tokens / self.train_seconds if self.tokens and self.train_seconds > 0 else None


def _non_finite_params(model) -> list[str]:
    return [n for n, p in model.named_parameters() if p.requires_grad and not torch.isfinite(p).all()]


def train(trainer, guard: NonFiniteLossGuard, cfg: Config, resume_from: Optional[Path] = None) -> TrainStats:
    """Train (from a checkpoint when resuming); raise DivergedError (nothing saved) when the loss or
    the weights are not finite."""
    output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    history = trainer.state.log_history
    losses = [h["loss"] for h in history if "loss" in h]
    hint = (
        f"trainer.learning_rate={cfg.trainer.learning_rate}, model.dtype={cfg.model.dtype.value}, "
        f"quant={cfg.quant.kind.value}"
    )
    if guard.bad_step is not None:
        raise DivergedError(
            f"training diverged: the loss became {guard.bad_value} at step {guard.bad_step} ({hint}). "
            "Nothing was saved as a result. Try a lower trainer.learning_rate or model.dtype=float32."
        )
    bad = _non_finite_params(trainer.model)
    if bad or not math.isfinite(output.training_loss):
        raise DivergedError(
            f"training diverged: {len(bad)} trainable tensor(s) hold NaN/inf (e.g. {bad[:2]}) ({hint}). "
            "Nothing was saved as a result."
        )
    state = trainer.state
    best = Best(
        step=state.best_global_step,
        checkpoint=state.best_model_checkpoint,
        eval_loss=state.best_metric,
        evaluations=sum("eval_loss" in h for h in history),
    )
    interrupted = interrupt.STOP.step is not None
    eval_loss = trainer.evaluate()["eval_loss"] if trainer.eval_dataset is not None and not interrupted else None
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
        max_steps=state.max_steps,
        interrupted=interrupted,
        best=best,
    )
