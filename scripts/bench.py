"""Benchmarks of the runner against its floor, measured side by side in one run (ratios, medians).

    python scripts/bench.py                 # all four, about 20 minutes on 2 CPU cores
    python scripts/bench.py overhead        # 1. python -m aitraining vs a hand-written TRL script
    python scripts/bench.py startup         # 2. --cfg job / --help vs `python -c "import hydra"`
    python scripts/bench.py data            # 3. data preparation vs datasets.map with the tokenizer
    python scripts/bench.py data --rows 1000000 # the same on a 1M-row JSONL
    python scripts/bench.py streaming       # 4. 3 steps streamed: the sample vs the sample x100
    python scripts/bench.py checkpoints     # 5. the overhead job without and with checkpoints
    python scripts/bench.py --quick         # a tiny budget (the test suite's smoke test)

1. Overhead: the same job (a ~20M-parameter llama-shaped model built offline, the Alpaca sample,
   fixed steps, batch 8, max length 512, LoRA r=16 on the seven projections, fp32 on CPU) run as
   `python -m aitraining ...` and as scripts/bench_trl_baseline.py; whole-process wall time, time
   from process start to the first optimizer step, and peak RSS, each the median of the repeats.
2. Start-up: wall time of each command against `python -c "import hydra"` (the floor).
3. Data: examples per second and peak RSS for reading, formatting and tokenizing the Alpaca sample
   repeated to a JSONL of --rows examples (aitraining.data + aitraining.data.encode, with the cache off,
   and again from a warm cache) against `datasets.load_dataset("json")` + `Dataset.map(tokenizer,
   batched=True)` on the concatenated text.
4. Streaming: 3 steps on the tiny model, the shipped sample streamed against the sample repeated 100
   times as a JSONL, streamed, and read whole with a cold and a warm data cache (`python scripts/bench.py
   streaming`): whole-process wall time and peak RSS.
3. Data: examples per second for reading, formatting and tokenizing the Alpaca sample repeated to
   50k examples (aitraining.data + aitraining.data.encode) against `datasets.load_dataset("json")` +
   `Dataset.map(tokenizer, batched=True)` on the concatenated text.
5. Checkpoints: the overhead job as `python -m aitraining` with `trainer.save_steps=0` (none) and with
   a checkpoint every `--save-every` steps (default 10: three in 30 steps, far more often than the
   shipped default), interleaved; the wall-time ratio, the cost of one checkpoint, and from it the
   share of wall time checkpointing takes at the shipped default `trainer.save_steps`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ALPACA = REPO / "aitraining" / "samples" / "alpaca_en_demo.json"
PY = sys.executable


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, int, str]:
    """Wall seconds, peak RSS (MiB) and stdout of one child process."""
    wall, rss, out, _ = timed_cpu(cmd, env)
    return wall, rss, out


def timed_cpu(cmd: list[str], env: dict | None = None) -> tuple[float, int, str, float]:
    """`timed`, and the child's CPU seconds (user + system): what other work on the machine hardly changes."""
    start = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=REPO)
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}")
    return time.time() - start, usage.ru_maxrss // 1024, out, usage.ru_utime + usage.ru_stime


def median(values: list[float]) -> float:
    return statistics.median(values)


def print_table(results: dict[str, dict[str, list[float]]], baseline: str, width: int, columns) -> None:
    """One row per arm: each column's median (formatted) and its ratio to the baseline arm's median."""
    base = {key: median(values) for key, values in results[baseline].items()}
    print(f"{'':{width}}" + "".join(f"{title:>12}{'ratio':>8}" for _, title, _ in columns))
    for name, figures in results.items():
        cells = [f"{form.format(median(figures[key])):>12}{median(figures[key]) / base[key]:>8.2f}"
                 for key, _, form in columns]  # fmt: skip
        print(f"{name:{width}}" + "".join(cells))


# --------------------------------------------------------------------------- 1. overhead


def build_model(folder: Path, quick: bool) -> None:
    """A llama-shaped model of ~20M parameters (~1M with --quick), tiny tokenizer, random weights."""
    hidden, intermediate, layers = (128, 256, 2) if quick else (512, 1376, 6)
    code = f"""
import torch
from transformers import AutoModelForCausalLM, LlamaConfig
from aitraining import tiny
tok = tiny.build_tokenizer()
cfg = LlamaConfig(vocab_size=len(tok), hidden_size={hidden}, intermediate_size={intermediate},
                  num_hidden_layers={layers}, num_attention_heads=8, num_key_value_heads=4,
                  max_position_embeddings=2048,
                  bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
torch.manual_seed(0)
model = AutoModelForCausalLM.from_config(cfg)
print(sum(p.numel() for p in model.parameters()))
model.save_pretrained({str(folder)!r}); tok.save_pretrained({str(folder)!r})
"""
    params = subprocess.run([PY, "-c", code], check=True, capture_output=True, text=True, cwd=REPO).stdout.split()[-1]
    print(f"model: llama-shaped, {int(params) / 1e6:.1f}M parameters")


