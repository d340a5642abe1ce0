"""Prompts for trainer=grpo, from any shape aitraining reads, made ready before the model loads:

- prompt data (a 'prompt' column, text or messages, or an Alpaca 'instruction' [+ 'input'] without an
  output; or any data read with data.format=prompt): the prompt, and every other column as it is (a
  'completion' column as `reference`);
- Alpaca with an output, prompt + completion: the prompt, and the output / completion as `reference`;
- chat messages: the turns before a final assistant turn, and that turn's text as `reference`
  (a conversation that ends on the user's turn is a prompt as it is).

TRL's GRPOTrainer passes every column but the prompt to the reward functions, under its own name.
Text prompts longer than trainer.max_prompt_length (default model.max_seq_length -
trainer.max_completion_length) keep their last tokens; chat prompts that long are left out (counted).
The reward functions are imported here and checked against the columns (aitraining/rewards.py).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Optional

from aitraining import rewards
from aitraining.chat_templates import Template
from aitraining.choices import DataFormat
from aitraining.data import Examples, Prepared
from aitraining.data.preference import count_cut, cut
from aitraining.data.prepare import Preparer, build
from aitraining.errors import ConfigError, DataError

if TYPE_CHECKING:
    from aitraining.config import Config

log = logging.getLogger(__name__)


def to_prompt(row: dict[str, Any], data_format: DataFormat) -> Optional[dict[str, Any]]:
    """One converted example as {prompt, reference?, other columns}; None when it holds no prompt."""
    if data_format is DataFormat.prompt:
        if "completion" in row and rewards.REFERENCE not in row:  # TRL keeps `completion` for the generated text
            row = {**{k: v for k, v in row.items() if k != "completion"}, rewards.REFERENCE: row["completion"]}
        return row
    if data_format is DataFormat.prompt_completion:
        return {"prompt": row["prompt"], rewards.REFERENCE: row["completion"]} if row["prompt"] else None
    turns = row["messages"]
    if turns and turns[-1]["role"] == "assistant":
        prompt = turns[:-1]
        return {"prompt": prompt, rewards.REFERENCE: turns[-1]["content"]} if prompt else None
    return {"prompt": turns} if turns else None


def prompt_limit(cfg: Config) -> int:
    t = cfg.trainer
    if t.max_prompt_length is not None:
        return t.max_prompt_length
    limit = cfg.model.max_seq_length - t.max_completion_length
    if limit < 1:
        raise ConfigError(
            f"model.max_seq_length={cfg.model.max_seq_length} leaves no room for a prompt before "
            f"trainer.max_completion_length={t.max_completion_length} tokens: raise the one or lower the other.",
            key="trainer.max_completion_length",
        )
    return limit


def limit_prompts(rows: list[dict[str, Any]], tokenizer, limit: int) -> tuple[list[dict[str, Any]], list[bool], int]:
    """Text prompts cut to their last `limit` tokens; chat prompts longer than that left out."""
    out, was_cut, n_dropped = [], [], 0
    for row in rows:
        prompt = row["prompt"]
        if isinstance(prompt, str):
            text, cut_here = cut(prompt, tokenizer, limit, keep_end=True)
            out.append({**row, "prompt": text})
            was_cut.append(cut_here)
        elif (
            len(tokenizer.apply_chat_template(prompt, add_generation_prompt=True, return_dict=True)["input_ids"])
            > limit
        ):
            n_dropped += 1
        else:
            out.append(row)
            was_cut.append(False)
    return out, was_cut, n_dropped


class PromptsPreparer(Preparer):
    """The GRPO trainer's data (its record's `prepare`): prompts and the columns the reward functions get."""

    name = "prompts"

    def key(self) -> dict[str, Any]:
        return {"prompt_limit": prompt_limit(self.cfg)}

    def batch(self, rows, wheres, fmt):
        converted = [p for p in (to_prompt(r, fmt) for r in rows) if p is not None]
        limited, was_cut, n_dropped = limit_prompts(converted, self.tokenizer, prompt_limit(self.cfg))
        columns = sorted({k for r in limited for k in r})
        out = {c: [r.get(c) for r in limited] for c in columns}  # a column a row lacks is None there
        if limited:
            out["_cut"] = was_cut
        return out, {"prompts": len(converted), "prompts_left_out": n_dropped}

    def check_source(self, name, examples, counts):
        if not counts.get("prompts"):
            raise DataError(f"{name}: holds no prompts.")
        if not examples:
            raise DataError(
                f"{name}: every chat prompt is longer than {prompt_limit(self.cfg)} tokens (model.max_seq_length - "
                "trainer.max_completion_length, or trainer.max_prompt_length)."
            )

    def _check(self, train, valid) -> list[str]:
        columns = [c for c in train.column_names or [] if c != "prompt" and not c.startswith("_")]
        rewards.check_columns(self.cfg.trainer, columns, "the training data")  # imports the user's reward functions
        if valid is not None:
            t = self.cfg.trainer
            if t.batch_size % t.num_generations:
                raise ConfigError(
                    f"trainer.batch_size={t.batch_size} must be a multiple of trainer.num_generations="
                    f"{t.num_generations} to evaluate on the validation prompts (each evaluation batch holds whole "
                    "groups).",
                    key="trainer.batch_size",
                )
        log.info("GRPO: the reward functions %s get the columns %s.", ", ".join(self.cfg.trainer.reward_funcs),
                 ", ".join(columns) or "(none)")  # fmt: skip
        return columns

    def finish(self, train, valid, counts):
        columns = self._check(train, valid)
        n_cut, n_dropped = count_cut(train), counts.get("prompts_left_out", 0)
        if n_cut or n_dropped:
            log.warning(
                "%d prompt(s) cut to their last %d tokens, %d chat prompt(s) longer than that left out "
                "(model.max_seq_length - trainer.max_completion_length, or trainer.max_prompt_length).",
                n_cut,
                prompt_limit(self.cfg),
                n_dropped,
            )
        log.info("GRPO: %d prompts.", len(train))
        stats = {"prompts": len(train), "prompts_cut": n_cut, "prompts_left_out": n_dropped, "reward_columns": columns}
        return train, valid, stats

    def finish_streaming(self, train, valid):
        if train.column_names is None:  # a generator's columns are known once its first row is read
            train = train._resolve_features()
        return train, valid, {"reward_columns": self._check(train, valid)}


def prepare(examples: Examples, tokenizer, cfg: Config, template: Optional[Template]) -> Prepared:
    """The GRPO trainer's data (its record's `prepare`): prompts and the columns the reward functions get."""
    return build(examples, tokenizer, cfg, template, PromptsPreparer(tokenizer, cfg, template))
