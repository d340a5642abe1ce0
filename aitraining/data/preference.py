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
from aitraining.data import Examples, Prepared, holdout
from aitraining.data.prepare import Preparer, build
from aitraining.errors import ConfigError

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


def render(rows: list[dict[str, Any]], tokenizer, cfg: Config) -> tuple[list[dict[str, str]], list[bool]]:
    """Pairs as text (chat pairs through the chat template), each part cut to its limit; which were cut."""
    from trl.data_utils import maybe_apply_chat_template

    out, was_cut = [], []
    for row in rows:
        text = maybe_apply_chat_template(row, tokenizer)
        prompt, a = cut(text["prompt"], tokenizer, cfg.trainer.max_prompt_length, keep_end=True)
        chosen, b = cut(text["chosen"], tokenizer, cfg.trainer.max_completion_length, keep_end=False)
        rejected, c = cut(text["rejected"], tokenizer, cfg.trainer.max_completion_length, keep_end=False)
        out.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
        was_cut.append(a or b or c)
    return out, was_cut


def limits_key(cfg: Config) -> dict[str, Any]:
    return {
        "max_prompt_length": cfg.trainer.max_prompt_length,
        "max_completion_length": cfg.trainer.max_completion_length,
    }


def count_cut(dataset) -> int:
    if dataset is None or not len(dataset):
        return 0
    return int(dataset.select_columns(["_cut"]).with_format("numpy")[:]["_cut"].sum())


class PairsPreparer(Preparer):
    """The preference trainers' data (their records' `prepare`): prompt/chosen/rejected strings."""

    name = "pairs"
    COLUMNS = ("prompt", "chosen", "rejected")

    def features(self):
        from datasets import Features, Value

        return Features({**{c: Value("string") for c in self.COLUMNS}, "_cut": Value("bool")})

    def key(self) -> dict[str, Any]:
        return limits_key(self.cfg)

    def batch(self, rows, wheres, fmt):
        out, was_cut = render(rows, self.tokenizer, self.cfg)
        return {**{c: [r[c] for r in out] for c in self.COLUMNS}, "_cut": was_cut}, {}

    def finish(self, train, valid, counts):
        n_cut = count_cut(train)
        if n_cut:
            log.warning(
                "%d of %d preference pairs were cut to trainer.max_prompt_length=%s / max_completion_length=%s tokens.",
                n_cut,
                len(train),
                self.cfg.trainer.max_prompt_length,
                self.cfg.trainer.max_completion_length,
            )
        return train, valid, {"examples": len(train), "pairs_cut": n_cut}


class RewardPreparer(PairsPreparer):
    """The reward model's data: the pairs as for the preference trainers, with validation pairs to
    measure accuracy on (trainer.valid_size of the pairs held out, seeded, when the data has none)."""

    def finish(self, train, valid, counts):
        held_out = 0
        if valid is None:
            keep, held = holdout(len(train), self.cfg.trainer.valid_size, self.cfg.seed)
            log.info(
                "Reward model: no validation pairs in the data; %d of %d pairs held out (trainer.valid_size=%s) to "
                "measure accuracy on.",
                len(held),
                len(train),
                self.cfg.trainer.valid_size,
            )
            train, valid, held_out = train.select(keep), train.select(held), len(held)
        train, valid, stats = super().finish(train, valid, counts)
        stats.update(valid_pairs=len(valid), valid_pairs_held_out=held_out)
        return train, valid, stats

    def finish_streaming(self, train, valid):
        if valid is None:
            raise ConfigError(
                "trainer=reward measures accuracy on validation pairs, and streamed data cannot have some held out: "
                "give a validation file or split (data.valid_split), or set data.streaming=false.",
                key="data.valid_split",
            )
        return train, valid, {}


def prepare(examples: Examples, tokenizer, cfg: Config, template: Optional[Template]) -> Prepared:
    """The preference trainers' data (their records' `prepare`): prompt/chosen/rejected strings."""
    return build(examples, tokenizer, cfg, template, PairsPreparer(tokenizer, cfg, template))


def prepare_reward(examples: Examples, tokenizer, cfg: Config, template: Optional[Template]) -> Prepared:
    """The reward model's data: the pairs, with validation pairs to measure accuracy on."""
    return build(examples, tokenizer, cfg, template, RewardPreparer(tokenizer, cfg, template))
