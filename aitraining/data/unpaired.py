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
from aitraining.data.preference import count_cut, cut, limits_key
from aitraining.data.prepare import Preparer, build
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


def render(rows: list[dict[str, Any]], tokenizer, cfg: Config) -> tuple[list[dict[str, Any]], list[bool]]:
    from trl.data_utils import maybe_apply_chat_template

    out, was_cut = [], []
    for row in rows:
        text = maybe_apply_chat_template({"prompt": row["prompt"], "completion": row["completion"]}, tokenizer)
        prompt, a = cut(text["prompt"], tokenizer, cfg.trainer.max_prompt_length, keep_end=True)
        completion, b = cut(text["completion"], tokenizer, cfg.trainer.max_completion_length, keep_end=False)
        out.append({"prompt": prompt, "completion": completion, "label": bool(row["label"])})
        was_cut.append(a or b)
    return out, was_cut


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


class UnpairedPreparer(Preparer):
    """The KTO trainer's data (its record's `prepare`): prompt/completion strings with a bool label;
    preference pairs split into one desirable and one undesirable example."""

    name = "unpaired"

    def features(self):
        from datasets import Features, Value

        return Features({"prompt": Value("string"), "completion": Value("string"), "label": Value("bool"),
                         "_cut": Value("bool")})  # fmt: skip

    def key(self) -> dict[str, Any]:
        return limits_key(self.cfg)

    def batch(self, rows, wheres, fmt):
        paired = fmt is DataFormat.preference
        out, was_cut = render(unpair(rows) if paired else rows, self.tokenizer, self.cfg)
        columns = {c: [r[c] for r in out] for c in ("prompt", "completion", "label")}
        return {**columns, "_cut": was_cut}, {"unpaired_from_pairs": len(rows) if paired else 0}

    def finish(self, train, valid, counts):
        cfg, n = self.cfg, len(train)
        desirable = int(train.select_columns(["label"]).with_format("numpy")[:]["label"].sum())
        undesirable = n - desirable
        if not desirable or not undesirable:
            log.warning("KTO: all %d examples of the training data are %s; KTO learns from both kinds.", n,
                        "desirable" if desirable else "undesirable")  # fmt: skip
        if n < cfg.trainer.batch_size:
            raise DataError(
                f"the training data: {n} example(s), fewer than trainer.batch_size={cfg.trainer.batch_size}."
            )
        warning = balance_warning(desirable, undesirable, cfg.trainer.desirable_weight, cfg.trainer.undesirable_weight)
        if warning:
            log.warning(warning)
        _filter_trl_warning()
        n_cut = count_cut(train)
        if n_cut:
            log.warning(
                "%d of %d examples were cut to trainer.max_prompt_length=%s / max_completion_length=%s tokens.",
                n_cut,
                n,
                cfg.trainer.max_prompt_length,
                cfg.trainer.max_completion_length,
            )
        stats = {"examples": n, "desirable": desirable, "undesirable": undesirable, "examples_cut": n_cut,
                 "unpaired_from_pairs": bool(counts.get("unpaired_from_pairs"))}  # fmt: skip
        return train, valid, stats

    def finish_streaming(self, train, valid):
        _filter_trl_warning()
        return train, valid, {}


def _filter_trl_warning() -> None:
    logging.getLogger("trl.trainer.kto_trainer").addFilter(_TRLBalanceWarning())


def prepare(examples: Examples, tokenizer, cfg: Config, template: Optional[Template]) -> Prepared:
    """The KTO trainer's data (its record's `prepare`): prompt/completion strings with a bool label."""
    return build(examples, tokenizer, cfg, template, UnpairedPreparer(tokenizer, cfg, template))