def aitraining_command(model: Path, out: Path, steps: int, batch: int, max_len: int, *extra: str) -> list[str]:
    """The overhead job as `python -m aitraining`."""
    return [PY, "-m", "aitraining", f"model.name={model}", f"model.max_seq_length={max_len}", "model.dtype=float32",
            "data=alpaca_sample", f"trainer.max_steps={steps}", f"trainer.batch_size={batch}",
            "trainer.learning_rate=2e-4", "trainer.gradient_checkpointing=false", "trainer.logging_steps=10",
            "peft.r=16", "peft.alpha=32", f"output_dir={out}", *extra]  # fmt: skip


def overhead(repeats: int, steps: int, quick: bool = False) -> None:
    work = Path(tempfile.mkdtemp(prefix="aitraining-bench-"))
    try:
        build_model(work / "model", quick)
        batch, max_len = 8, 512
        runs: dict[str, dict[str, list[float]]] = {"trl": {}, "aitraining": {}}
        for i in range(repeats):
            for arm in ("trl", "aitraining"):  # interleaved: drift hits both arms alike
                out = work / f"{arm}-{i}"
                if arm == "trl":
                    cmd = [PY, "scripts/bench_trl_baseline.py", str(work / "model"), str(ALPACA), str(out), str(steps),
                           str(batch), str(max_len)]  # fmt: skip
                else:
                    cmd = aitraining_command(work / "model", out, steps, batch, max_len)
                start = time.time()
                wall, rss, stdout = timed(cmd)
                if arm == "trl":
                    first = float(
                        next(line.split()[1] for line in stdout.splitlines() if line.startswith("FIRST_STEP_AT"))
                    )
                else:
                    first = json.loads((out / "run.json").read_text())["first_step_at"]
                for key, value in (("wall", wall), ("first_step", first - start), ("rss", rss)):
                    runs[arm].setdefault(key, []).append(value)
        print(f"\n1. Overhead: {steps} steps x batch {batch}, max length {max_len}, median of {repeats}")
        print(f"{'':24}{'TRL script':>12}{'aitraining':>12}{'ratio':>8}")
        for key, label, unit in (("wall", "wall time", "s"), ("first_step", "time to first step", "s"),
                                 ("rss", "peak memory (RSS)", "MiB")):  # fmt: skip
            a, b = median(runs["trl"][key]), median(runs["aitraining"][key])
            print(f"{label:24}{a:>11.2f}{unit[0]}{b:>11.2f}{unit[0]}{b / a:>8.3f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --------------------------------------------------------------------------- 4. checkpoints


def save_seconds(folder: Path) -> float:
    """How long a checkpoint took to write: from its first file to aitraining's completion marker."""
    files = [p for p in folder.iterdir() if p.is_file()]
    marker = folder / "aitraining_checkpoint.json"
    return marker.stat().st_mtime - min(p.stat().st_mtime for p in files if p != marker)


def checkpoint_cost(repeats: int, steps: int, every: int, quick: bool = False) -> None:
    from aitraining.compose import compose

    default = compose([]).trainer.save_steps
    work = Path(tempfile.mkdtemp(prefix="aitraining-bench-ckpt-"))
    try:
        build_model(work / "model", quick)
        batch, max_len = 8, 512
        walls: dict[int, list[float]] = {0: [], every: []}
        cpus: dict[int, list[float]] = {0: [], every: []}
        train_seconds: list[float] = []
        saves: list[float] = []  # seconds from a checkpoint's first file to its completion marker
        for i in range(repeats):
            for save in (0, every):  # interleaved: drift hits both arms alike
                out = work / f"save{save}-{i}"
                wall, _, _, cpu = timed_cpu(aitraining_command(work / "model", out, steps, batch, max_len,
                                                               f"trainer.save_steps={save}"))  # fmt: skip
                walls[save].append(wall)
                cpus[save].append(cpu)
                saved = len(list((out / "checkpoints").glob("checkpoint-*")))
                saves += [save_seconds(folder) for folder in (out / "checkpoints").glob("checkpoint-*")]
                if save == 0:
                    train_seconds.append(json.loads((out / "run.json").read_text())["train_seconds"])
                shutil.rmtree(out)
        count = steps // every
        a, b = median(walls[0]), median(walls[every])
        per_checkpoint = (b - a) / count
        per_step = median(train_seconds) / steps
        print(f"\n4. Checkpoints: {steps} steps x batch {batch}, max length {max_len}, median of {repeats}")
        print(f"{'':24}{'none':>12}{f'every {every}':>12}{'ratio':>8}")
        print(f"{'whole-process wall time':24}{a:>11.2f}s{b:>11.2f}s{b / a:>8.3f}")
        c, d = median(cpus[0]), median(cpus[every])
        print(f"{'process CPU time':24}{c:>11.2f}s{d:>11.2f}s{d / c:>8.3f}")
        print(f"checkpoints saved: {count} (the last run kept {saved}: trainer.save_total_limit)")
        save = median(saves)
        print(f"one checkpoint: {per_checkpoint:.3f} s from the wall times, {save:.3f} s from its files "
              f"(first file to marker, median of {len(saves)}); one optimizer step: {per_step:.3f} s")  # fmt: skip
        for label, cost in (("wall times", per_checkpoint), ("files", save)):
            print(f"at the default trainer.save_steps={default} ({label}): "
                  f"{100 * max(cost, 0.0) / (default * per_step):.3f}% of the training time")  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --------------------------------------------------------------------------- 2. start-up


def startup(repeats: int) -> None:
    cli = shutil.which("aitraining", path=str(Path(PY).parent)) or shutil.which("aitraining")
    commands = {
        'python -c "import hydra"': [PY, "-c", "import hydra"],
        "python -m aitraining --cfg job": [PY, "-m", "aitraining", "experiment=quickstart", "--cfg", "job"],
        "python -m aitraining --help": [PY, "-m", "aitraining", "--help"],
    }
    if cli:
        commands["aitraining llm --help"] = [cli, "llm", "--help"]
    times = {name: median([timed(cmd)[0] for _ in range(repeats)]) for name, cmd in commands.items()}
    floor = times['python -c "import hydra"']
    print(f"\n2. Start-up, median of {repeats} (floor: import hydra)")
    for name, seconds in times.items():
        print(f"{name:36}{seconds:>7.3f}s  +{seconds - floor:.3f}s over the floor")
    check = [PY, "-X", "importtime", "-m", "aitraining", "experiment=quickstart", "--cfg", "job"]
    stderr = subprocess.run(check, capture_output=True, text=True, cwd=REPO).stderr
    heavy = {"torch", "transformers", "trl", "peft"} & {ln.split("|")[-1].strip() for ln in stderr.splitlines()}
    print(f"heavy modules imported by --cfg job: {sorted(heavy) or 'none'}")


# --------------------------------------------------------------------------- 3. data


def data(n_examples: int, repeats: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="aitraining-bench-data-"))
    try:
        rows = json.loads(ALPACA.read_text())
        path = work / f"alpaca_{n_examples}.jsonl"
        with path.open("w") as handle:  # the sample repeated: one JSON object per line
            for i in range(n_examples):
                handle.write(json.dumps(rows[i % len(rows)]) + "\n")
        common = """
import time
import datasets  # imported before the clock, as in the other arms
from transformers import AutoTokenizer
from aitraining import tiny
tok = AutoTokenizer.from_pretrained(tiny.ensure_tiny("tiny:llama"))
"""
        code_ours = (
            common
            + f"""
from aitraining.config import Config, DataConfig, ModelConfig
from aitraining.data import load_examples
from aitraining.data.encode import prepare
from aitraining.trainers.sft import SFTTrainerConfig
cfg = Config(model=ModelConfig(name="tiny:llama", max_seq_length=2048), trainer=SFTTrainerConfig(),
             data=DataConfig(path={str(path)!r}, cache=CACHE, cache_dir={str(work / "cache")!r}))
t0 = time.time()
examples = load_examples(cfg.data)
encoded = prepare(examples, tok, cfg, None)
print(time.time() - t0, len(encoded.train))
"""
        )
        code_direct = (
            common
            + f"""
from datasets import load_dataset
t0 = time.time()
ds = load_dataset("json", data_files={str(path)!r}, split="train", cache_dir={str(work / "hf")!r})
def fmt(batch):
    texts = [f"### Instruction:\\n{{i}}\\n\\n### Input:\\n{{x}}\\n\\n### Response:\\n{{o}}"
             for i, x, o in zip(batch["instruction"], batch["input"], batch["output"])]
    return tok(texts)
ds = ds.map(fmt, batched=True, remove_columns=ds.column_names)
print(time.time() - t0, len(ds))
"""
        )
        arms = {
            "datasets.map": code_direct,
            "aitraining": code_ours.replace("CACHE", "False"),
            "aitraining, cache hit": code_ours.replace("CACHE", "True"),
        }
        results: dict[str, dict[str, list[float]]] = {name: {"rate": [], "rss": []} for name in arms}
        subprocess.run([PY, "-c", arms["aitraining, cache hit"]], check=True, capture_output=True, cwd=REPO)  # fill
        for _ in range(repeats):
            shutil.rmtree(work / "hf", ignore_errors=True)  # no cache hits for the direct arm
            for name, code in arms.items():
                _, rss, out = timed([PY, "-c", code])
                seconds, count = out.split()[-2:]
                results[name]["rate"].append(int(count) / float(seconds))
                results[name]["rss"].append(rss)
        print(
            f"\n3. Data preparation, {n_examples:,} Alpaca examples (a {path.stat().st_size / 1e6:.0f} MB JSONL), "
            f"median of {repeats}"
        )
        print_table(results, "datasets.map", 34, [("rate", "examples/s", "{:,.0f}"), ("rss", "peak RSS", "{:,.0f}Mi")])
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --------------------------------------------------------------------------- 4. streaming


