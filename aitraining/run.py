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

import contextlib
import logging
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from aitraining import (
    adapters,
    chat_templates,
    checkpoints,
    data,
    dist,
    export,
    inference,
    interrupt,
    model_info,
    record,
    resolver,
    resume,
    samples,
    trackers,
    unsloth_accel,
)
from aitraining.checkpoints import Checkpoint
from aitraining.choices import Accel
from aitraining.config import Config
from aitraining.errors import DataError, DivergedError
from aitraining.record import RunRecord, SegmentRecord, Status
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
    with contextlib.ExitStack() as lock:  # one launch at a time in a run folder (its main process holds it)
        dist.on_main(lambda: lock.enter_context(record.holding(out_dir)))
        return _run(cfg, out_dir, context)


def _run(cfg: Config, out_dir: Path, context: dict[str, Any]) -> RunResult:
    started = time.time()
    spec = TRAINERS[cfg.trainer.kind]
    world = dist.current()

    # 1. The output folder: never another run's, except the run that `resume` continues (from a
    #    complete checkpoint of it; refused with the reason when it cannot be).
    plan = dist.on_main(lambda: _plan(cfg, out_dir))
    log.info("Output folder: %s%s", out_dir, f" (resuming from {plan.checkpoint.path})" if plan else "")

    # 2. The data: each source located, its format detected or checked, its first rows read, converted
    #    and of a shape the trainer takes. Plain Python, no torch yet (the rest is read in step 4).
    examples = dist.on_main(lambda: _read_data(cfg))
    data_fingerprint = resume.fingerprint(examples)  # in each checkpoint: a resume needs the same data
    log.info("Data: %s from %s%s.", examples.format.value, examples.names, " (streamed)" if examples.streaming else "")

    # 3. The launch strategy (dist=) and the accelerator, decided without weights; the config is
    #    rewritten to what will actually run, with one WARNING when Unsloth cannot be used.
    model_type, decision = dist.everywhere(lambda: _decide(cfg))
    cfg = resolver.apply(cfg, decision)
    resolved = OmegaConf.structured(cfg)
    resolved.output_dir = str(out_dir)
    if plan is not None:  # the run's own model, data and config, or one line saying what differs
        dist.on_main(lambda: _check_resume(plan, cfg, data_fingerprint, out_dir, resolved))
    dist.everywhere(lambda: trackers.check(cfg))  # logger=: its package is installed, or an error naming the extra

    # 4. Tokenizer and chat template, then the data made ready before the model loads (the record's
    #    `prepare`: SFT examples tokenized once with their loss masks, preference pairs rendered), source
    #    by source into Arrow files (or loaded from the data cache), mixed by weight; streamed: lazily.
    from aitraining import loading  # heavy: transformers, trl, peft (after Unsloth)
    from aitraining.trainers import build

    model_path = dist.main_first(lambda: model_info.local_path(cfg.model))  # a tiny model is built once
    tokenizer, template = dist.everywhere(lambda: _tokenizer_and_template(cfg, model_path, examples, decision))
    # Prepared on the main process and handed to the others (Arrow files: by reference); streamed data
    # is read lazily by each process as it trains.
    prepare = load(spec.prepare)
    prepared = (dist.main_first if examples.streaming else dist.on_main)(
        lambda: prepare(examples, tokenizer, cfg, template)
    )
    style = inference.style_for(examples.source_format, examples.is_chat, bool(template and template.renders_sharegpt))

    # 5. The model (Unsloth's FastLanguageModel, or transformers + bitsandbytes) and its LoRA, seeded
    #    first: the same config gives the same adapter and the same run.
    build.seed(cfg.seed)
    log.info("Loading %s (%s) with accel=%s, quant=%s.", cfg.model.name, model_type, cfg.accel.kind.value,
             cfg.quant.kind.value)  # fmt: skip
    loaded = dist.everywhere(lambda: loading.load_model(cfg, model_path, model_type))

    # 6. The TRL trainer the record names (LoRA attached here on the standard path), with the NaN guard,
    #    checkpoints every trainer.save_steps and, with an eval set, periodic evaluation. The run's
    #    record (written when training starts, by the main process) says after each checkpoint how far
    #    the run got.
    segment = SegmentRecord(started=started, start_step=plan.checkpoint.step if plan else 0,
                            resumed_from=str(plan.checkpoint.path) if plan else None)  # fmt: skip
    run_record = RunRecord(
        status=Status.running,
        output_dir=str(out_dir),
        started=plan.previous.started if plan else started,
        overrides=context.get("overrides", []),
        seed=cfg.seed,
        steps=plan.checkpoint.step if plan else 0,
        checkpoint=str(plan.checkpoint.path) if plan else None,
        resume_command=resume.command(context.get("overrides", []), out_dir, context.get("config_dir")),
        segments=[*(_closed(s) for s in plan.previous.segments), segment] if plan else [segment],
    )

    def checkpointed(saved: Checkpoint) -> None:
        run_record.steps, run_record.checkpoint = saved.step, str(saved.path)
        segment.end_step, segment.wall_seconds = saved.step, time.time() - started
        _write(out_dir, run_record)

    marker = {"model": cfg.model.name, "data": data_fingerprint}  # what a checkpoint says it was trained on
    trainer, guard = dist.everywhere(lambda: build.build_trainer(
        spec, cfg, loaded, tokenizer, prepared.train, prepared.valid, out_dir, marker, on_checkpoint=checkpointed
    ))  # fmt: skip
    trainable, total = _parameter_counts(trainer.model)
    initial_adapter = adapters.save_initial(trainer.model, cfg, out_dir) if world.is_main else None  # PiSSA/OLoRA
    sweep_dir = out_dir.parent if context.get("multirun") else None
    tracking = dist.everywhere(  # logger=: parameters, run folder (the main process reports)
        lambda: trackers.attach(trainer, cfg, decision, out_dir, sweep_dir) if world.is_main else None
    )

    # 7. Train, from the checkpoint when resuming. A NaN/inf loss or weight stops the run with an error
    #    and saves nothing; SIGTERM/SIGINT stop it after a checkpoint of the current step.
    if world.is_main:
        if plan is not None:
            checkpoints.remove_incomplete(out_dir)
            checkpoints.remove_after(out_dir, plan.checkpoint.step)
        OmegaConf.save(resolved, out_dir / "config.yaml")
    _write(out_dir, run_record)

    def aborted(signum: int) -> None:  # a second signal: no checkpoint of this step; the last one stays
        run_record.status, segment.status = Status.interrupted, f"aborted ({signal.Signals(signum).name} twice)"
        segment.ended = time.time()
        _write(out_dir, run_record)

    try:
        with interrupt.handling(on_abort=aborted) as stop:
            stats = build.train(trainer, guard, cfg, resume_from=plan.checkpoint.path if plan else None)
            if stats.interrupted:
                _interrupted(out_dir, run_record, segment, stats, stop)
    except Exception as exc:
        build.end_progress_bar(trainer)  # the error's line starts a line of its own
        if isinstance(exc, DataError):  # a bad row met while streaming: what was trained so far is kept
            exc = build.keep_progress(trainer, exc)
        if not isinstance(exc, interrupt.Interrupted):
            run_record.status, run_record.error = Status.failed, str(exc)
            run_record.diverged, segment.status, segment.ended = isinstance(exc, DivergedError), "failed", time.time()
            _write(out_dir, run_record)
        raise exc from None
    finally:
        if world.is_main:
            record.remove_if_empty(checkpoints.folder(out_dir))
        if tracking is not None:
            tracking.finish()

    # 8. Save: adapter (or full model) with its tokenizer, resolved config, metrics, run.json. Sharded
    #    weights (dist=fsdp, zero3) are gathered by the trainer, every process taking part; the main
    #    process writes.
    weights_dir = out_dir / ("adapter" if loaded.peft_config is not None or _is_peft(trainer.model) else "model")
    if dist.sharded(cfg):
        trainer.save_model(str(weights_dir))  # with the tokenizer
    elif world.is_main:
        adapters.save(trainer.model, weights_dir, initial_adapter)
        tokenizer.save_pretrained(weights_dir)
    if not world.is_main:
        return RunResult(out_dir, run_record)
    record.write_json(out_dir / "metrics.json", stats.log_history)
    segment.ended, segment.status, segment.end_step = time.time(), Status.succeeded.value, stats.steps
    segment.wall_seconds = segment.ended - started
    run_record = RunRecord(
        status=Status.succeeded,
        output_dir=str(out_dir),
        started=run_record.started,
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
            "sources": prepared.sources,
            "train_examples": None if examples.streaming else len(prepared.train),
            "valid_examples": None if examples.streaming or prepared.valid is None else len(prepared.valid),
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
        wall_seconds=sum(s.wall_seconds or 0.0 for s in run_record.segments),
        seconds_to_first_step=stats.first_step_at - started if stats.first_step_at else None,
        first_step_at=stats.first_step_at,
        seed=cfg.seed,
        world_size=world.size,
        global_batch_size=cfg.trainer.batch_size * cfg.trainer.gradient_accumulation * world.size,
        launcher=world.launcher,
        dist=cfg.dist.kind.value,
        checkpoint=run_record.checkpoint,
        resume_command=run_record.resume_command,
        segments=run_record.segments,
        kept=_kept(cfg, stats),
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


def _plan(cfg: Config, out_dir: Path) -> resume.Plan | None:
    """The resume's checkpoint, or None after checking that the folder holds no other run."""
    if cfg.resume_from:
        return resume.plan(cfg, out_dir)
    record.check_output_dir(out_dir, cfg.overwrite)
    return None


def _check_resume(plan: resume.Plan, cfg: Config, fingerprint: str, out_dir: Path, resolved) -> None:
    resume.check_checkpoint(plan, cfg, fingerprint)
    resume.check_config(out_dir, OmegaConf.to_container(resolved, enum_to_str=True))


def _read_data(cfg: Config) -> data.Examples:
    examples = data.load_examples(cfg.data, cfg.seed)
    data.check_trainer(cfg.trainer.kind, examples)
    cfg.trainer.check_eval_set(examples.has_valid)
    examples.fingerprint()  # the files hashed here, once: the other processes get the hashes with the sources
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
            unsloth_accel.sharegpt_template(tokenizer, cfg, examples.chat_format)
            if decision.used is Accel.unsloth
            else None
        )
        template = mapped or chat_templates.setup(tokenizer, cfg, examples.chat_format)
    return tokenizer, template


