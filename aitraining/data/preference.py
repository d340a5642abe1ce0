"""Preference data for trainer=dpo|orpo|simpo|reward: rendered to text and length-limited before the
model loads; TRL's trainers tokenize the prompt/chosen/rejected strings.

Conversational pairs (message lists, ShareGPT turns) go through the chat template (TRL's
`maybe_apply_chat_template`). `trainer.max_prompt_length` keeps the *last* N tokens of a prompt and
`trainer.max_completion_length` the *first* N of each reply, cut at token boundaries.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Optional

from aitraining.chat_templates import Template
from aitraining.data import Examples, Prepared, split_valid

if TYPE_CHECKING:
    from aitraining.config import Config

log = logging.getLogger(__name__)


def cut(text: str, tokenizer, limit: Optional[int], keep_end: bool) -> tuple[str, bool]:
    """`text` limited to `limit` tokens (its last ones with keep_end), cut where a token starts."""
    if limit is None:
        return text, False
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    if len(offsets) <= limit:
        return text, False
    if keep_end:
        return text[offsets[-limit][0] :], True
    return text[: offsets[limit - 1][1]], True


def render(rows: list[dict[str, Any]], tokenizer, cfg: Config) -> tuple[list[dict[str, str]], int]:
    from trl.data_utils import maybe_apply_chat_template

    out, n_cut = [], 0
    for row in rows:
        text = maybe_apply_chat_template(row, tokenizer)
        prompt, a = cut(text["prompt"], tokenizer, cfg.trainer.max_prompt_length, keep_end=True)
        chosen, b = cut(text["chosen"], tokenizer, cfg.trainer.max_completion_length, keep_end=False)
        rejected, c = cut(text["rejected"], tokenizer, cfg.trainer.max_completion_length, keep_end=False)
        out.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
        n_cut += a or b or c
    return out, n_cut


def prepare(examples: Examples, tokenizer, cfg: Config, template: Optional[Template]) -> Prepared:
    """The preference trainers' data (their records' `prepare`): prompt/chosen/rejected strings."""
    from datasets import Dataset

    train, n_cut = render(examples.train, tokenizer, cfg)
    if n_cut:
        log.warning(
            "%d of %d preference pairs were cut to trainer.max_prompt_length=%s / max_completion_length=%s tokens.",
            n_cut,
            len(train),
            cfg.trainer.max_prompt_length,
            cfg.trainer.max_completion_length,
        )
    valid = Dataset.from_list(render(examples.valid, tokenizer, cfg)[0]) if examples.valid else None
    stats = {"examples": len(train), "pairs_cut": n_cut}
    return Prepared(Dataset.from_list(train), valid, stats)


def prepare_reward(examples: Examples, tokenizer, cfg: Config, template: Optional[Template]) -> Prepared:
    """The reward model's data: the pairs as for the preference trainers, with validation pairs to
    measure accuracy on (trainer.valid_size of the pairs held out, seeded, when the data has none)."""
    held_out = 0
    if not examples.valid:
        train, valid = split_valid(examples.train, cfg.trainer.valid_size, cfg.seed)
        held_out = len(valid)
        log.info(
            "Reward model: no validation pairs in the data; %d of %d pairs held out (trainer.valid_size=%s) to "
            "measure accuracy on.",
            held_out,
            len(examples.train),
            cfg.trainer.valid_size,
        )
        examples = Examples(examples.format, train, valid, examples.sources, examples.columns)
    prepared = prepare(examples, tokenizer, cfg, template)
    prepared.stats.update(valid_pairs=len(examples.valid or []), valid_pairs_held_out=held_out)
    return prepared
