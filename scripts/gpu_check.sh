#!/usr/bin/env bash
# GPU check: standard transformers/PEFT vs Unsloth on a Llama-3.2-1B-shaped model with random
# weights (no download), bf16, LoRA r=16 on the seven projections, sequence length 2048, the same
# data and steps; once with quant=none and once with quant=int4. Prints tokens/s and peak GPU
# memory for each run and the Unsloth/standard ratios (markdown, also in $OUT/gpu_check.md). Then
# checkpoint/resume with Unsloth: a run stopped by SIGTERM and resumed against the whole run
# (scripts/gpu_check_resume.py).
#
# On a GPU machine that lacks trl/datasets/bitsandbytes/unsloth/hydra, build their wheels here first
# (../shared/tools/gpu-wheels.sh .whl) and carry .whl; this script installs them when they are missing.
#   bash scripts/gpu_check.sh            # GPU: the real check (about 4 minutes on an H100/H200)
#   bash scripts/gpu_check.sh --small    # CPU: a dry run of the script with a tiny model
# Then the Liger arm: the same standard quant=none run with model.liger_kernel=true (TRL's use_liger_kernel),
# when liger-kernel is installed or its wheel is in .whl (pip download --no-deps liger-kernel==0.8.5 -d .whl).
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -d .whl ] && ! ${PY:-python3} -c "import trl, hydra" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONPATH=${PYTHONPATH:-$PWD} HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
PY=${PY:-python3}
OUT=${OUT:-/tmp/gpu_check_out}; WORK=${WORK:-/tmp/gpu_check_work}; STEPS=${STEPS:-25}; RSTEPS=${RSTEPS:-20}
rm -rf "$WORK"; mkdir -p "$OUT" "$WORK"
SMALL=""; [ "${1:-}" = "--small" ] && SMALL="--small" && STEPS=3 && RSTEPS=4
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no GPU"
$PY -c "import torch, transformers, trl, peft, bitsandbytes; print('torch', torch.__version__, '| transformers', transformers.__version__, '| trl', trl.__version__, '| peft', peft.__version__, '| bitsandbytes', bitsandbytes.__version__)"
$PY scripts/gpu_check_setup.py "$WORK" $SMALL || exit 1
for quant in none int4; do
  for accel in none unsloth; do
    start=$(date +%s)
    $PY -m aitraining project_name=gpu_check model.name="$WORK/llama-3.2-1b-random" model.max_seq_length=2048 \
      data=custom data.path="$WORK/long.jsonl" data.format=text trainer.max_steps="$STEPS" trainer.batch_size=4 \
      trainer.logging_steps=5 trainer.gradient_checkpointing=true peft.r=16 peft.alpha=32 accel=$accel quant=$quant \
      output_dir="$WORK/runs/$accel-$quant" > "$OUT/$accel-$quant.log" 2>&1
    rc=$?
    echo "accel=$accel quant=$quant: exit $rc in $(( $(date +%s) - start )) s"
    grep -E "WARNING: Unsloth|ERROR" "$OUT/$accel-$quant.log" | head -3
    [ $rc -eq 0 ] || tail -c 1500 "$OUT/$accel-$quant.log"
  done
done
$PY scripts/gpu_check_report.py "$WORK/runs" | tee "$OUT/gpu_check.md"
# Checkpoint, SIGTERM and resume with Unsloth on the GPU (about a minute): exact on CPU; here measured.
$PY scripts/gpu_check_resume.py "$WORK" "$WORK/llama-3.2-1b-random" "$WORK/long.jsonl" "$RSTEPS" unsloth | tee -a "$OUT/gpu_check.md"
# The Liger arm: model.liger_kernel=true beside the standard quant=none run above (same model, data, steps).
if ! $PY -c "import liger_kernel" 2>/dev/null && ls .whl/liger_kernel-*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/liger_kernel-*.whl
  export PYTHONPATH=/tmp/site:$PYTHONPATH
fi
if $PY -c "import liger_kernel" 2>/dev/null; then
  start=$(date +%s)
  $PY -m aitraining project_name=gpu_check model.name="$WORK/llama-3.2-1b-random" model.max_seq_length=2048 \
    data=custom data.path="$WORK/long.jsonl" data.format=text trainer.max_steps="$STEPS" trainer.batch_size=4 \
    trainer.logging_steps=5 trainer.gradient_checkpointing=true peft.r=16 peft.alpha=32 accel=none quant=none \
    model.liger_kernel=true output_dir="$WORK/runs/liger" > "$OUT/liger.log" 2>&1
  rc=$?
  echo "liger: exit $rc in $(( $(date +%s) - start )) s"
  [ $rc -eq 0 ] || tail -c 1500 "$OUT/liger.log"
  $PY - "$WORK/runs" <<'EOF' | tee -a "$OUT/gpu_check.md"