def _write(out_dir: Path, run_record: RunRecord) -> None:
    if dist.is_main():
        record.write(out_dir, run_record)


def _closed(segment: SegmentRecord) -> SegmentRecord:
    """An earlier segment as the resume finds it: one that never said how it ended was killed."""
    if segment.status is None:
        segment.status = "killed (resumed from its last checkpoint)"
    return segment


def _interrupted(out_dir: Path, run_record: RunRecord, segment: SegmentRecord, stats, stop: interrupt.Stop):
    """Training stopped for a signal after a checkpoint of its last step: record it, and say how to resume."""
    run_record.status = Status.interrupted
    segment.ended, segment.status, segment.end_step = time.time(), f"interrupted ({stop.name})", stats.steps
    segment.wall_seconds = segment.ended - segment.started
    if dist.is_main():
        record.write_json(out_dir / "metrics.json", stats.log_history)
    _write(out_dir, run_record)
    how = "the job is requeued and resumes" if stop.requeue else f"resume with: {run_record.resume_command}"
    raise interrupt.Interrupted(
        f"Interrupted by {stop.name} at step {stats.steps} of {stats.max_steps}; checkpoint {run_record.checkpoint} "
        f"saved; {how}",
        stop.signum or signal.SIGTERM,
        stop.requeue,
    )


def _kept(cfg: Config, stats) -> record.KeptRecord:
    """Which weights the run saved, and why."""
    best = stats.best
    early = ""
    if stats.steps < stats.max_steps:  # not interrupted, not diverged: early stopping ended it
        early = (f"; early stopping ended the run at step {stats.steps} ({cfg.trainer.early_stopping_patience} "
                 "evaluations without a lower eval loss)")  # fmt: skip
    if cfg.trainer.load_best_at_end and best.checkpoint:
        why = f"lowest eval loss of {best.evaluations} evaluations (trainer.load_best_at_end){early}"
        return record.KeptRecord(best.step, best.checkpoint, best.eval_loss, why)
    return record.KeptRecord(stats.steps, None, stats.eval_loss, "the last step" + early)


def _is_peft(model) -> bool:
    return hasattr(model, "peft_config")


def _parameter_counts(model) -> tuple[int, int]:
    if _is_peft(model):
        return model.get_nb_trainable_parameters()
    return (
        sum(p.numel() for p in model.parameters() if p.requires_grad),
        sum(p.numel() for p in model.parameters()),
    )
