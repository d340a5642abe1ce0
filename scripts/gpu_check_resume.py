"""GPU check, resume arm: checkpoint, SIGTERM and resume with Unsloth on the GPU (bf16, its kernels).

Three runs of one config, each loss logged: the whole run; the same run stopped by SIGTERM after its
first checkpoint; that run resumed with `resume=true`. Prints whether the stop was clean (exit 143,
run.json interrupted, a complete checkpoint of the step reached), whether the resume finished, and
the largest per-step loss difference after the resume point and whether the adapters are identical
(on CPU both are exact; GPU kernels may differ in the last bits). Markdown, for docs/gpu_check.md.

    python scripts/gpu_check_resume.py WORKDIR MODEL DATA [STEPS] [ACCEL]
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path


def losses(out: Path) -> dict[int, float]:
    return {h["step"]: h["loss"] for h in json.loads((out / "metrics.json").read_text()) if "loss" in h}


def complete(out: Path, step: int) -> bool:
    return (out / "checkpoints" / f"checkpoint-{step}" / "aitraining_checkpoint.json").exists()


def main() -> None:
    work, model, data = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    steps = int(sys.argv[4]) if len(sys.argv) > 4 else 20
    accel = sys.argv[5] if len(sys.argv) > 5 else "unsloth"
    every = max(1, steps // 4)
    args = [sys.executable, "-m", "aitraining", "project_name=gpu_check_resume", f"model.name={model}",
            "model.max_seq_length=2048", "data=custom", f"data.path={data}", "data.format=text",
            f"trainer.max_steps={steps}", "trainer.batch_size=4", "trainer.logging_steps=1",
            f"trainer.save_steps={every}", "trainer.gradient_checkpointing=true", "peft.r=16", "peft.alpha=32",
            f"accel={accel}"]  # fmt: skip
    whole, stopped = work / f"resume-{accel}-whole", work / f"resume-{accel}-stopped"
    rows = []
    done = subprocess.run([*args, f"output_dir={whole}"], capture_output=True, text=True)
    rows.append(("uninterrupted run", f"exit {done.returncode}"))
    log = (work / f"resume-{accel}-stopped.log").open("w")
    proc = subprocess.Popen([*args, f"output_dir={stopped}"], stdout=log, stderr=subprocess.STDOUT)
    while not complete(stopped, every) and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    code = proc.wait()
    record = json.loads((stopped / "run.json").read_text()) if (stopped / "run.json").exists() else {}
    at = record.get("steps")
    clean = code == 143 and record.get("status") == "interrupted" and at is not None and complete(stopped, at)
    rows.append(("SIGTERM after the first checkpoint", f"exit {code}, status {record.get('status')}, step {at}, "
                 f"checkpoint complete: {clean}"))  # fmt: skip
    resumed = subprocess.run([*args, f"output_dir={stopped}", "resume=true"], capture_output=True, text=True)
    record = json.loads((stopped / "run.json").read_text())
    rows.append(("resume=true", f"exit {resumed.returncode}, status {record.get('status')}, "
                 f"{len(record.get('segments', []))} segments, step {record.get('steps')} of {steps}"))  # fmt: skip
    if done.returncode == 0 and resumed.returncode == 0 and at is not None:
        ours, theirs = losses(stopped), losses(whole)
        after = [s for s in theirs if s > at]
        largest = max(abs(ours[s] - theirs[s]) for s in after) if after else 0.0
        same = (stopped / "adapter" / "adapter_model.safetensors").read_bytes() == (
            whole / "adapter" / "adapter_model.safetensors"
        ).read_bytes()
        span = f"{largest:.3g} over steps {after[0]}-{after[-1]}" if after else "-"
        rows.append(("largest per-step loss difference after the resume", span))
        rows.append(("adapter bit-identical to the uninterrupted run's", str(same)))
    else:
        rows.append(("error", (done.stderr + resumed.stderr)[-500:].replace("\n", " ")))
    print(f"\n### Checkpoint and resume, accel={accel} ({steps} steps, a checkpoint every {every})\n")
    print("| check | result |\n| --- | --- |")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