import json, sys, pathlib
runs = pathlib.Path(sys.argv[1])
print("\n| run | tokens/s | peak GPU GiB | loss first -> last |\n| --- | --- | --- | --- |")
for name in ("none-none", "liger"):
    path = runs / name / "run.json"
    r = json.loads(path.read_text()) if path.exists() else {}
    loss = r.get("loss") or {}
    print(f"| {name} | {r.get('tokens_per_second')} | {r.get('peak_gpu_memory_gib')} | "
          f"{loss.get('train_first')} -> {loss.get('train_last')} |")
EOF
else
  echo "liger: liger-kernel is not installed (pip install 'aitraining[liger]', or its wheel in .whl): skipped"
fi
# After training, on the GPU path (issue 15): a quantized Unsloth run merged into its base reloaded
# unquantized in bf16, then chat through Unsloth's fast inference (adapter) and the merged model.
RUN="$WORK/runs/unsloth-int4"
$PY -m aitraining.cli export "$RUN" --merge > "$OUT/export.log" 2>&1; echo "export --merge (int4 run): exit $?"
grep -E "merged_into|ERROR" "$OUT/export.log" | head -3
for how in "" "--merged"; do
  printf 'Name a colour.\nName a fruit.\n' | $PY -m aitraining.cli chat "$RUN" $how --temperature 0 \
    --max-new-tokens 8 > "$OUT/chat$how.out" 2> "$OUT/chat$how.err"
  echo "chat $how: exit $? | $(grep -E 'Loaded|ERROR' "$OUT/chat$how.err" | head -1) | $(wc -l < "$OUT/chat$how.out") lines"
done

# Multi-GPU arms (dist=, issue 14): every visible GPU, one process each (torchrun), DDP / FSDP2 /
# DeepSpeed ZeRO-2 and ZeRO-3, QLoRA under FSDP2 and ZeRO-3, Unsloth under DDP and FSDP2. On CPU these
# strategies are refused (accelerate runs FSDP and DeepSpeed only on GPUs); this is where they run.
# DeepSpeed comes from requirements-deepspeed.txt (pinned) when it is missing.
NGPU=$(nvidia-smi -L 2>/dev/null | grep -c "^GPU" || true)
if [ "${NGPU:-0}" -ge 1 ] && [ -z "$SMALL" ]; then
  $PY -c "import deepspeed" 2>/dev/null || $PY -m pip install -q -r requirements-deepspeed.txt \
    || echo "deepspeed could not be installed: the zero arms will say so"
  echo "dist arms on $NGPU GPU(s):"
  for arm in "none ddp none" "none fsdp none" "none fsdp int4" "none zero2 none" "none zero3 none" \
             "none zero3 int4" "unsloth ddp none" "unsloth fsdp int4"; do
    set -- $arm
    name="dist-$2-$1-$3"
    $PY -m torch.distributed.run --standalone --nproc_per_node "$NGPU" -m aitraining project_name=gpu_check \
      model.name="$WORK/llama-3.2-1b-random" model.max_seq_length=512 data=custom data.path="$WORK/long.jsonl" \
      data.format=text trainer.max_steps=10 trainer.batch_size=2 trainer.logging_steps=5 peft.r=16 \
      accel=$1 dist=$2 quant=$3 output_dir="$WORK/dist/$name" > "$OUT/$name.log" 2>&1
    rc=$?
    $PY - "$WORK/dist/$name" "$rc" "$name" <<'PYEOF'
import json, sys
from pathlib import Path
folder, rc, name = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
try:
    run = json.loads((folder / "run.json").read_text())
except OSError:
    run = {}
loss = run.get("loss") or {}
print(f"  {name}: exit {rc}, {run.get('status')}, world_size {run.get('world_size')}, "
      f"accelerator {(run.get('accelerator') or {}).get('used')}, loss {loss.get('train_first')} -> "
      f"{loss.get('train_last')}, adapter {(folder / 'adapter' / 'adapter_model.safetensors').exists()}")
PYEOF
    [ "$rc" -eq 0 ] || grep -E "ERROR|Error" "$OUT/$name.log" | tail -3
  done | tee "$OUT/dist_arms.md"
fi
