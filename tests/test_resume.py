"""Long runs that survive, end to end on the tiny model: the same config gives the same run; SIGTERM,
SIGINT and kill -9 (also during a save) leave a run that resumes to exactly the uninterrupted one's
losses and adapter; a diverged run is not resumed; periodic evaluation, early stopping and the best
checkpoint; SFT, DPO, ORPO and full fine-tuning; a submitit job requeued after its preemption signal."""

from __future__ import annotations

import json
import shlex
import shutil
import signal
import sys
from pathlib import Path

import pytest

from aitraining import checkpoints
from conftest import PAIRS, TEXT, Background, Result, complete, losses, read_run, run_command, weights

pytestmark = pytest.mark.slow

# 8 steps of 4 examples, a checkpoint every 3 steps, every loss logged: seconds per run.
CONFIG = ["experiment=quickstart", "trainer.max_steps=8", "trainer.logging_steps=1", "data.max_samples=32",
          "model.max_seq_length=256", "trainer.batch_size=4", "trainer.save_steps=3"]  # fmt: skip
PREFERENCE = [f"data.path={PAIRS}", "data.format=auto", "trainer.max_prompt_length=48",
              "trainer.max_completion_length=32", "trainer.learning_rate=5e-4"]  # fmt: skip
KINDS = {"dpo": ["trainer=dpo", *PREFERENCE], "orpo": ["trainer=orpo", *PREFERENCE],
         "full": ["peft=none", "trainer.learning_rate=1e-4"]}  # fmt: skip
TOLERANCE = 1e-5  # the bound on CPU; the measured difference is printed (pytest -s)


def aitraining(env, cwd: Path, *args: str) -> Result:
    return run_command([sys.executable, "-m", "aitraining", *args], cwd, env, None)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("resume")


@pytest.fixture(scope="module")
def baseline(env, work) -> Path:
    """CONFIG, uninterrupted."""
    out = work / "baseline"
    result = aitraining(env, work, *CONFIG, f"output_dir={out}")
    assert result.returncode == 0, result.output[-3000:]
    return out


def assert_same_run(resumed: Path, reference: Path, resumed_at: int) -> float:
    """Same final step, same per-step losses after the resume point (within TOLERANCE), same weights."""
    ours, theirs = losses(resumed), losses(reference)
    assert sorted(ours) == sorted(theirs) == list(range(1, max(theirs) + 1))
    assert read_run(resumed)["steps"] == read_run(reference)["steps"] == max(theirs)
    largest = max(abs(ours[s] - theirs[s]) for s in theirs if s > resumed_at)
    print(f"\nlargest per-step loss difference after the resume at step {resumed_at}: {largest:.3g}")
    assert largest <= TOLERANCE
    assert weights(resumed) == weights(reference)
    return largest


# --------------------------------------------------------------------------- 0. the same config, the same run


def test_the_same_config_gives_the_same_run(env, work, baseline):
    again = work / "again"
    result = aitraining(env, work, *CONFIG, f"output_dir={again}")
    assert result.returncode == 0, result.output[-3000:]
    assert losses(again) == losses(baseline)  # exactly, every step
    assert weights(again) == weights(baseline)  # bit-identical adapter
    assert (again / "adapter" / "adapter_model.safetensors").read_bytes() == (
        baseline / "adapter" / "adapter_model.safetensors"
    ).read_bytes()


# --------------------------------------------------------------------------- 4. SIGTERM, then the printed command


