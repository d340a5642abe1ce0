"""Push a run to the Hugging Face Hub: huggingface_hub's create_repo (private by default) and
upload_folder, with a model card generated from run.json.

The token is huggingface_hub's own business: HF_TOKEN, or the login (`hf auth login`). aitraining
never takes it as an option, never passes it on and never writes it anywhere.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from aitraining import record
from aitraining.export.gguf import FOLDER as GGUF_FOLDER
from aitraining.export.merge import is_merged
from aitraining.inference import FinishedRun

log = logging.getLogger(__name__)

CARD_FILE = "model_card.md"  # the card as pushed (README.md in the repo), kept in the run folder


def _source(source: str) -> str:
    """A model, data source or path as the card shows it: hub ids as they are, local files and
    folders by name only (a card is no place for the paths of your machine)."""
    path = Path(source)
    return f".../{path.name}" if path.is_absolute() or path.exists() else source


def _override(override: str) -> str:
    key, sep, value = override.partition("=")
    return f"{key}{sep}{_source(value)}" if sep and value.startswith(("/", "~")) else override


def model_card(run: FinishedRun, repo_id: str, folder: Path) -> str:
    """README.md for the repo, from run.json: base model, data, trainer, LoRA shape, accelerator and
    why, losses, versions, the command."""
    from huggingface_hub import ModelCard, ModelCardData

    r = run.run
    assert r.model is not None
    is_peft = folder.name == "adapter"
    hub_base = r.model.name if r.model.name and not r.model.name.startswith(("tiny:", "/", ".")) else None
    data = ModelCardData(base_model=hub_base, library_name="peft" if is_peft else "transformers",
                         tags=["aitraining", "trl", r.trainer or "sft", *(["lora"] if is_peft else [])],
                         pipeline_tag="text-generation")  # fmt: skip
    accel = r.accelerator
    accel_text = (accel.label or "-") + (f": {accel.reason}" if accel and accel.reason else "") if accel else "-"
    loss = r.loss
    fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    command = " ".join(["python -m aitraining", *(_override(o) for o in r.overrides)])
    what = {"adapter": "a LoRA adapter", "merged": "the LoRA adapter merged into the base model",
            "model": "a fully fine-tuned model"}.get(folder.name, folder.name)  # fmt: skip
    rows = [
        ("base model", f"{_source(r.model.name or '?')} ({r.model.type}, {r.model.dtype})"),
        ("this repository", what + (f"; merged into the base{' reloaded unquantized' if r.quant != 'none' else ''}"
                                    f" ({r.model.dtype})" if folder.name == "merged" else "")),
        ("trainer", r.trainer), ("fine-tuning", r.peft), ("quantization while training", r.quant),
        ("accelerator", accel_text),
        ("data", f"{r.data.get('train_examples', '?')} examples ({r.data.get('format', '?')}) from "
                 f"{', '.join(_source(record.source_path(s)) for s in r.data.get('sources', []))}"),
        ("train loss", f"{fmt(loss.train_first)} -> {fmt(loss.train_last)} over {r.steps} steps"),
        ("eval loss", fmt(loss.eval)), ("seed", r.seed),
    ]  # fmt: skip
    versions = ", ".join(f"{k} {v}" for k, v in r.versions.items() if v)
    if is_peft:
        use = (
            f'from peft import AutoPeftModelForCausalLM\nmodel = AutoPeftModelForCausalLM.from_pretrained("{repo_id}")'
        )
    else:
        use = (
            f'from transformers import AutoModelForCausalLM\nmodel = AutoModelForCausalLM.from_pretrained("{repo_id}")'
        )
    gguf = sorted(r.export.gguf) if r.export.gguf else []
    body = "\n".join([
        f"# {repo_id.split('/')[-1]}", "",
        f"Fine-tuned with aitraining ({r.trainer}, {r.peft}).", "",
        "| | |", "| --- | --- |", *(f"| {k} | {v} |" for k, v in rows), "",
        "## Use", "", "```python", use, "```", "",
        *([f"GGUF files for llama.cpp / Ollama ({', '.join(gguf)}) are in `gguf/`.", ""] if gguf else []),
        "## How it was trained", "", "```bash", command, "```", "",
        f"Versions: {versions}.", "",
    ])  # fmt: skip
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}"))


def push(run: FinishedRun, repo_id: str, private: bool = True) -> tuple[str, Optional[str], str]:
    """Create the repo (private unless told otherwise) and upload the merged model if there is one,
    else the adapter (or full model), the GGUF files, and the card. Returns (repo id, commit URL, folder)."""
    from huggingface_hub import HfApi

    folder = run.merged if is_merged(run.merged) else run.weights
    api = HfApi()  # the token: HF_TOKEN or the login, read by huggingface_hub itself
    repo = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    full_id = repo.repo_id
    card = model_card(run, full_id, folder)
    (run.folder / CARD_FILE).write_text(card, encoding="utf-8")
    log.info("Uploading %s to %s (%s).", folder, full_id, "private" if private else "public")
    commit = api.upload_folder(repo_id=full_id, folder_path=folder, commit_message=f"aitraining: {folder.name}",
                               ignore_patterns=["README.md"])  # fmt: skip
    gguf = run.folder / GGUF_FOLDER
    if gguf.is_dir() and any(gguf.glob("*.gguf")):
        commit = api.upload_folder(repo_id=full_id, folder_path=gguf, path_in_repo=GGUF_FOLDER,
                                   allow_patterns=["*.gguf"], commit_message="aitraining: GGUF files")  # fmt: skip
    commit = api.upload_file(path_or_fileobj=card.encode("utf-8"), path_in_repo="README.md", repo_id=full_id,
                             commit_message="aitraining: model card")  # fmt: skip
    return full_id, getattr(commit, "commit_url", None) or str(commit), folder.name
