"""DDP equivalence: 2 processes x batch 2 against 1 process x batch 4, same data, seed and steps.

    python scripts/bench_ddp.py [--examples 64] [--epochs 2] [--out docs/ddp_equivalence.png]

Both arms run the tiny llama on the shipped Alpaca sample (CPU, gloo), LoRA without dropout (dropout
draws different masks per process, which is not what is compared), logging every step: the first with
`torchrun --standalone --nproc_per_node 2 -m aitraining trainer.batch_size=2`, the second with
`python -m aitraining trainer.batch_size=4`. Same global batch (4), so the same optimizer steps per
epoch; each optimizer step sees the same four examples (accelerate hands each process every other
batch of the same seeded order). Prints the steps, the largest loss difference and a markdown table,
and draws both loss curves side by side.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

COMMON = ["experiment=quickstart", "trainer.max_steps=-1", "trainer.logging_steps=1", "peft.dropout=0",
          "model.max_seq_length=256", "seed=7"]  # fmt: skip


def run(command: list[str], out: Path) -> tuple[dict, list[tuple[int, float]]]:
    done = subprocess.run([*command, f"output_dir={out}"], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{done.stderr[-3000:]}")
    run_record = json.loads((out / "run.json").read_text())
    history = json.loads((out / "metrics.json").read_text())
    return run_record, [(h["step"], h["loss"]) for h in history if "loss" in h]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--out", type=Path, default=Path("docs/ddp_equivalence.png"))
    parser.add_argument("overrides", nargs="*", help="more overrides for both arms")
    args = parser.parse_args()
    data = [f"data.max_samples={args.examples}", f"trainer.epochs={args.epochs}", *args.overrides]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    with tempfile.TemporaryDirectory() as tmp:
        two, two_curve = run([*torchrun, "-m", "aitraining", *COMMON, *data, "trainer.batch_size=2"], Path(tmp) / "2x2")
        one, one_curve = run(
            [sys.executable, "-m", "aitraining", *COMMON, *data, "trainer.batch_size=4"], Path(tmp) / "1x4"
        )
    steps_per_epoch = {name: r["steps"] / args.epochs for name, r in (("2x2", two), ("1x4", one))}
    diffs = [abs(a - b) for (_, a), (_, b) in zip(two_curve, one_curve)]
    worst = max(range(len(diffs)), key=diffs.__getitem__)
    print(f"{args.examples} examples, {args.epochs:g} epochs, tiny llama, CPU (gloo), LoRA r=16 without dropout")
    print("| arm | processes x batch | global batch | optimizer steps | per epoch | first loss | last loss |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, r, curve in (("torchrun", two, two_curve), ("one process", one, one_curve)):
        arm = f"{r['world_size']} x {r['global_batch_size'] // r['world_size']}"
        print(f"| {name} | {arm} | {r['global_batch_size']} | {r['steps']} | {r['steps'] / args.epochs:g} | "
              f"{curve[0][1]:.4f} | {curve[-1][1]:.4f} |")  # fmt: skip
    print(f"largest |loss difference| over {len(diffs)} logged steps: {diffs[worst]:.2e} (step {two_curve[worst][0]}); "
          f"mean {sum(diffs) / len(diffs):.2e}")  # fmt: skip
    assert steps_per_epoch["2x2"] == steps_per_epoch["1x4"], steps_per_epoch

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    left.plot(*zip(*one_curve), label="1 process x batch 4", linewidth=3, alpha=0.5)
    left.plot(*zip(*two_curve), label="2 processes x batch 2 (torchrun)", linestyle="--")
    left.set(xlabel="optimizer step", ylabel="train loss", title="loss curves")
    left.legend()
    right.plot([s for s, _ in two_curve], diffs, marker=".")
    right.set(xlabel="optimizer step", ylabel="|difference|", title="2x2 minus 1x4", yscale="log")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"figure: {args.out}")


if __name__ == "__main__":
    main()