def test_sigterm_saves_says_how_to_resume_and_the_resume_is_exact(env, work, baseline):
    out = work / "sigterm"
    run = Background(env, work, *CONFIG, f"output_dir={out}")
    run.wait_for(lambda: complete(out, 3), "a checkpoint at step 3")
    run.send(signal.SIGTERM)
    assert run.finish() == 128 + signal.SIGTERM, run.output[-3000:]
    record = read_run(out)
    stopped = record["steps"]
    assert record["status"] == "interrupted" and 3 <= stopped < 8
    assert record["checkpoint"] == str(out / "checkpoints" / f"checkpoint-{stopped}") and complete(out, stopped)
    assert record["segments"][0]["status"] == "interrupted (SIGTERM)" and record["segments"][0]["end_step"] == stopped
    command = record["resume_command"]
    assert command == shlex.join(["python", "-m", "aitraining", *CONFIG, "resume=true", f"output_dir={out}"])
    assert f"Interrupted by SIGTERM at step {stopped} of 8" in run.output and command in run.output
    assert "Traceback" not in run.output
    assert sorted(losses(out)) == list(range(1, stopped + 1))  # metrics.json up to the stop

    # Without resume=true the folder is refused, with the command that resumes it.
    refused = aitraining(env, work, *CONFIG, f"output_dir={out}")
    assert refused.returncode != 0 and f"resume it with `{command}`" in refused.output

    # The printed command, as printed.
    args = shlex.split(command)
    resumed = run_command([sys.executable, *args[1:]], work, env, None)
    assert resumed.returncode == 0, resumed.output[-3000:]
    assert f"resuming from {out / 'checkpoints' / f'checkpoint-{stopped}'}" in resumed.output
    assert_same_run(out, baseline, stopped)
    record = read_run(out)
    first, second = record["segments"]
    assert record["status"] == "succeeded" and second["status"] == "succeeded"
    assert second["start_step"] == stopped and second["resumed_from"].endswith(f"checkpoint-{stopped}")
    assert first["wall_seconds"] > 0 and second["wall_seconds"] > 0
    assert record["wall_seconds"] == pytest.approx(first["wall_seconds"] + second["wall_seconds"])
    assert record["started"] == first["started"] < second["started"]


def test_a_second_ctrl_c_aborts_at_once(env, work):
    out = work / "twice"
    # 8 forward passes per optimizer step: the second Ctrl-C comes well before the step ends
    slow = [*CONFIG, "trainer.save_steps=1", "trainer.gradient_accumulation=8", "trainer.batch_size=1"]
    run = Background(env, work, *slow, f"output_dir={out}")
    run.wait_for(lambda: complete(out, 1), "a checkpoint at step 1")
    run.send(signal.SIGINT)
    run.wait_for(lambda: "SIGINT: finishing the current optimizer step" in run.output, "the first SIGINT's warning")
    run.send(signal.SIGINT)
    assert run.finish() == 128 + signal.SIGINT, run.output[-3000:]
    assert "SIGINT again: aborting now, without a checkpoint of this step" in run.output
    record = read_run(out)
    assert record["status"] == "interrupted" and record["segments"][-1]["status"] == "aborted (SIGINT twice)"
    # nothing newer than the last periodic checkpoint counts; resume=true continues from it
    newest = checkpoints.newest(out)
    assert newest is not None and newest.step == record["steps"]
    assert all(c.complete or c.step > newest.step for c in checkpoints.every(out))


# --------------------------------------------------------------------------- kill -9


def test_kill_9_resumes_from_the_last_periodic_checkpoint(env, work, baseline):
    out = work / "killed"
    run = Background(env, work, *CONFIG, f"output_dir={out}")
    run.wait_for(lambda: complete(out, 3), "a checkpoint at step 3")
    run.send(signal.SIGKILL)
    assert run.finish() == -signal.SIGKILL
    record = read_run(out)
    assert record["status"] == "running" and record["checkpoint"].endswith("checkpoint-3") and record["steps"] == 3
    refused = aitraining(env, work, *CONFIG, f"output_dir={out}")
    assert refused.returncode != 0 and "That run did not finish (running; last checkpoint at step 3)" in refused.output
    resumed = aitraining(env, work, *CONFIG, f"output_dir={out}", "resume=true")
    assert resumed.returncode == 0, resumed.output[-3000:]
    assert_same_run(out, baseline, 3)
    first, second = read_run(out)["segments"]
    assert first["status"].startswith("killed") and first["end_step"] == 3 and second["start_step"] == 3


def test_a_kill_during_a_save_leaves_no_checkpoint_that_resume_would_pick(env, work, baseline):
    """kill -9 while the Trainer writes a checkpoint (caught between its folder appearing and the
    marker): the half-written folder is never resumed from, and the resume is still exact. Also
    shows save_steps is harmless: the baseline saved every 3 steps, this run every step."""
    out = work / "cut"
    every_step = [*CONFIG[:-1], "trainer.save_steps=1", "trainer.save_total_limit=20"]
    run = Background(env, work, *every_step, f"output_dir={out}")
    half: list[int] = []

    def mid_save() -> bool:
        for found in checkpoints.every(out) if checkpoints.folder(out).is_dir() else []:
            if found.step >= 2 and not found.complete:
                run.send(signal.SIGKILL)
                half.append(found.step)
                return True
        return False

    run.wait_for(mid_save, "a checkpoint being written", poll=0.001)
    run.finish()
    cut = half[0]
    partial = checkpoints.at(checkpoints.folder(out) / f"checkpoint-{cut}")
    assert partial is not None and not partial.complete  # the kill landed inside the save
    newest = checkpoints.newest(out)
    assert newest is not None and newest.step == cut - 1
    resumed = aitraining(env, work, *every_step, f"output_dir={out}", "resume=true", "trainer.save_total_limit=3")
    assert resumed.returncode == 0, resumed.output[-3000:]
    assert f"resuming from {out / 'checkpoints' / f'checkpoint-{cut - 1}'}" in resumed.output
    assert f"Removing {partial.path} (incomplete" in resumed.output
    assert_same_run(out, baseline, cut - 1)


