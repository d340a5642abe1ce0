"""Packing benchmark: non-padding tokens per second with and without `trainer.packing` on the
shipped Alpaca sample (tiny llama, CPU), medians over repeated runs, measured side by side.

    python scripts/bench_packing.py [--steps 40] [--repeats 3] [--max-seq-length 512]

Both arms run `python -m aitraining experiment=quickstart` with the same steps, batch size and
max_seq_length; tokens/s is TRL's count of real (non-pad) tokens over the training time, from
run.json. Without a flash-attention kernel (CPU, sdpa), a packed batch is one long row whose
attention is computed over its whole length, so long rows cost quadratically: keep
max_seq_length modest here, and expect packing to pay off on a GPU with flash attention.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def run(packing: bool, steps: int, max_len: int, out: Path) -> dict:
    cmd = [sys.executable, "-m", "aitraining", "experiment=quickstart", f"trainer.max_steps={steps}",
           f"trainer.packing={str(packing).lower()}", "trainer.logging_steps=10", f"model.max_seq_length={max_len}",
           f"output_dir={out}"]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads((out / "run.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-seq-length", type=int, default=512)
    args = parser.parse_args()
    speeds: dict[bool, list[float]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            for packing in (False, True):  # interleaved, so drift hits both arms alike
                result = run(packing, args.steps, args.max_seq_length, Path(tmp) / f"{packing}-{i}")
                speeds[packing].append(result["tokens_per_second"])
                pad = result["data"]["padding_share_without_packing"]
    plain, packed = statistics.median(speeds[False]), statistics.median(speeds[True])
    print(f"alpaca sample, tiny llama, {args.steps} steps x batch 8, max_seq_length {args.max_seq_length}, "
          f"median of {args.repeats}")  # fmt: skip
    print(f"padding share without packing: {pad:.1%}; with packing (bfd, padding-free): 0.0%")
    print(f"non-padding tokens/s  unpacked: {plain:,.0f}  packed: {packed:,.0f}")
    print(f"ratio packed/unpacked: {packed / plain:.2f}x")


if __name__ == "__main__":
    main()
