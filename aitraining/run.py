"""One run, start to finish. Read top to bottom: this is the build order.

Steps 1-3 are plain Python and fast: every mistake in the config, the data or the model choice is
reported here, before torch is imported or weights load. Step 3 may import Unsloth, which must come
before transformers, trl and peft; the heavy imports start at step 4. What differs between trainer
kinds comes from the trainer's record (aitraining/trainers/registry.py).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from aitraining import (
    adapters,
    chat_templates,
    data,
    export,
    inference,
    model_info,
    record,
    resolver,
    samples,
    trackers,
    unsloth_accel,
)
from aitraining.choices import Accel
from aitraining.config import Config
from aitraining.record import RunRecord, Status
from aitraining.trainers.base import load
from aitraining.trainers.registry import TRAINERS

log = logging.getLogger("aitraining")


@dataclass
class RunResult:
    output_dir: Path
    run: RunRecord

    @property
    def objective(self):
        return self.run.objective


def run(cfg: Config, out_dir: Path, context: dict[str, Any]) -> RunResult:
    started = time.time()
    spec = TRAINERS[cfg.trainer.kind]

    # 1. The output folder: never another run's.
    record.check_output_dir(out_dir, cfg.overwrite)
    log.info("Output folder: %s", out_dir)

    # 2. The data: read, format detected or checked, converted, and of a shape the trainer takes.
    #    Plain Python, no torch yet.
    examples = data.load_examples(cfg.data, cfg.seed)
    data.check_trainer(cfg.trainer.kind, examples)
    log.info("Data: %d training examples (%s) from %s.", len(examples.train), examples.format.value, examples.sources)

    # 3. The accelerator, decided from config.json without weights; the config is rewritten to
    #    what will actually run, with one WARNING when Unsloth cannot be used.
    model_type = model_info.model_type(cfg.model)
    decision = resolver.decide(cfg, model_type)
    cfg = resolver.apply(cfg, decision)
    trackers.check(cfg)  # logger=: its package is installed, or an error naming the extra

    # 4. Tokenizer and chat template, then the data made ready before the model loads (the record's
    #    `prepare`: SFT examples tokenized once with their loss masks, preference pairs rendered).
    from aitraining import loading  # heavy: transformers, trl, peft (after Unsloth)
    from aitraining.trainers import build

    model_path = model_info.local_path(cfg.model)
    tokenizer = loading.load_tokenizer(cfg, model_path)
    template = None
    if examples.is_chat:
        mapped = (
            unsloth_accel.sharegpt_template(tokenizer, cfg, examples.format) if decision.used is Accel.unsloth else None
        )
        template = mapped or chat_templates.setup(tokenizer, cfg, examples.format)
    prepared = load(spec.prepare)(examples, tokenizer, cfg, template)
    style = inference.style_for(examples.source_format, examples.is_chat, bool(template and template.renders_sharegpt))

    # 5. The model (Unsloth's FastLanguageModel, or transformers + bitsandbytes) and its LoRA.
    log.info("Loading %s (%s) with accel=%s, quant=%s.", cfg.model.name, model_type, cfg.accel.kind.value,
             cfg.quant.kind.value)  # fmt: skip
    loaded = loading.load_model(cfg, model_path, model_type)

    # 6. The TRL trainer the record names (LoRA attached here on the standard path).
    trainer, guard = build.build_trainer(spec, cfg, loaded, tokenizer, prepared.train, prepared.valid, out_dir)
    trainable, total = _parameter_counts(trainer.model)
    initial_adapter = adapters.save_initial(trainer.model, cfg, out_dir)  # PiSSA/OLoRA: needed to convert it
    sweep_dir = out_dir.parent if context.get("multirun") else None
    tracking = trackers.attach(trainer, cfg, decision, out_dir, sweep_dir)  # logger=: parameters, run folder

    # 7. Train. A NaN/inf loss or weight stops the run with an error and saves nothing.
    run_record = RunRecord(status=Status.running, output_dir=str(out_dir), started=started,
                           overrides=context.get("overrides", []))  # fmt: skip
    record.write(out_dir, run_record)
    try:
        stats = build.train(trainer, guard, cfg)
    except Exception as exc:
        run_record.status, run_record.error = Status.failed, str(exc)
        record.write(out_dir, run_record)
        raise
    finally:
        record.remove_if_empty(out_dir / "checkpoints")
        if tracking is not None:
            tracking.finish()

    # 8. Save: adapter (or full model) with its tokenizer, resolved config, metrics, run.json.
    weights_dir = out_dir / ("adapter" if loaded.peft_config is not None or _is_peft(trainer.model) else "model")
    adapters.save(trainer.model, weights_dir, initial_adapter)
    tokenizer.save_pretrained(weights_dir)
    resolved = OmegaConf.structured(cfg)
    resolved.output_dir = str(out_dir)
    OmegaConf.save(resolved, out_dir / "config.yaml")
    record.write_json(out_dir / "metrics.json", stats.log_history)
    run_record = RunRecord(
        status=Status.succeeded,
        output_dir=str(out_dir),
        started=started,
        weights_dir=str(weights_dir),
        experiment=context.get("experiment"),
        experiment_git=context.get("experiment_git"),  # the experiment file's repository (app.py)
        overrides=context.get("overrides", []),
        model=record.ModelRecord(name=cfg.model.name, path=model_path, type=model_type, dtype=loaded.dtype),
        trainer=cfg.trainer.kind.value,
        peft=adapters.describe(cfg, loaded.target_modules) if weights_dir.name == "adapter" else "full",
        lora=adapters.record(cfg, loaded.target_modules, trainer.model) if weights_dir.name == "adapter" else None,
        quant=cfg.quant.kind.value,
        accelerator=record.AcceleratorRecord(**decision.as_dict()),
        data={
            "format": examples.format.value,
            "sources": examples.sources,
            "train_examples": len(examples.train),
            "valid_examples": len(examples.valid) if examples.valid else 0,
            **prepared.stats,
        },
        parameters=record.ParameterRecord(trainable=trainable, total=total),
        loss=record.LossRecord(stats.train_loss_first, stats.train_loss_last, stats.eval_loss),
        results=load(spec.results)(cfg, stats.log_history) if spec.results else {},
        steps=stats.steps,
        tokens=stats.tokens,
        tokens_per_second=stats.tokens_per_second,
        train_seconds=stats.train_seconds,
        peak_gpu_memory_gib=stats.peak_gpu_memory_gib,
        wall_seconds=time.time() - started,
        seconds_to_first_step=stats.first_step_at - started if stats.first_step_at else None,
        first_step_at=stats.first_step_at,
        seed=cfg.seed,
        git=record.git_state(Path(context.get("cwd", Path.cwd()))),
        versions=record.package_versions(),
        prompt_style=style.value,
        logger=tracking.as_record() if tracking is not None else None,
    )
    record.write(out_dir, run_record)

    # 9. Samples: the model's and the base model's answers to a few prompts, in samples.md.
    finished = inference.finished_run(out_dir)
    sampler = samples.sampler(cfg, examples, style, tokenizer, out_dir)
    if sampler is not None:
        with samples.inference_mode(trainer.model, unsloth=decision.used is Accel.unsloth):
            sampler.section(
                trainer.model, f"After training (step {stats.steps})", lambda: inference.load_base(finished)
            )
        run_record.samples = sampler.path.name
        record.write(out_dir, run_record)
    print(record.summary(run_record), flush=True)

    # 10. Export (export=): merged/, GGUF files, the Hub; from the saved run, as `aitraining export` does.
    if export.wanted(cfg.export):
        del trainer, loaded  # the training copy of the model, before the export loads the base again
        run_record.export = export.export(inference.finished_run(out_dir), cfg.export)
    return RunResult(out_dir, run_record)


def _is_peft(model) -> bool:
    return hasattr(model, "peft_config")


def _parameter_counts(model) -> tuple[int, int]:
    if _is_peft(model):
        return model.get_nb_trainable_parameters()
    return (
        sum(p.numel() for p in model.parameters() if p.requires_grad),
        sum(p.numel() for p in model.parameters()),
    )