# --------------------------------------------------------------------------- resume errors (on a real stopped run)


@pytest.fixture(scope="module")
def stopped(env, work) -> Path:
    """A pristine copy of a run stopped by SIGTERM after its checkpoint at step 3; copy it to use it."""
    out = work / "stopped-run"
    run = Background(env, work, *CONFIG, f"output_dir={out}")
    run.wait_for(lambda: complete(out, 3), "a checkpoint at step 3")
    run.send(signal.SIGTERM)
    assert run.finish() == 128 + signal.SIGTERM
    return out


@pytest.mark.parametrize(
    "case,extra,needle",
    [
        ("no_checkpoint", [], "holds no complete checkpoint"),
        ("not_a_run", [], "is not a run folder"),
        ("another_model", ["model.name=tiny:mistral"], "holds weights trained from model tiny:llama, not model.name"),
        (
            "changed",
            ["trainer.learning_rate=1e-3", "peft.r=8"],
            "in keys that change the run: peft.r (16 -> 8), trainer.learning_rate (0.005 -> 0.001).",
        ),
        ("incomplete_path", [], "this checkpoint is incomplete"),
    ],
)
def test_resume_errors_are_one_line(env, work, stopped, tmp_path, case, extra, needle):
    out = tmp_path / "run"
    shutil.copytree(stopped, out)
    how = "resume=true"
    if case == "no_checkpoint":
        shutil.rmtree(out / "checkpoints")
    elif case == "not_a_run":
        out = tmp_path / "empty"
        out.mkdir()
    elif case == "incomplete_path":
        newest = checkpoints.newest(out)
        assert newest is not None
        (newest.path / checkpoints.MARKER).unlink()
        how = f"resume={newest.path}"
    result = aitraining(env, tmp_path, *CONFIG, f"output_dir={out}", how, *extra)
    assert result.returncode == 2, result.output[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR:")]
    assert len(errors) == 1 and needle in errors[0], result.output[-3000:]
    assert "Traceback" not in result.output


def test_resume_from_a_chosen_checkpoint_drops_the_later_ones(env, work, stopped, baseline, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(stopped, out)
    newest = checkpoints.newest(out)
    assert newest is not None and newest.step > 3 and complete(out, 3)
    result = aitraining(env, tmp_path, *CONFIG, f"output_dir={out}", f"resume={out}/checkpoints/checkpoint-3")
    assert result.returncode == 0, result.output[-3000:]
    assert f"Removing {newest.path} (later than the checkpoint resumed from (step 3))" in result.output
    assert_same_run(out, baseline, 3)


# --------------------------------------------------------------------------- the NaN guard


def test_a_diverged_run_keeps_no_bad_checkpoint_and_is_not_resumed(env, work):
    out = work / "diverged"
    args = [*CONFIG, "trainer.learning_rate=1e38", "trainer.save_steps=1", "trainer.save_total_limit=20"]
    result = aitraining(env, work, *args, f"output_dir={out}")
    assert result.returncode != 0 and "training diverged" in result.output
    record = read_run(out)
    assert record["status"] == "failed" and record["diverged"] is True
    import torch
    from safetensors.torch import load_file

    for found in checkpoints.complete(out):  # whatever was marked complete holds finite weights
        tensors = load_file(found.path / "adapter_model.safetensors")
        assert all(torch.isfinite(t).all() for t in tensors.values()), found.path
    again = aitraining(env, work, *args, f"output_dir={out}", "resume=true")
    assert again.returncode == 2 and "diverged" in again.output and "not resumed as good" in again.output


# --------------------------------------------------------------------------- 5. periodic evaluation


def test_periodic_eval_early_stopping_and_the_best_checkpoint(env, work):
    """Trained on one repeated sentence, evaluated on other text: the eval loss rises after the first
    evaluations, early stopping ends the run, and the adapter saved is the best checkpoint's."""
    data = work / "narrow"
    data.mkdir()
    (data / "train.jsonl").write_text("\n".join(json.dumps({"text": "the cat sat on the mat. " * 8})
                                                for _ in range(64)))  # fmt: skip
    (data / "validation.jsonl").write_text("\n".join(TEXT.read_text().splitlines()[:8]))
    out = work / "early"
    args = ["experiment=quickstart", f"data.path={data}", "data.format=text", "trainer.max_steps=30",
            "trainer.batch_size=4", "trainer.logging_steps=1", "model.max_seq_length=256", "trainer.save_steps=1",
            "trainer.early_stopping_patience=2", "trainer.load_best_at_end=true", "trainer.save_total_limit=1",
            "trainer.learning_rate=2e-2"]  # fmt: skip
    result = aitraining(env, work, *args, f"output_dir={out}")
    assert result.returncode == 0, result.output[-3000:]
    history = json.loads((out / "metrics.json").read_text())
    evals = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h]
    record = read_run(out)
    stopped = record["steps"]
    assert stopped < 30, f"no early stop: {evals}"  # early stopping ended it
    assert [s for s, _ in evals] == [*range(1, stopped + 1), stopped]  # at each checkpoint, then the final one
    kept = record["kept"]
    during = {h["step"]: h["eval_loss"] for h in history[:-1] if "eval_loss" in h}  # the last: the final evaluation
    best = min(during, key=during.get)
    assert kept["step"] == best < stopped and kept["eval_loss"] == pytest.approx(during[best])
    assert kept["checkpoint"].endswith(f"checkpoint-{best}") and "lowest eval loss" in kept["reason"]
    assert f"early stopping ended the run at step {stopped} (2 evaluations" in kept["reason"]
    assert stopped - best == 2  # patience 2: two evaluations after the best
    # the best checkpoint survived save_total_limit=1, and the saved adapter is its adapter
    assert complete(out, best)
    from safetensors.torch import load_file

    saved = load_file(out / "adapter" / "adapter_model.safetensors")
    chosen = load_file(Path(kept["checkpoint"]) / "adapter_model.safetensors")
    assert saved.keys() == chosen.keys() and all((saved[k] == chosen[k]).all() for k in saved)
    assert record["loss"]["eval"] == pytest.approx(during[best], rel=1e-4)  # the final evaluation is the best's


# --------------------------------------------------------------------------- DPO, ORPO, full fine-tuning


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_other_trainers_and_full_weights_resume_exactly(env, work, kind):
    args = [*CONFIG, *KINDS[kind]]
    reference = work / f"{kind}-whole"
    result = aitraining(env, work, *args, f"output_dir={reference}")
    assert result.returncode == 0, result.output[-3000:]
    out = work / f"{kind}-stopped"
    run = Background(env, work, *args, f"output_dir={out}")
    run.wait_for(lambda: complete(out, 3), "a checkpoint at step 3")
    run.send(signal.SIGTERM)
    assert run.finish() == 128 + signal.SIGTERM, run.output[-3000:]
    stopped = read_run(out)["steps"]
    resumed = aitraining(env, work, *args, f"output_dir={out}", "resume=true")
    assert resumed.returncode == 0, resumed.output[-3000:]
    assert_same_run(out, reference, stopped)


# --------------------------------------------------------------------------- submitit: requeued, resumed


def test_a_preempted_submitit_job_is_requeued_and_resumes(env, work, baseline):
    """hydra/launcher=local (submitit's local executor): the job gets submitit's preemption signal
    (USR2) after a checkpoint; it stops cleanly, submitit requeues it, it resumes by itself."""
    sweep = work / "sweep"
    run = Background(env, work, "-m", *CONFIG, "hydra/launcher=local", f"hydra.sweep.dir={sweep}")
    out = sweep / "0"
    run.wait_for(lambda: complete(out, 3), "a checkpoint at step 3")
    pid = int((out / ".aitraining.lock").read_text().split()[1])  # the job's process, not the sweep's
    import os

    os.kill(pid, signal.SIGUSR2)
    assert run.finish() == 0, run.output[-3000:]
    record = read_run(out)
    first, second = record["segments"]
    assert record["status"] == "succeeded" and first["status"] == "interrupted (SIGUSR2)"
    assert second["resumed_from"].endswith(f"checkpoint-{first['end_step']}")
    assert_same_run(out, baseline, first["end_step"])
    logs = "".join(p.read_text() for p in (sweep / ".submitit").rglob("*_log.*"))
    assert "Requeued job" in logs and "the job is requeued and resumes" in logs