def streaming(repeats: int, times: int, steps: int) -> None:
    """The same few steps on the shipped sample and on the sample repeated `times` times as a JSONL, both
    streamed (and the big file read whole, from a cold and a warm cache): whole-process wall time and
    peak RSS, interleaved, medians."""
    work = Path(tempfile.mkdtemp(prefix="aitraining-bench-stream-"))
    try:
        rows = json.loads(ALPACA.read_text())
        big = work / f"alpaca_x{times}.jsonl"
        with big.open("w") as handle:
            for _ in range(times):
                handle.writelines(json.dumps(r) + "\n" for r in rows)
        base = [PY, "-m", "aitraining", "experiment=quickstart", f"trainer.max_steps={steps}",
                "trainer.logging_steps=1", "data.format=alpaca"]  # fmt: skip
        arms = {
            "sample, streamed": [*base, "data=alpaca_sample", "data.streaming=true"],
            "sample, read whole, cache warm": [*base, "data=alpaca_sample", f"data.cache_dir={work / 'c'}"],
            f"x{times} JSONL, streamed": [*base, f"data.path={big}", "data.streaming=true"],
            f"x{times} JSONL, read whole, cache cold": [*base, f"data.path={big}", "data.cache=false"],
            f"x{times} JSONL, read whole, cache warm": [*base, f"data.path={big}", f"data.cache_dir={work / 'c'}"],
        }
        for fill in ("sample, read whole, cache warm", f"x{times} JSONL, read whole, cache warm"):
            timed([*arms[fill], f"output_dir={work / fill.replace(' ', '_').replace(',', '')}"])  # fills the cache
        results: dict[str, dict[str, list[float]]] = {name: {"wall": [], "rss": []} for name in arms}
        for i in range(repeats):
            for n, (name, cmd) in enumerate(arms.items()):
                wall, rss, _ = timed([*cmd, f"output_dir={work / f'run-{i}-{n}'}"])
                results[name]["wall"].append(wall)
                results[name]["rss"].append(rss)
        print(
            f"\n4. Streaming: {steps} steps on the sample ({len(rows)} rows) and on it x{times} "
            f"({big.stat().st_size / 1e6:.0f} MB JSONL), median of {repeats}"
        )
        print_table(results, "sample, streamed", 44, [("wall", "wall", "{:.1f}s"), ("rss", "peak RSS", "{:,.0f}Mi")])
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", nargs="*", choices=["overhead", "startup", "data", "streaming", "checkpoints", []],
                        default=[])  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="tiny budget: checks the script runs")
    parser.add_argument("--rows", type=int, default=50_000, help="examples in the data benchmark's JSONL")
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps of the overhead and checkpoint jobs")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each arm (the median is reported)")
    parser.add_argument("--save-every", type=int, default=10, help="checkpoints: the checkpointing arm's save_steps")
    args = parser.parse_args()
    which = args.which or ["startup", "data", "overhead", "checkpoints"]
    print(f"machine: {os.cpu_count()} CPU cores, Python {sys.version.split()[0]}")
    if "startup" in which:
        startup(repeats=1 if args.quick else 7)
    if "data" in which:
        data(n_examples=500 if args.quick else args.rows, repeats=1 if args.quick else args.repeats)
    if "streaming" in which:
        streaming(repeats=1 if args.quick else args.repeats, times=2 if args.quick else 100, steps=3)
    if "overhead" in which:
        overhead(repeats=1 if args.quick else args.repeats, steps=1 if args.quick else args.steps, quick=args.quick)
    if "checkpoints" in which:
        checkpoint_cost(repeats=1 if args.quick else args.repeats, steps=2 if args.quick else args.steps,
                        every=1 if args.quick else args.save_every, quick=args.quick)  # fmt: skip


if __name__ == "__main__":
    main()
