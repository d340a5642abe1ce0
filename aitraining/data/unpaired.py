"""Unpaired examples for trainer=kto: rendered to text, length-limited and counted before the model loads;
TRL's KTOTrainer tokenizes the prompt/completion strings.

Chat examples go through the chat template (TRL's `maybe_apply_chat_template`); preference pairs are
split into one desirable and one undesirable example (as TRL's `unpair_preference_dataset` does).
KTO wants desirable_weight x n_desirable / (undesirable_weight x n_undesirable) in [1, 4/3] (the KTO
paper, Eq. 8, as TRL documents it); outside that, one warning gives the range for this data.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Optional

from aitraining.chat_templates import Template
from aitraining.choices import DataFormat
from aitraining.data import Examples, Prepared
from aitraining.data.preference import cut
from aitraining.errors import DataError

if TYPE_CHECKING:
    from aitraining.config import Config

log = logging.getLogger(__name__)

# The range KTO expects for desirable_weight x n_desirable / (undesirable_weight x n_undesirable).
BALANCE = (1.0, 4 / 3)


def unpair(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each preference pair as two examples: the chosen reply desirable, the rejected one not."""
    out = []
    for row in rows:
        out.append({"prompt": row["prompt"], "completion": row["chosen"], "label": True})
        out.append({"prompt": row["prompt"], "completion": row["rejected"], "label": False})
    return out


def render(rows: list[dict[str, Any]], tokenizer, cfg: Config) -> tuple[list[dict[str, Any]], int]:
    from trl.data_utils import maybe_apply_chat_template

    out, n_cut = [], 0
    for row in rows:
        text = maybe_apply_chat_template({"prompt": row["prompt"], "completion": row["completion"]}, tokenizer)
        prompt, a = cut(text["prompt"], tokenizer, cfg.trainer.max_prompt_length, keep_end=True)
        completion, b = cut(text["completion"], tokenizer, cfg.trainer.max_completion_length, keep_end=False)
        out.append({"prompt": prompt, "completion": completion, "label": bool(row["label"])})
        n_cut += a or b
    return out, n_cut


def balance_warning(
    desirable: int, undesirable: int, desirable_weight: float, undesirable_weight: float
) -> Optional[str]:
    """The warning for weights outside the range KTO expects on this data; None when inside (or one side is empty)."""
    if not desirable or not undesirable:
        return None
    ratio = desirable_weight * desirable / (undesirable_weight * undesirable)
    low, high = BALANCE
    if low <= ratio <= high:
        return None
    desirable_range = [undesirable_weight * undesirable / desirable * x for x in BALANCE]
    undesirable_range = [desirable_weight * desirable / undesirable / x for x in reversed(BALANCE)]
    return (
        f"KTO balance: {desirable} desirable and {undesirable} undesirable examples with trainer.desirable_weight="
        f"{desirable_weight} and trainer.undesirable_weight={undesirable_weight} give desirable_weight x "
        f"n_desirable / (undesirable_weight x n_undesirable) = {ratio:.2f}; KTO expects 1 to 1.33. Set EITHER "
        f"trainer.desirable_weight in [{desirable_range[0]:.2f}, {desirable_range[1]:.2f}] OR "
        f"trainer.undesirable_weight in [{undesirable_range[0]:.2f}, {undesirable_range[1]:.2f}]."
    )


class _TRLBalanceWarning(logging.Filter):
    """Drops TRL's own KTO balance warning: `balance_warning` says the same in aitraining's keys (and
    whenever TRL would: TRL checks only when the counts differ)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "different amounts of desirable/positive and undesirable" not in record.getMessage()


def prepare(examples: Examples, tokenizer, cfg: Config, template: Optional[Template]) -> Prepared:
    """The KTO trainer's data (its record's `prepare`): prompt/completion strings with a bool label."""
    from datasets import Dataset

    paired = examples.format is DataFormat.preference
    rows = unpair(examples.train) if paired else examples.train
    train, n_cut = render(rows, tokenizer, cfg)
    desirable = sum(row["label"] for row in train)
    undesirable = len(train) - desirable
    if not desirable or not undesirable:
        log.warning(
            "KTO: all %d examples of %s are %s; KTO learns from both kinds.",
            len(train),
            examples.sources[0],
            "desirable" if desirable else "undesirable",
        )
    if len(train) < cfg.trainer.batch_size:
        raise DataError(
            f"{examples.sources[0]}: {len(train)} example(s), fewer than trainer.batch_size={cfg.trainer.batch_size}."
        )
    warning = balance_warning(desirable, undesirable, cfg.trainer.desirable_weight, cfg.trainer.undesirable_weight)
    if warning:
        log.warning(warning)
    logging.getLogger("trl.trainer.kto_trainer").addFilter(_TRLBalanceWarning())
    if n_cut:
        log.warning(
            "%d of %d examples were cut to trainer.max_prompt_length=%s / max_completion_length=%s tokens.",
            n_cut,
            len(train),
            cfg.trainer.max_prompt_length,
            cfg.trainer.max_completion_length,
        )
    valid = None
    if examples.valid:
        valid = Dataset.from_list(render(unpair(examples.valid) if paired else examples.valid, tokenizer, cfg)[0])
    stats = {"examples": len(train), "desirable": desirable, "undesirable": undesirable, "examples_cut": n_cut,
             "unpaired_from_pairs": paired}  # fmt: skip
    return Prepared(Dataset.from_list(train), valid, stats)
