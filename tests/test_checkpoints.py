"""Checkpoints, resume and interruption without training (fast): the keys and their checks, the
checkpoint marker and rotation, the resume plan's refusals, the config comparison, the resume
command, the signal handling (real signals, in a child process), the existing tool's flags."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from aitraining import checkpoints, record, resume
from aitraining.checkpoints import Checkpoint
from aitraining.compat.cli import parse
from aitraining.compat.options import to_overrides
from aitraining.compose import compose
from aitraining.errors import ConfigError
from aitraining.record import RunRecord, SegmentRecord, Status

# --------------------------------------------------------------------------- the keys


def test_defaults_are_stated_and_checked():
    cfg = compose([])
    t = cfg.trainer
    assert (t.save_steps, t.save_total_limit, t.eval_steps, t.early_stopping_patience, t.load_best_at_end) == (
        500, 2, None, None, False)  # fmt: skip
    assert cfg.resume is False and cfg.resume_from is None
    assert compose(["resume=true"]).resume_from == "latest"
    assert compose(["resume=/runs/a/checkpoints/checkpoint-20"]).resume_from == "/runs/a/checkpoints/checkpoint-20"
    shipped = (Path(__file__).parents[1] / "conf" / "config.yaml").read_text()
    assert "resume: false" in shipped  # the YAML states the defaults
    assert f"trainer.save_steps={t.save_steps} saves one" in shipped
    assert f"trainer.save_total_limit={t.save_total_limit} keeps" in shipped


@pytest.mark.parametrize(
    "overrides,needle",
    [
        (["trainer.save_steps=-1"], "trainer.save_steps must be >= 0"),
        (["trainer.save_total_limit=0"], "trainer.save_total_limit must be >= 1"),
        (["trainer.eval_steps=-2"], "trainer.eval_steps must be >= 0 or null"),
        (["trainer.early_stopping_patience=0"], "trainer.early_stopping_patience must be >= 1"),
        (["trainer.early_stopping_patience=2", "trainer.eval_steps=0"], "needs periodic evaluation"),
        (["trainer.early_stopping_patience=2", "trainer.save_steps=0"], "needs periodic evaluation"),
        (["trainer.load_best_at_end=true", "trainer.save_steps=0"], "needs trainer.save_steps > 0"),
        (["trainer.load_best_at_end=true", "trainer.eval_steps=100"], "evaluation at each checkpoint"),
        (["resume=true", "overwrite=true"], "resume and overwrite=true contradict"),
        (["resume=''"], "resume must be true, false or the path"),
        (["+trainer.args.save_steps=10"], "trainer.args.save_steps is set by aitraining: set trainer.save_steps"),
        (["+trainer.args.resume_from_checkpoint=x"], "set resume instead"),
        (["+trainer.args.load_best_model_at_end=true"], "set trainer.load_best_at_end instead"),
    ],
)
def test_bad_values_are_one_clear_error(overrides, needle):
    with pytest.raises(ConfigError, match=None) as caught:
        compose(overrides)
    assert needle in str(caught.value), str(caught.value)


def test_eval_options_need_an_evaluation_set():
    cfg = compose(["trainer.load_best_at_end=true", "trainer.eval_steps=500", "trainer.early_stopping_patience=3"])
    cfg.trainer.check_eval_set(True)
    with pytest.raises(ConfigError, match=r"trainer.load_best_at_end and trainer.early_stopping_patience need an "
                                          r"evaluation set: .*data.valid_size"):  # fmt: skip
        cfg.trainer.check_eval_set(False)


# --------------------------------------------------------------------------- checkpoint folders


def make_checkpoint(out: Path, step: int, complete: bool = True, model: str = "tiny:llama") -> Checkpoint:
    path = checkpoints.folder(out) / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "adapter_model.safetensors").write_bytes(b"weights")
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    found = checkpoints.at(path)
    assert found is not None
    if complete:
        checkpoints.mark_complete(found, {"model": model})
    return found


def test_only_marked_checkpoints_count(tmp_path):
    make_checkpoint(tmp_path, 10)
    make_checkpoint(tmp_path, 20)
    make_checkpoint(tmp_path, 30, complete=False)  # a kill during its save
    (checkpoints.folder(tmp_path) / "checkpoint-x").mkdir()
    (checkpoints.folder(tmp_path) / "README.md").write_text("model card")
    assert [c.step for c in checkpoints.every(tmp_path)] == [10, 20, 30]
    assert [c.step for c in checkpoints.complete(tmp_path)] == [10, 20]
    newest = checkpoints.newest(tmp_path)
    assert newest is not None and newest.step == 20 and newest.info == {"model": "tiny:llama", "step": 20}
    # a marker that does not parse, or names another step, is no marker
    (checkpoints.folder(tmp_path) / "checkpoint-20" / checkpoints.MARKER).write_text('{"model": "tiny:llama", "st')
    assert [c.step for c in checkpoints.complete(tmp_path)] == [10]
    checkpoints.remove_incomplete(tmp_path)
    assert [c.step for c in checkpoints.every(tmp_path)] == [10]
    assert not list(checkpoints.folder(tmp_path).glob("checkpoint-*/.*.tmp"))


def test_rotation_keeps_the_newest_complete_ones_and_the_best(tmp_path):
    for step in (10, 20, 30, 40):
        make_checkpoint(tmp_path, step)
    best = str(checkpoints.folder(tmp_path) / "checkpoint-10")
    checkpoints.rotate(tmp_path, keep=2, protect=best)
    assert [c.step for c in checkpoints.every(tmp_path)] == [10, 30, 40]
    checkpoints.rotate(tmp_path, keep=1)
    assert [c.step for c in checkpoints.every(tmp_path)] == [40]
    make_checkpoint(tmp_path, 50, complete=False)  # an unmarked newer one never pushes out the last complete one
    checkpoints.rotate(tmp_path, keep=1)
    assert [c.step for c in checkpoints.complete(tmp_path)] == [40]
    checkpoints.remove_after(tmp_path, 40)
    assert [c.step for c in checkpoints.every(tmp_path)] == [40]


# --------------------------------------------------------------------------- the resume plan


def fake_run(out: Path, status: Status = Status.interrupted, steps=(2, 4), **fields) -> Path:
    """A run folder as a stopped run leaves it: config.yaml, run.json, marked checkpoints."""
    cfg = compose(["experiment=quickstart", f"output_dir={out}"])
    out.mkdir(parents=True, exist_ok=True)
    resolved = OmegaConf.structured(cfg)
    OmegaConf.save(resolved, out / "config.yaml")
    record.write(out, RunRecord(status=status, output_dir=str(out), steps=max(steps, default=0), **fields))
    for step in steps:
        make_checkpoint(out, step)
    return out


def plan_for(out: Path, *overrides: str) -> resume.Plan:
    return resume.plan(compose(["experiment=quickstart", f"output_dir={out}", *overrides]), out)


def test_resume_true_takes_the_newest_complete_checkpoint(tmp_path):
    out = fake_run(tmp_path / "run")
    make_checkpoint(out, 6, complete=False)
    found = plan_for(out, "resume=true")
    assert found.checkpoint.step == 4 and found.previous.status is Status.interrupted
    chosen = plan_for(out, f"resume={out}/checkpoints/checkpoint-2")
    assert chosen.checkpoint.step == 2


@pytest.mark.parametrize(
    "case,needle",
    [
        ("not_a_run", "is not a run folder (it has no run.json and config.yaml)"),
        ("no_checkpoint", "holds no complete checkpoint (the run stopped at step 0, before its first"),
        ("succeeded", "already finished (succeeded at step 4); nothing to resume"),
        ("diverged", "diverged (training diverged: the loss became nan"),
        ("path_missing", "no checkpoint folder there"),
        ("path_elsewhere", "is not a checkpoint of the run in output_dir="),
        ("path_incomplete", "this checkpoint is incomplete (its save was cut short)"),
    ],
)
def test_each_way_a_resume_cannot_go_on_is_one_line(tmp_path, case, needle):
    out = tmp_path / "run"
    how = "resume=true"
    if case == "not_a_run":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    elif case == "no_checkpoint":
        fake_run(out, status=Status.running, steps=())
    elif case == "succeeded":
        fake_run(out, status=Status.succeeded)
    elif case == "diverged":
        fake_run(out, status=Status.failed, diverged=True, error="training diverged: the loss became nan at step 3")
    elif case == "path_missing":
        fake_run(out)
        how = f"resume={out}/checkpoints/checkpoint-3"
    elif case == "path_elsewhere":
        other = fake_run(tmp_path / "other")
        fake_run(out)
        how = f"resume={other}/checkpoints/checkpoint-2"
    elif case == "path_incomplete":
        fake_run(out)
        make_checkpoint(out, 6, complete=False)
        how = f"resume={out}/checkpoints/checkpoint-6"
    with pytest.raises(ConfigError) as caught:
        plan_for(out, how)
    message = str(caught.value)
    assert needle in message and "\n" not in message and caught.value.key == "resume", message


def test_a_checkpoint_resumes_only_on_its_own_model_and_data(tmp_path):
    from aitraining.data import load_examples

    out = fake_run(tmp_path / "run")
    cfg = compose(["experiment=quickstart", "data.max_samples=40"])
    data = resume.fingerprint(load_examples(cfg.data, cfg.seed))
    assert data == resume.fingerprint(load_examples(cfg.data, cfg.seed))
    fewer = compose(["experiment=quickstart", "data.max_samples=39"])
    assert data != resume.fingerprint(load_examples(fewer.data, fewer.seed))  # how the data is read counts too
    found = plan_for(out, "resume=true")
    checkpoints.mark_complete(found.checkpoint, {"model": "tiny:llama", "data": data})
    resume.check_checkpoint(found, cfg, data)
    with pytest.raises(ConfigError, match=r"holds weights trained from model tiny:llama, not model.name=tiny:mistral"):
        resume.check_checkpoint(found, compose(["experiment=quickstart", "model.name=tiny:mistral"]), data)
    fewer = compose(["experiment=quickstart", "data.max_samples=30"])
    with pytest.raises(ConfigError, match=r"the training data differs from .* \(content hash \w+ then, \w+ now"):
        resume.check_checkpoint(found, fewer, resume.fingerprint(load_examples(fewer.data, fewer.seed)))


def resolved(*overrides: str) -> dict:
    return OmegaConf.to_container(OmegaConf.structured(compose(["experiment=quickstart", *overrides])),
                                  enum_to_str=True)  # fmt: skip


def test_changes_that_alter_the_run_are_listed_harmless_ones_allowed(tmp_path):
    out = fake_run(tmp_path / "run")
    harmless = ["trainer.logging_steps=1", "trainer.save_steps=7", "trainer.save_total_limit=5",
                "trainer.eval_steps=3", "project_name=renamed", "resume=true", "output_dir=/elsewhere",
                "logger=tensorboard", "export=merged", "trainer.samples=0"]  # fmt: skip
    resume.check_config(out, resolved(*harmless))
    with pytest.raises(ConfigError) as caught:
        resume.check_config(out, resolved("trainer.learning_rate=1e-4", "peft.r=8", "seed=1", "model.name=tiny:qwen2",
                                          "+trainer.args.weight_decay=0.1"))  # fmt: skip
    message = str(caught.value)
    assert "\n" not in message
    for change in ("trainer.learning_rate (0.005 -> 0.0001)", "peft.r (16 -> 8)", "seed (42 -> 1)",
                   "model.name (tiny:llama -> tiny:qwen2)", "trainer.args.weight_decay (absent -> 0.1)"):  # fmt: skip
        assert change in message, message
    for key in ("logging_steps", "save_steps", "project_name"):
        assert key not in message


def test_every_harmless_key_exists():
    flat = resume._flat(resolved("+trainer.args.disable_tqdm=true",
                                 "+trainer.args.dataloader_num_workers=0"))  # fmt: skip
    assert resume.HARMLESS <= set(flat), resume.HARMLESS - set(flat)


def test_the_resume_command_is_the_runs_overrides_plus_resume(tmp_path):
    overrides = ["experiment=quickstart", "trainer.learning_rate=1e-4", "output_dir=/old", "overwrite=true",
                 "data.path='my data.json'"]  # fmt: skip
    out = tmp_path / "my run"
    command = resume.command(overrides, out, config_dir="/home/me/exps")
    args = shlex.split(command)
    assert args[:5] == ["python", "-m", "aitraining", "--config-dir", "/home/me/exps"]
    assert args[5:] == ["experiment=quickstart", "trainer.learning_rate=1e-4", "data.path='my data.json'",
                        "resume=true", f"output_dir='{out}'"]  # fmt: skip
    # Hydra reads the quoted folder back as the folder
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides([args[-1]])[0]
    assert parsed.value() == str(out)


# --------------------------------------------------------------------------- the record and the folder


def test_segments_and_kept_round_trip(tmp_path):
    run = RunRecord(
        status=Status.interrupted,
        segments=[SegmentRecord(started=1.0, ended=2.0, wall_seconds=1.0, end_step=3, status="interrupted (SIGTERM)")],
        kept=record.KeptRecord(step=3, checkpoint="c", eval_loss=1.5, reason="lowest eval loss"),
        resume_command="python -m aitraining resume=true output_dir=x",
    )
    record.write(tmp_path, run)
    back = record.read(tmp_path)
    assert back == run
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "interrupted"


def test_an_unfinished_runs_folder_is_refused_with_the_command_that_resumes_it(tmp_path):
    command = "python -m aitraining experiment=quickstart resume=true output_dir=/x"
    out = fake_run(tmp_path / "run", checkpoint="/x/checkpoints/checkpoint-4", resume_command=command)
    with pytest.raises(ConfigError) as caught:
        record.check_output_dir(out, overwrite=False)
    assert f"did not finish (interrupted; last checkpoint at step 4): resume it with `{command}`" in str(caught.value)
    record.check_output_dir(out, overwrite=True)


def test_a_folder_in_use_is_refused(tmp_path):
    code = (
        "import sys, time; from pathlib import Path; from aitraining import record\n"
        "with record.holding(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError, match=rf"is in use by another aitraining process \(pid {holder.pid}\)"):
            with record.holding(tmp_path):
                pass
    finally:
        holder.kill()
        holder.wait()
    with record.holding(tmp_path):  # free again once that process is gone
        pass


# --------------------------------------------------------------------------- signals (real, in a child)

SIGNAL_CHILD = """
import os, signal, sys, time
from aitraining import interrupt
aborted = []
with interrupt.handling(on_abort=aborted.append) as stop:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.2)
    print("requested", stop.requested, stop.name, flush=True)
    if sys.argv[1] == "twice":
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
        print("not reached", flush=True)
