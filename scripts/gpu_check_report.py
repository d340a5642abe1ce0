"""Print the GPU check's table from its runs' run.json files: tokens/s and peak GPU memory of
standard vs Unsloth loading, for each quantization, with the ratios.

    python scripts/gpu_check_report.py RUNS_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def load(folder: Path) -> dict:
    path = folder / "run.json"
    return json.loads(path.read_text()) if path.exists() else {"status": "missing"}


def cell(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main() -> None:
    runs = Path(sys.argv[1])
    print("| quant | accel requested | accel used | tokens/s | peak GPU GiB | loss first -> last | status |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    ratios = []
    for quant in ("none", "int4"):
        pair = {}
        for accel in ("none", "unsloth"):
            run = load(runs / f"{accel}-{quant}")
            pair[accel] = run
            used = run.get("accelerator", {}).get("used", "-")
            loss = run.get("loss", {})
            print(
                f"| {quant} | {accel} | {used} | {cell(run.get('tokens_per_second'), ',.0f')} | "
                f"{cell(run.get('peak_gpu_memory_gib'), '.2f')} | {cell(loss.get('train_first'), '.3f')} -> "
                f"{cell(loss.get('train_last'), '.3f')} | {run.get('status')} {run.get('error', '')} |"
            )
        base, fast = pair["none"], pair["unsloth"]
        if base.get("tokens_per_second") and fast.get("tokens_per_second"):
            speed = fast["tokens_per_second"] / base["tokens_per_second"]
            memory = (fast.get("peak_gpu_memory_gib") or 0) / (base.get("peak_gpu_memory_gib") or 1)
            ratios.append(f"quant={quant}: Unsloth/standard tokens/s = {speed:.2f}x, peak memory = {memory:.2f}x")
    print()
    for line in ratios:
        print(line)


if __name__ == "__main__":
    main()
