"""samples.md: the trained model's answers to a few prompts beside the base model's, so that what
training changed shows at a glance.

The prompts are `trainer.sample_prompts` (rendered the way the training data was: chat template,
Alpaca prompt or plain text), else the first prompts of the validation set, else of the training
set, with the answer the data holds. The base model's answers come from the same model with the
adapter disabled (a full fine-tuning run loads the base model for them), computed once.
Greedy decoding, `trainer.sample_max_new_tokens` tokens: a few seconds on a small model.

`Sampler.section(model, heading)` appends one section; run.py calls it at the end of training, and
a periodic evaluation callback can call it at each evaluation.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from aitraining import inference
from aitraining.choices import PromptStyle

if TYPE_CHECKING:
    from aitraining.config import Config
    from aitraining.data import Examples

log = logging.getLogger(__name__)

FILE = "samples.md"
TEXT_PROMPT_WORDS = 12  # plain-text data: the first words of an example are the prompt
EXPECTED_CHARS = 600  # the data's answer is cut to this many characters


@dataclass
class Sample:
    prompt: str
    """The model's input, rendered."""
    expected: Optional[str] = None
    """The answer the data holds (None for trainer.sample_prompts)."""


def _from_row(row: dict[str, Any], style: PromptStyle, tokenizer) -> Sample:
    """A sample from an example of the trainers' shape (see aitraining/data/formats.py)."""
    if "messages" in row or "conversations" in row:
        turns = row.get("messages") or [
            {"role": inference.SHAREGPT_ROLE.get(t["from"], t["from"]), "content": t["value"]}
            for t in row["conversations"]
        ]
        last = max(i for i, t in enumerate(turns) if t["role"] != "assistant") + 1
        expected = next((t["content"] for t in turns[last:] if t["role"] == "assistant"), None)
        return Sample(inference.render(style, tokenizer, turns[:last]), expected)
    if "prompt" in row:  # prompt/completion (Alpaca included: its prompt is rendered) and preference pairs
        prompt = row["prompt"]
        expected = row.get("completion", row.get("chosen"))
        if isinstance(prompt, list):  # conversational pairs
            reply = expected[-1]["content"] if isinstance(expected, list) and expected else expected
            return Sample(inference.render(style, tokenizer, prompt), reply)
        return Sample(prompt, expected if isinstance(expected, str) else None)
    words = str(row.get("text", "")).split(" ")
    return Sample(" ".join(words[:TEXT_PROMPT_WORDS]), " ".join(words[TEXT_PROMPT_WORDS:]))


def choose(cfg: Config, examples: Examples, style: PromptStyle, tokenizer) -> tuple[list[Sample], str]:
    """Up to trainer.samples prompts and where they came from."""
    count = cfg.trainer.samples
    if cfg.trainer.sample_prompts:
        prompts = cfg.trainer.sample_prompts[:count]
        return [Sample(inference.render(style, tokenizer, inference.conversation(p))) for p in prompts], (
            "trainer.sample_prompts"
        )
    rows, source = examples.first_rows(count)
    return [_from_row(row, style, tokenizer) for row in rows], source


def _fence(text: Optional[str]) -> str:
    body = (text or "").rstrip() or "(nothing)"
    fence = "````" if "```" in body else "```"
    return f"{fence}text\n{body}\n{fence}"


class Sampler:
    """Writes samples.md: a header, the prompts with the base model's answers, then one section per call."""

    def __init__(self, path: Path, samples: list[Sample], source: str, style: PromptStyle, tokenizer,
                 max_new_tokens: int) -> None:  # fmt: skip
        self.path, self.samples, self.source, self.style = path, samples, source, style
        self.tokenizer, self.max_new_tokens = tokenizer, max_new_tokens
        self.base_answers: Optional[list[str]] = None

    def answers(self, model) -> list[str]:
        model.eval()
        return [inference.generate(model, self.tokenizer, s.prompt, self.style, self.max_new_tokens)
                for s in self.samples]  # fmt: skip

    def base(self, model, load_base: Optional[Callable[[], Any]] = None) -> list[str]:
        """The base model's answers (once): the adapter disabled, or `load_base()` for a full fine-tune."""
        if self.base_answers is None:
            if hasattr(model, "disable_adapter"):
                with model.disable_adapter():
                    self.base_answers = self.answers(model)
            else:
                assert load_base is not None, "a full fine-tuning run needs the base model for its samples"
                self.base_answers = self.answers(load_base())
        return self.base_answers

    def section(self, model, heading: str, load_base: Optional[Callable[[], Any]] = None) -> Path:
        """Append the model's answers under `heading` (the file is started on the first call)."""
        tuned = self.answers(model)
        base = self.base(model, load_base)
        how = "the adapter disabled" if hasattr(model, "disable_adapter") else "the base weights"
        lines = [] if self.path.exists() else [
            f"# Samples: {self.path.parent.name}", "",
            f"The trained model's answers beside the base model's ({how}): {len(self.samples)} prompts from "
            f"{self.source}, greedy decoding, up to {self.max_new_tokens} new tokens ({self.style.value} prompts).", "",
        ]  # fmt: skip
        lines += [f"## {heading}", ""]
        for number, (sample, answer, before) in enumerate(zip(self.samples, tuned, base), start=1):
            lines += [f"### Prompt {number}", "", _fence(sample.prompt), "", "**Trained model**", "", _fence(answer),
                      "", "**Base model**", "", _fence(before), ""]  # fmt: skip
            if sample.expected is not None:
                cut = sample.expected[:EXPECTED_CHARS] + (" [...]" if len(sample.expected) > EXPECTED_CHARS else "")
                lines += ["**The data's answer**", "", _fence(cut), ""]
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
        return self.path


def sampler(cfg: Config, examples: Examples, style: PromptStyle, tokenizer, out_dir: Path) -> Optional[Sampler]:
    """The run's Sampler, or None when trainer.samples=0 or there is nothing to prompt with."""
    if cfg.trainer.samples == 0:
        return None
    chosen, source = choose(cfg, examples, style, tokenizer)
    if not chosen:
        return None
    return Sampler(out_dir / FILE, chosen, source, style, tokenizer, cfg.trainer.sample_max_new_tokens)


@contextlib.contextmanager
def inference_mode(model, unsloth: bool):
    """Unsloth's models generate through its inference mode (aitraining/unsloth_accel.py), then train again."""
    if not unsloth:
        yield
        return
    from aitraining import unsloth_accel

    with unsloth_accel.inference_mode(model):
        yield