print("after", interrupt.STOP.requested, signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, flush=True)
"""


def test_a_signal_asks_for_a_stop_and_a_second_aborts_at_once():
    once = subprocess.run([sys.executable, "-c", SIGNAL_CHILD, "once"], capture_output=True, text=True, timeout=60)
    assert once.returncode == 0, once.stderr
    assert once.stdout.split("\n")[:2] == ["requested True SIGTERM", "after False True"]
    assert "SIGTERM: finishing the current optimizer step, saving a checkpoint" in once.stderr
    twice = subprocess.run([sys.executable, "-c", SIGNAL_CHILD, "twice"], capture_output=True, text=True, timeout=60)
    assert twice.returncode == 128 + 2, twice.stderr  # SIGINT
    assert "not reached" not in twice.stdout and "SIGINT again: aborting now" in twice.stderr


# --------------------------------------------------------------------------- the existing tool's flags


def test_the_existing_tools_save_and_resume_flags(tmp_path):
    flags = ["--save-steps", "50", "--save-total-limit", "3", "--eval-strategy", "steps", "--resume",
             "--project-name", "fast-model"]  # fmt: skip
    request = parse(["llm", "--train", "--model", "tiny:llama", *flags])
    assert request is not None
    overrides = to_overrides(request.values, tmp_path)
    for expected in ("trainer.save_steps=50", "trainer.save_total_limit=3", "resume=true",
                     f"output_dir={tmp_path / 'fast-model'}"):  # fmt: skip
        assert expected in overrides, overrides
    off = parse(["llm", "--train", "--save-steps", "50", "--save-strategy", "no", "--eval-strategy", "no"])
    assert off is not None
    cfg = compose(to_overrides(off.values, tmp_path))
    assert cfg.trainer.save_steps == 0 and cfg.trainer.eval_steps == 0  # "no" wins over --save-steps
