"""A finished run, loaded to generate text: `aitraining chat`, samples.md and the export share it.

- `finished_run(folder)`: run.json says the run succeeded and its weights are there, else one
  clear error (plain Python, before any weights load);
- `prompt_style` / `render`: a user's message becomes the model's input the way the training data
  was rendered: the run's own chat template (saved with its tokenizer), the Alpaca prompt, or the
  text itself;
- `load`: the base model and the adapter (PeftModel), or the merged / fully fine-tuned weights;
  through Unsloth's FastLanguageModel (and `for_inference`) when the run used Unsloth and it imports;
- `generate`: greedy or sampled, streamed through a transformers streamer when given one.

Importing this module imports no torch; `load` and `generate` do.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import yaml

from aitraining import record
from aitraining.choices import DataFormat, PromptStyle
from aitraining.errors import RunError
from aitraining.record import RunRecord, Status

log = logging.getLogger(__name__)

MERGED = "merged"  # RUN_DIR/merged/: the adapter merged into the base (aitraining/export/merge.py)
# ShareGPT's `from` for each role (Unsloth's mapped templates render {from, value} turns).
SHAREGPT_FROM = {"user": "human", "assistant": "gpt", "system": "system"}
SHAREGPT_ROLE = {v: k for k, v in SHAREGPT_FROM.items()}
# End-of-turn tokens of common chat templates: generation also stops at whichever the vocabulary has.
END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<|endoftext|>")


@dataclass
class FinishedRun:
    """A run folder whose run.json says `succeeded`, with its weights."""

    folder: Path
    run: RunRecord
    weights: Path
    """adapter/ (LoRA) or model/ (full fine-tuning)."""
    saved: dict[str, Any]
    """config.yaml, the resolved config the run trained with, as plain data."""

    @property
    def is_adapter(self) -> bool:
        return self.weights.name == "adapter"

    @property
    def merged(self) -> Path:
        return self.folder / MERGED

    @property
    def style(self) -> PromptStyle:
        if self.run.prompt_style:
            return PromptStyle(self.run.prompt_style)
        return style_for(DataFormat(self.run.data.get("format", "text")), is_chat=False, sharegpt_mapped=False)

    @property
    def used_unsloth(self) -> bool:
        return self.run.accelerator is not None and self.run.accelerator.used == "unsloth"

    def model_setting(self, key: str, default: Any = None) -> Any:
        return (self.saved.get("model") or {}).get(key, default)


def finished_run(folder: Path | str) -> FinishedRun:
    """The run in `folder`, or RunError saying why it is not a finished run."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise RunError(
            f"{folder}: no such folder. Give a run folder (it holds run.json), e.g. outputs/<project>/<time>."
        )
    run = record.read(folder)
    if run is None:
        raise RunError(
            f"{folder}: not a run folder (no readable {record.RUN_FILE}). Give the folder a training run wrote, "
            "e.g. outputs/<project>/<time>."
        )
    if run.status is not Status.succeeded:
        why = f": {run.error}" if run.error else ""
        raise RunError(f"{folder}: the run did not finish (run.json status: {run.status.value}{why}).")
    weights = folder / Path(run.weights_dir).name if run.weights_dir else None
    if weights is None or not weights.is_dir():
        raise RunError(f"{folder}: the run's weights folder ({run.weights_dir}) is missing.")
    try:
        saved = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        saved = {}
    return FinishedRun(folder.resolve(), run, weights, saved)


def require_generative(run: FinishedRun, command: str) -> None:
    """`command` (chat, export) needs a model that writes text; a reward model only scores it."""
    from aitraining.choices import TrainerKind
    from aitraining.trainers.registry import TRAINERS

    kind = next((k for k in TrainerKind if k.value == run.run.trainer), None)
    if kind is not None and TRAINERS[kind].sequence_classification:
        raise RunError(
            f"{run.folder}: this run trained a reward model (trainer={kind.value}), a scorer that does not "
            f"generate text, so `aitraining {command}` does not apply. Load it with "
            "AutoModelForSequenceClassification (and PeftModel for its adapter) to score replies."
        )


# --------------------------------------------------------------------------- prompts


def style_for(source_format: Optional[DataFormat], is_chat: bool, sharegpt_mapped: bool) -> PromptStyle:
    """How the run's data was rendered, hence how a prompt must be: run.py records it in run.json."""
    if is_chat:
        return PromptStyle.chat_sharegpt if sharegpt_mapped else PromptStyle.chat
    if source_format in (DataFormat.messages, DataFormat.sharegpt):
        return PromptStyle.chat
    return PromptStyle.alpaca if source_format is DataFormat.alpaca else PromptStyle.plain


def render(style: PromptStyle, tokenizer, messages: list[dict[str, str]]) -> str:
    """The model's input for a conversation ending with the user's turn ({role, content} messages)."""
    if style in (PromptStyle.chat, PromptStyle.chat_sharegpt):
        turns: list[dict[str, str]] = messages
        if style is PromptStyle.chat_sharegpt:
            turns = [{"from": SHAREGPT_FROM.get(m["role"], m["role"]), "value": m["content"]} for m in messages]
        return tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
    system = "".join(m["content"] for m in messages if m["role"] == "system")
    user = next(m["content"] for m in reversed(messages) if m["role"] == "user")
    if style is PromptStyle.alpaca:  # single-turn, as the Alpaca data was (formats._from_alpaca)
        from aitraining.data.formats import ALPACA_PROMPT  # (imports the config: not at start-up)

        prompt = ALPACA_PROMPT.format(instruction=user)
        return f"{system}\n\n{prompt}" if system.strip() else prompt
    return user  # plain: the model continues the text


