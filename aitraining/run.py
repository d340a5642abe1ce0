"""One run, start to finish. Read top to bottom: this is the build order.

Steps 1-3 are plain Python and fast: every mistake in the config, the data or the model choice is
reported here, before torch is imported or weights load. Step 3 may import Unsloth, which must come
before transformers, trl and peft; the heavy imports start at step 4.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from omegaconf import OmegaConf

from aitraining import data, model_info, preference, report, resolver
from aitraining.config import PREFERENCE_TRAINERS, Accel, Config

log = logging.getLogger("aitraining")


@dataclass
class RunResult:
    output_dir: Path
    run: dict[str, Any]

    @property
    def objective(self) -> Optional[float]:
        """What a sweeper minimises: eval loss when there is an eval set, else the last train loss."""
        loss = self.run["loss"]
        return loss["eval"] if loss["eval"] is not None else loss["train_last"]


def run(cfg: Config, out_dir: Path, context: dict[str, Any]) -> RunResult:
    started = time.time()

    # 1. The output folder: never another run's.
    report.check_output_dir(out_dir, cfg.overwrite)
    log.info("Output folder: %s", out_dir)

    # 2. The data: read, format detected or checked, converted. Plain Python, no torch yet.
    examples = data.load_examples(cfg.data, cfg.seed)
    preference.check_format(cfg.trainer.kind, examples)
    log.info("Data: %d training examples (%s) from %s.", len(examples.train), examples.format.value, examples.sources)

    # 3. The accelerator, decided from config.json without weights; the config is rewritten to
    #    what will actually run, with one WARNING when Unsloth cannot be used.
    model_type = model_info.model_type(cfg.model)
    decision = resolver.decide(cfg, model_type)
    cfg = resolver.apply(cfg, decision)

    # 4. Tokenizer and chat template, then the data made ready before the model loads: SFT
    #    examples tokenized once with their loss masks and lengths checked; preference pairs
    #    rendered and length-limited for TRL's DPO/ORPO trainers.
    from aitraining import encode, loading, training  # heavy: transformers, trl, peft (after Unsloth)

    model_path = model_info.local_path(cfg.model)
    tokenizer = loading.load_tokenizer(cfg, model_path)
    unsloth_used = decision.used is Accel.unsloth
    template = encode.setup_template(tokenizer, cfg, examples.format, unsloth_used) if examples.is_chat else None
    if cfg.trainer.kind in PREFERENCE_TRAINERS:
        train_ds, valid_ds, data_stats = preference.prepare(examples, tokenizer, cfg)
    else:
        encoded = encode.encode(examples, tokenizer, cfg, template)
        train_ds, valid_ds, data_stats = encoded.train, encoded.valid, encoded.stats

    # 5. The model (Unsloth's FastLanguageModel, or transformers + bitsandbytes) and its LoRA.
    log.info("Loading %s (%s) with accel=%s, quant=%s.", cfg.model.name, model_type, cfg.accel.kind.value,
             cfg.quant.kind.value)  # fmt: skip
    loaded = loading.load_model(cfg, model_path, model_type)

    # 6. The TRL trainer (LoRA attached here on the standard path).
    trainer, guard = training.build_trainer(cfg, loaded, tokenizer, train_ds, valid_ds, out_dir)
    trainable, total = _parameter_counts(trainer.model)

    # 7. Train. A NaN/inf loss or weight stops the run with an error and saves nothing.
    out_dir.mkdir(parents=True, exist_ok=True)
    report.write_json(out_dir / "run.json", {"status": "running", "started": started})
    try:
        stats = training.train(trainer, guard, cfg)
    except Exception as exc:
        report.write_json(out_dir / "run.json", {"status": "failed", "error": str(exc), "started": started})
        raise
    finally:
        report.remove_if_empty(out_dir / "checkpoints")

    # 8. Save: adapter (or full model) with its tokenizer, resolved config, metrics, run.json.
    weights_dir = out_dir / ("adapter" if loaded.peft_config is not None or _is_peft(trainer.model) else "model")
    trainer.model.save_pretrained(weights_dir)
    tokenizer.save_pretrained(weights_dir)
    resolved = OmegaConf.structured(cfg)
    resolved.output_dir = str(out_dir)
    OmegaConf.save(resolved, out_dir / "config.yaml")
    report.write_json(out_dir / "metrics.json", stats.log_history)
    summary = {
        "status": "succeeded",
        "output_dir": str(out_dir),
        "weights_dir": str(weights_dir),
        "experiment": context.get("experiment"),
        "experiment_git": context.get("experiment_git"),  # the experiment file's repository (app.py)
        "overrides": context.get("overrides", []),
        "model": {
            "name": cfg.model.name,
            "path": model_path,
            "type": model_type,
            "dtype": loaded.dtype,
        },
        "trainer": cfg.trainer.kind.value,
        "peft": f"LoRA r={cfg.peft.r} on {loaded.target_modules}" if weights_dir.name == "adapter" else "full",
        "quant": cfg.quant.kind.value,
        "accelerator": decision.as_dict(),
        "data": {
            "format": examples.format.value,
            "sources": examples.sources,
            "train_examples": len(examples.train),
            "valid_examples": len(examples.valid) if examples.valid else 0,
            "packing": cfg.trainer.packing,
            **data_stats,
        },
        "parameters": {"trainable": trainable, "total": total},
        "loss": {"train_first": stats.train_loss_first, "train_last": stats.train_loss_last, "eval": stats.eval_loss},
        "steps": stats.steps,
        "tokens": stats.tokens,
        "tokens_per_second": stats.tokens_per_second,
        "train_seconds": stats.train_seconds,
        "peak_gpu_memory_gib": stats.peak_gpu_memory_gib,
        "wall_seconds": time.time() - started,
        "seconds_to_first_step": stats.first_step_at - started if stats.first_step_at else None,
        "first_step_at": stats.first_step_at,
        "seed": cfg.seed,
        "git": report.git_state(Path(context.get("cwd", Path.cwd()))),
        "versions": report.package_versions(),
    }
    report.write_json(out_dir / "run.json", summary)
    print(report.summary(summary), flush=True)
    return RunResult(out_dir, summary)


def _is_peft(model) -> bool:
    return hasattr(model, "peft_config")


def _parameter_counts(model) -> tuple[int, int]:
    if _is_peft(model):
        return model.get_nb_trainable_parameters()
    return (
        sum(p.numel() for p in model.parameters() if p.requires_grad),
        sum(p.numel() for p in model.parameters()),
    )
