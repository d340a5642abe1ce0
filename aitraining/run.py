"""One run, start to finish. Read top to bottom: this is the build order.

Steps 1-3 are plain Python and fast: every mistake in the config, the data or the model choice is
reported here, before torch is imported or weights load. Step 3 may import Unsloth, which must come
before transformers, trl and peft; the heavy imports start at step 4. What differs between trainer
kinds comes from the trainer's record (aitraining/trainers/registry.py).

In a multi-process launch (aitraining/dist.py) every process runs these steps; `dist.on_main` runs
a step on the main process only and hands its result to the others (the data is read and
tokenized once), `dist.everywhere` runs it in each; a failure in any process stops them all with
one message. Only the main process writes files and prints.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from aitraining import chat_templates, data, dist, model_info, record, resolver, unsloth_accel
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

    world = dist.current()

    # 1. The output folder: never another run's.
    dist.on_main(lambda: record.check_output_dir(out_dir, cfg.overwrite))
    log.info("Output folder: %s", out_dir)

    # 2. The data: read, format detected or checked, converted, and of a shape the trainer takes.
    #    Plain Python, no torch yet.
    examples = dist.on_main(lambda: _read_data(cfg))
    log.info("Data: %d training examples (%s) from %s.", len(examples.train), examples.format.value, examples.sources)

    # 3. The launch strategy (dist=) and the accelerator, decided without weights; the config is
    #    rewritten to what will actually run, with one WARNING when Unsloth cannot be used.
    model_type, decision = dist.everywhere(lambda: _decide(cfg))
    cfg = resolver.apply(cfg, decision)

    # 4. Tokenizer and chat template, then the data made ready before the model loads (the record's
    #    `prepare`: SFT examples tokenized once with their loss masks, preference pairs rendered).
    from aitraining import loading  # heavy: transformers, trl, peft (after Unsloth)
    from aitraining.trainers import build

    model_path = dist.main_first(lambda: model_info.local_path(cfg.model))  # a tiny model is built once
    tokenizer, template = dist.everywhere(lambda: _tokenizer_and_template(cfg, model_path, examples, decision))
    prepared = dist.on_main(lambda: load(spec.prepare)(examples, tokenizer, cfg, template))

    # 5. The model (Unsloth's FastLanguageModel, or transformers + bitsandbytes) and its LoRA.
    log.info("Loading %s (%s) with accel=%s, quant=%s.", cfg.model.name, model_type, cfg.accel.kind.value,
             cfg.quant.kind.value)  # fmt: skip
    loaded = dist.everywhere(lambda: loading.load_model(cfg, model_path, model_type))

    # 6. The TRL trainer the record names (LoRA attached here on the standard path).
    trainer, guard = dist.everywhere(
        lambda: build.build_trainer(spec, cfg, loaded, tokenizer, prepared.train, prepared.valid, out_dir)
    )
    trainable, total = _parameter_counts(trainer.model)

    # 7. Train. A NaN/inf loss or weight stops the run with an error and saves nothing.
    run_record = RunRecord(status=Status.running, output_dir=str(out_dir), started=started,
                           overrides=context.get("overrides", []))  # fmt: skip
    _write(out_dir, run_record)
    try:
        stats = build.train(trainer, guard, cfg)
    except Exception as exc:
        run_record.status, run_record.error = Status.failed, str(exc)
        _write(out_dir, run_record)
        raise
    finally:
        if world.is_main:
            record.remove_if_empty(out_dir / "checkpoints")

    # 8. Save: adapter (or full model) with its tokenizer, resolved config, metrics, run.json. The
    #    trainer gathers sharded weights (every process takes part) and writes on the main process.
    weights_dir = out_dir / ("adapter" if loaded.peft_config is not None or _is_peft(trainer.model) else "model")
    trainer.save_model(str(weights_dir))  # with the tokenizer (and TRL's training_args.bin)
    if not world.is_main:
        return RunResult(out_dir, run_record)
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
        peft=f"LoRA r={cfg.peft.r} on {loaded.target_modules}" if weights_dir.name == "adapter" else "full",
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
        steps=stats.steps,
        tokens=stats.tokens,
        tokens_per_second=stats.tokens_per_second,
        train_seconds=stats.train_seconds,
        peak_gpu_memory_gib=stats.peak_gpu_memory_gib,
        wall_seconds=time.time() - started,
        seconds_to_first_step=stats.first_step_at - started if stats.first_step_at else None,
        first_step_at=stats.first_step_at,
        seed=cfg.seed,
        world_size=world.size,
        global_batch_size=cfg.trainer.batch_size * cfg.trainer.gradient_accumulation * world.size,
        launcher=world.launcher,
        dist=cfg.dist.kind.value,
        git=record.git_state(Path(context.get("cwd", Path.cwd()))),
        versions=record.package_versions(),
    )
    record.write(out_dir, run_record)
    print(record.summary(run_record), flush=True)
    return RunResult(out_dir, run_record)


def _read_data(cfg: Config) -> data.Examples:
    examples = data.load_examples(cfg.data, cfg.seed)
    data.check_trainer(cfg.trainer.kind, examples)
    return examples


def _decide(cfg: Config) -> tuple[str, resolver.Decision]:
    dist.check(cfg)  # a strategy that cannot run here is refused before any weights load
    dist.export_launch_env(cfg)  # before Unsloth is imported: its loader reads it
    model_type = model_info.model_type(cfg.model)
    return model_type, resolver.decide(cfg, model_type)


def _tokenizer_and_template(cfg: Config, model_path: str, examples: data.Examples, decision: resolver.Decision):
    from aitraining import loading

    tokenizer = loading.load_tokenizer(cfg, model_path)
    template = None
    if examples.is_chat:
        mapped = (
            unsloth_accel.sharegpt_template(tokenizer, cfg, examples.format) if decision.used is Accel.unsloth else None
        )
        template = mapped or chat_templates.setup(tokenizer, cfg, examples.format)
    return tokenizer, template


def _write(out_dir: Path, run_record: RunRecord) -> None:
    if dist.is_main():
        record.write(out_dir, run_record)


def _is_peft(model) -> bool:
    return hasattr(model, "peft_config")


def _parameter_counts(model) -> tuple[int, int]:
    if _is_peft(model):
        return model.get_nb_trainable_parameters()
    return (
        sum(p.numel() for p in model.parameters() if p.requires_grad),
        sum(p.numel() for p in model.parameters()),
    )