def conversation(user: str, system: Optional[str] = None, history: Optional[list] = None) -> list[dict[str, str]]:
    return [*([{"role": "system", "content": system}] if system else []), *(history or []),
            {"role": "user", "content": user}]  # fmt: skip


# --------------------------------------------------------------------------- loading


def _dtype(run: FinishedRun):
    import torch

    return getattr(torch, run.run.model.dtype or "float32") if run.run.model else torch.float32


def quantization_config(run: FinishedRun):
    """The run's bitsandbytes config (a quantized run's base loads as it trained), or None."""
    quant = run.saved.get("quant") or {}
    if quant.get("kind", "none") == "none":
        return None
    from transformers import BitsAndBytesConfig

    if quant["kind"] == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=quant.get("quant_type", "nf4"),
                              bnb_4bit_use_double_quant=quant.get("double_quant", True),
                              bnb_4bit_compute_dtype=_dtype(run))  # fmt: skip


def load_tokenizer(path: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_base(run: FinishedRun, quantized: bool = True):
    """The run's base model, quantized as it trained (quantized=True) or not, in the run's dtype."""
    from transformers import AutoModelForCausalLM

    assert run.run.model is not None and run.run.model.path
    return AutoModelForCausalLM.from_pretrained(
        run.run.model.path,
        dtype=_dtype(run),
        quantization_config=quantization_config(run) if quantized else None,
        trust_remote_code=bool(run.model_setting("trust_remote_code", False)),
        revision=run.model_setting("revision"),
    )


def load(run: FinishedRun, merged: bool = False) -> tuple[Any, Any, str]:
    """(model, tokenizer, how) ready to generate: base + adapter, or the merged / full weights.
    `how` says what was loaded, for the user."""
    if merged and not (run.merged / "config.json").exists():
        raise RunError(f"{run.folder}: has no merged model ({run.merged}); make it with: aitraining export "
                       f"{run.folder} --merge")  # fmt: skip
    source = run.merged if merged else run.weights
    tokenizer = load_tokenizer(source)
    if run.used_unsloth:
        model = _load_unsloth(run, source)
        if model is not None:
            return model, tokenizer, f"{source.name}/ with Unsloth's fast inference"
    if merged or not run.is_adapter:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(source, dtype=_dtype(run))
        how = f"{source.name}/"
    else:
        from peft import PeftModel

        model = PeftModel.from_pretrained(load_base(run), source)
        how = f"{run.run.model.name} + adapter/"  # type: ignore[union-attr]
    model.eval()
    return model, tokenizer, how


def _load_unsloth(run: FinishedRun, source: Path):
    """Unsloth's FastLanguageModel with `for_inference` when it imports here; None (and a note) when not."""
    from aitraining import unsloth_accel

    if not unsloth_accel.installed():
        log.warning("The run trained with Unsloth, which is not installed here: loading with transformers/PEFT.")
        return None
    imported = unsloth_accel.try_import()
    if imported.error:
        log.warning("The run trained with Unsloth, which does not import here (%s): loading with transformers/PEFT.",
                    imported.error)  # fmt: skip
        return None
    quant = (run.saved.get("quant") or {}).get("kind", "none")
    return unsloth_accel.load_for_inference(
        str(source),
        max_seq_length=int(run.model_setting("max_seq_length", 2048)),
        dtype=_dtype(run),
        load_in_4bit=quant == "int4" and source.name == "adapter",
        trust_remote_code=bool(run.model_setting("trust_remote_code", False)),
    )


# --------------------------------------------------------------------------- generating


def stop_token_ids(tokenizer) -> list[int]:
    """The EOS token and the chat template's end-of-turn token, where the vocabulary has one."""
    vocab = tokenizer.get_vocab()
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    return ids + [vocab[t] for t in END_OF_TURN if t in vocab and vocab[t] not in ids]


def generate(model, tokenizer, text: str, style: PromptStyle, max_new_tokens: int, temperature: float = 0.0,
             streamer=None) -> str:  # fmt: skip
    """The model's answer to `text` (the rendered prompt): greedy at temperature 0, else sampled."""
    import torch

    chat = style in (PromptStyle.chat, PromptStyle.chat_sharegpt)  # the template holds the special tokens
    inputs = tokenizer(text, return_tensors="pt", add_special_tokens=not chat).to(model.device)
    options: dict[str, Any] = {
        "max_new_tokens": max_new_tokens,
        "do_sample": temperature > 0,
        "eos_token_id": stop_token_ids(tokenizer),
        "pad_token_id": tokenizer.pad_token_id,
    }
    if temperature > 0:
        options.update(temperature=temperature, top_p=1.0, top_k=0)
    else:
        options.update(temperature=None, top_p=None, top_k=None)
    with torch.no_grad():
        output = model.generate(**inputs, **options, streamer=streamer)
    return tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
