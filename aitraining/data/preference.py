"""Preference data for trainer=dpo|orpo: rendered to text and length-limited before the
model loads; TRL's DPOTrainer / ORPOTrainer tokenize the prompt/chosen/rejected strings.

Conversational pairs (message lists, ShareGPT turns) go through the chat template (TRL's
`maybe_apply_chat_template`). `trainer.max_prompt_length` keeps the *last* N tokens of a prompt and
`trainer.max_completion_length` the *first* N of each reply, cut at token boundaries.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Optional

from aitraining.chat_templates import Template
from aitraining.data import Examples, Prepared

if TYPE_CHECKING:
    from aitraining.config import Config

log = logging.getLogger(__name__)


def _cut(text: str, tokenizer, limit: Optional[int], keep_end: bool) -> tuple[str, bool]:
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

    out, cut = [], 0
    for row in rows:
        text = maybe_apply_chat_template(row, tokenizer)
        prompt, a = _cut(text["prompt"], tokenizer, cfg.trainer.max_prompt_length, keep_end=True)
        chosen, b = _cut(text["chosen"], tokenizer, cfg.trainer.max_completion_length, keep_end=False)
        rejected, c = _cut(text["rejected"], tokenizer, cfg.trainer.max_completion_length, keep_end=False)
        out.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
        cut += a or b or c
    return out, cut


def prepare(examples: Examples, tokenizer, cfg: Config, template: Optional[Template]) -> Prepared:
    """The preference trainers' data (their records' `prepare`): prompt/chosen/rejected strings."""
    from datasets import Dataset

    train, cut = render(examples.train, tokenizer, cfg)
    if cut:
        log.warning(
            "%d of %d preference pairs were cut to trainer.max_prompt_length=%s / max_completion_length=%s tokens.",
            cut,
            len(train),
            cfg.trainer.max_prompt_length,
            cfg.trainer.max_completion_length,
        )
    valid = Dataset.from_list(render(examples.valid, tokenizer, cfg)[0]) if examples.valid else None
    stats = {"examples": len(train), "pairs_cut": cut}
    return Prepared(Dataset.from_list(train), valid, stats)
