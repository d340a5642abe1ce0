"""RUN_DIR/merged/: the LoRA adapter merged into the base model with PEFT's `merge_and_unload`.

The base is loaded unquantized in the run's dtype (a quantized run trained its adapter on 4-bit or
8-bit weights; merging into those would round the adapter away, so the base is reloaded from its
original weights, and run.json says so). The folder holds safetensors weights, the run's tokenizer
(with its chat template) and the generation config, and loads with AutoModelForCausalLM.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from aitraining.errors import RunError
from aitraining.inference import FinishedRun, load_base, load_tokenizer

log = logging.getLogger(__name__)


def is_merged(folder: Path) -> bool:
    return (folder / "config.json").exists() and any(folder.glob("*.safetensors"))


def merged_into(run: FinishedRun) -> str:
    """What the adapter is merged into, in words (run.json's export.merged_into)."""
    assert run.run.model is not None
    quant = (run.saved.get("quant") or {}).get("kind", "none")
    base = f"{run.run.model.name} in {run.run.model.dtype}"
    if quant != "none":
        return (
            f"{base}, reloaded unquantized (the run trained on the {quant} base; merged into quantized weights, "
            "the adapter's update would be rounded away)"
        )
    return base


def merge(run: FinishedRun) -> Path:
    """Write RUN_DIR/merged/ (kept when it is already there: a finished run's adapter does not change)."""
    if not run.is_adapter:
        raise RunError(f"{run.folder}: a full fine-tuning run has nothing to merge: {run.weights} is the whole model.")
    target = run.merged
    if is_merged(target):
        log.info("Merged model already in %s.", target)
        return target
    if target.exists():
        raise RunError(f"{target} exists but holds no merged model; remove it and export again.")
    from peft import PeftModel

    log.info("Merging %s into %s.", run.weights, merged_into(run))
    model = PeftModel.from_pretrained(load_base(run, quantized=False), run.weights).merge_and_unload()
    tokenizer = load_tokenizer(run.weights)
    staging = Path(tempfile.mkdtemp(prefix=".merged-", dir=run.folder))
    try:
        model.save_pretrained(staging, safe_serialization=True)  # + config.json, generation_config.json
        tokenizer.save_pretrained(staging)  # + chat_template.jinja
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
