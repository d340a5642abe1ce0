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
from aitraining.data.preference import cut
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


def limit_prompts(rows: list[dict[str, Any]], tokenizer, limit: int) -> tuple[list[dict[str, Any]], int, int]:
    """Text prompts cut to their last `limit` tokens; chat prompts longer than that left out."""
    out, n_cut, n_dropped = [], 0, 0
    for row in rows:
        prompt = row["prompt"]
        if isinstance(prompt, str):
            text, was_cut = cut(prompt, tokenizer, limit, keep_end=True)
            out.append({**row, "prompt": text})
            n_cut += was_cut
        elif (
            len(tokenizer.apply_chat_template(prompt, add_generation_prompt=True, return_dict=True)["input_ids"])
            > limit
        ):
            n_dropped += 1
        else:
            out.append(row)
    return out, n_cut, n_dropped


def _prompts(rows: list[dict[str, Any]], data_format: DataFormat, tokenizer, cfg: Config, source: str):
    converted = [p for p in (to_prompt(r, data_format) for r in rows) if p is not None]
    if not converted:
        raise DataError(f"{source}: holds no prompts.")
    limited, n_cut, n_dropped = limit_prompts(converted, tokenizer, prompt_limit(cfg))
    if not limited:
        raise DataError(
            f"{source}: every chat prompt is longer than {prompt_limit(cfg)} tokens (model.max_seq_length - "
            "trainer.max_completion_length, or trainer.max_prompt_length)."
        )
    columns = sorted({k for r in limited for k in r if k != "prompt"})
    for row in limited:  # one schema for the Arrow table: a column a row lacks is None there
        for column in columns:
            row.setdefault(column, None)
    return limited, n_cut, n_dropped, columns


def prepare(examples: Examples, tokenizer, cfg: Config, template: Optional[Template]) -> Prepared:
    """The GRPO trainer's data (its record's `prepare`): prompts and the columns the reward functions get."""
    from datasets import Dataset

    train, n_cut, n_dropped, columns = _prompts(examples.train, examples.format, tokenizer, cfg, examples.sources[0])
    rewards.check_columns(cfg.trainer, columns, examples.sources[0])  # imports the user's reward functions
    if n_cut or n_dropped:
        log.warning(
            "%d prompt(s) cut to their last %d tokens, %d chat prompt(s) longer than that left out "
            "(model.max_seq_length - trainer.max_completion_length, or trainer.max_prompt_length).",
            n_cut,
            prompt_limit(cfg),
            n_dropped,
        )
    valid = None
    if examples.valid:
        t = cfg.trainer
        if t.batch_size % t.num_generations:
            raise ConfigError(
                f"trainer.batch_size={t.batch_size} must be a multiple of trainer.num_generations={t.num_generations} "
                "to evaluate on the validation prompts (each evaluation batch holds whole groups).",
                key="trainer.batch_size",
            )
        valid = Dataset.from_list(_prompts(examples.valid, examples.format, tokenizer, cfg, examples.sources[-1])[0])
    log.info("GRPO: %d prompts; the reward functions %s get the columns %s.", len(train),
             ", ".join(cfg.trainer.reward_funcs), ", ".join(columns) or "(none)")  # fmt: skip
    stats = {"prompts": len(train), "prompts_cut": n_cut, "prompts_left_out": n_dropped,
             "reward_columns": columns}  # fmt: skip
    return Prepared(Dataset.from_list(train), valid, stats)
