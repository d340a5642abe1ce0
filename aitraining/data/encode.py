"""Render every example through its template and tokenize it once, with its loss mask, before
the model loads. TRL receives `input_ids` + `labels` (-100 where no loss falls) and only truncates,
packs and collates.

Loss masks (trainer.response_only_loss=true, the sft default):
- prompt_completion (Alpaca included): the prompt's tokens are masked, the completion and EOS train;
- messages / ShareGPT: only assistant turns train, from the chat template's `{% generation %}` marks;
- text: every token trains.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Optional

from aitraining import chat_templates
from aitraining.chat_templates import Template
from aitraining.choices import DataFormat
from aitraining.data import Examples, Prepared, chat
from aitraining.data.formats import SHAREGPT_ROLES
from aitraining.data.prepare import Preparer, build
from aitraining.errors import DataError

if TYPE_CHECKING:
    from aitraining.config import Config

log = logging.getLogger(__name__)

IGNORE = -100


# --------------------------------------------------------------------------- tokenizing


def _with_eos(ids: list[int], eos: Optional[int]) -> list[int]:
    return [*ids, eos] if eos is not None and (not ids or ids[-1] != eos) else ids


def token_ids(tokenizer, texts: list[str], add_special_tokens: bool = True) -> list[list[int]]:
    """Batch tokenization straight through the Rust tokenizer (the same ids as tokenizer(texts),
    without building offsets and Python encodings); slow tokenizers take the usual path."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or not hasattr(backend, "encode_batch_fast"):
        return tokenizer(texts, add_special_tokens=add_special_tokens)["input_ids"]
    return [e.ids for e in backend.encode_batch_fast(texts, add_special_tokens=add_special_tokens)]


def _encode_text(rows: list[dict], tokenizer, mask: bool) -> tuple[list, list]:
    ids = [_with_eos(x, tokenizer.eos_token_id) for x in token_ids(tokenizer, [r["text"] for r in rows])]
    return ids, [list(x) for x in ids]


def _encode_prompt_completion(rows: list[dict], tokenizer, mask: bool) -> tuple[list, list]:
    prompts = token_ids(tokenizer, [r["prompt"] for r in rows])
    completions = token_ids(tokenizer, [r["completion"] for r in rows], add_special_tokens=False)
    ids, labels = [], []
    for prompt, completion in zip(prompts, completions, strict=True):
        answer = _with_eos(completion, tokenizer.eos_token_id)
        ids.append(prompt + answer)
        labels.append(([IGNORE] * len(prompt) if mask else list(prompt)) + answer)
    return ids, labels


def _sharegpt_to_messages(conversation: list[dict], roles: dict[str, str]) -> list[dict]:
    """The runner's own ShareGPT mapping: from/value turns as role/content messages (loss weights kept)."""
    messages = []
    for turn in conversation:
        message = {"role": roles[turn["from"]], "content": turn["value"]}
        if "loss_weight" in turn:
            message["loss_weight"] = 0
        messages.append(message)
    return messages


def _render(tokenizer, conversations: list[list[dict]], tools: Optional[list], spans: bool, wheres: list[str]):
    """The conversations as text through the chat template, with the character spans of each one's
    {% generation %} blocks: transformers' own renderer, as apply_chat_template calls it. A template
    error names the example (its file and line)."""
    from transformers.utils.chat_template_utils import render_jinja_template

    def render(chats):
        return render_jinja_template(
            conversations=chats,
            tools=tools,
            chat_template=tokenizer.get_chat_template(None, tools),
            return_assistant_tokens_mask=spans,
            **tokenizer.special_tokens_map,
        )

    try:
        return render(conversations)
    except Exception:  # find the conversation that fails, and say which
        for index, conversation in enumerate(conversations):
            try:
                render([conversation])
            except Exception as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise DataError(f"{wheres[index]}: the chat template cannot render it: {first}") from None
        raise


def _block_weights(messages: list[dict], blocks: int, where: str) -> list[bool]:
    """Which generation blocks train: one block per assistant message, none of those with loss_weight 0."""
    assistant = [m for m in messages if m["role"] == "assistant"]
    if not any("loss_weight" in m for m in assistant):
        return [True] * blocks
    if blocks != len(assistant):
        raise DataError(
            f"{where}: loss_weight needs one {{% generation %}} block per assistant message; the "
            f"chat template marks {blocks} block(s) for {len(assistant)} assistant message(s)."
        )
    return ["loss_weight" not in m for m in assistant]


def _encode_chat(rows: list[dict], tokenizer, mask: bool, wheres: list[str]) -> tuple[list, list]:
    """Chat rows ({"messages", "tools"?}) -> input_ids + labels. apply_chat_template takes one tools
    list per call, so rows render in groups of equal tools; the text is tokenized in one batch and
    the loss falls on the generation blocks (as return_assistant_tokens_mask computes it) of the
    assistant messages without loss_weight 0."""
    groups: dict[str, list[int]] = {}
    for index, row in enumerate(rows):
        groups.setdefault(json.dumps(row.get("tools"), sort_keys=True), []).append(index)
    texts: list[str] = [""] * len(rows)
    spans: list[list[tuple[int, int]]] = [[] for _ in rows]
    for indices in groups.values():
        tools = rows[indices[0]].get("tools")
        rendered, blocks = _render(
            tokenizer, [rows[i]["messages"] for i in indices], tools, mask, [wheres[i] for i in indices]
        )
        for position, index in enumerate(indices):
            texts[index] = rendered[position]
            if mask:
                spans[index] = blocks[position]
    out = tokenizer(texts, add_special_tokens=False)
    ids = [list(x) for x in out["input_ids"]]
    if not mask:
        return ids, [list(x) for x in ids]
    labels = []
    for index, row_ids in enumerate(ids):
        keep = [False] * len(row_ids)
        weights = _block_weights(rows[index]["messages"], len(spans[index]), wheres[index])
        for (start, end), trains in zip(spans[index], weights, strict=True):
            if not trains or end <= start:
                continue
            first, last = out.char_to_token(index, start), out.char_to_token(index, end - 1)
            if first is None:
                break
            for position in range(first, last + 1 if last is not None else len(row_ids)):
                keep[position] = True
        labels.append([token if k else IGNORE for token, k in zip(row_ids, keep, strict=True)])
    return ids, labels


def weightless(rows: list[dict]) -> int:
    """Messages with loss_weight 0, which cannot be honoured without the assistant mask."""
    return sum("loss_weight" in m for r in rows for m in r.get("messages", r.get("conversations", ())))


def encoder(data_format: DataFormat, template: Optional[Template], cfg: Config) -> Callable:
    """rows, tokenizer, wheres -> (input_ids, labels) for this format, mask decided once here."""
    mask = cfg.trainer.response_only_loss
    if data_format is DataFormat.text:
        return lambda rows, tok, wheres: _encode_text(rows, tok, mask)
    if data_format is DataFormat.prompt_completion:
        return lambda rows, tok, wheres: _encode_prompt_completion(rows, tok, mask)
    assert template is not None
    chat_mask = mask and template.masks_assistant
    if data_format is DataFormat.messages:
        return lambda rows, tok, wheres: _encode_chat(rows, tok, chat_mask, wheres)
    if template.renders_sharegpt:  # ShareGPT records as they are: the mapped template reads from/value
        return lambda rows, tok, wheres: _encode_chat([{"messages": r["conversations"]} for r in rows], tok, chat_mask,
                                                      wheres)  # fmt: skip
    roles = {**SHAREGPT_ROLES, **cfg.data.sharegpt_roles}
    return lambda rows, tok, wheres: _encode_chat(
        [{"messages": _sharegpt_to_messages(r["conversations"], roles)} for r in rows], tok, chat_mask, wheres
    )


def _warn_unmasked(template: Template) -> None:
    log.warning(
        "The chat template (%s) has no {%% generation %%} markers, so the loss covers every token, not only "
        "assistant turns. For assistant-only loss set model.chat_template to one of %s%s.",
        template.source,
        ", ".join(chat_templates.TEMPLATES),
        " and data.use_sharegpt_mapping=false" if template.renders_sharegpt else "",
    )


# --------------------------------------------------------------------------- checks and stats


def check_lengths(lengths, trained, max_len: int, source: str) -> dict[str, Any]:
    """Error when no example fits max_seq_length, warn with the count when some are cut. `lengths` are the
    examples' token counts, `trained` their trained tokens within max_len (sequences or numpy arrays)."""
    import numpy as np

    lengths, trained = np.asarray(lengths), np.asarray(trained)
    long = int((lengths > max_len).sum())
    if long == len(lengths):
        raise DataError(
            f"{source}: every one of the {len(lengths)} examples is longer than model.max_seq_length={max_len} tokens "
            f"(the shortest has {int(lengths.min())}). Raise model.max_seq_length or shorten the examples."
        )
    if long:
        log.warning(
            "%d of %d examples are longer than model.max_seq_length=%d tokens and will be truncated (longest: %d).",
            long,
            len(lengths),
            max_len,
            int(lengths.max()),
        )
    empty = int((trained == 0).sum())
    if empty:
        log.warning("%d example(s) have no trained tokens within max_seq_length and will be dropped.", empty)
    return {"examples": len(lengths), "truncated": long, "longest": int(lengths.max()), "no_loss_tokens": empty}


def padding_share(lengths, batch_size: int, seed: int) -> float:
    """Share of pad tokens when examples are batched unpacked (random batches, padded to the longest)."""
    import numpy as np

    order = np.random.default_rng(seed).permutation(np.asarray(lengths, dtype=np.int64))
    rows = -(-len(order) // batch_size)
    grid = np.zeros(rows * batch_size, dtype=np.int64)
    grid[: len(order)] = order
    grid = grid.reshape(rows, batch_size)
    sizes = np.full(rows, batch_size)
    sizes[-1] = len(order) - (rows - 1) * batch_size
    padded = int((grid.max(axis=1) * sizes).sum())
    return 1 - int(order.sum()) / padded if padded else 0.0


# --------------------------------------------------------------------------- entry point


FEATURES = {"input_ids": "int64", "labels": "int64"}


def to_dataset(ids: list[list[int]], labels: list[list[int]]):
    """A datasets.Dataset built straight from Arrow arrays (no type inference pass)."""
    import pyarrow as pa
    from datasets import Dataset

    tokens = pa.list_(pa.int64())
    return Dataset(pa.table({"input_ids": pa.array(ids, type=tokens), "labels": pa.array(labels, type=tokens)}))


def token_counts(ids: list[list[int]], labels: list[list[int]], max_len: int):
    """A batch as Arrow arrays, with each example's length in tokens and its trained tokens within max_len."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    tokens = pa.list_(pa.int64())
    ids_array, labels_array = pa.array(ids, type=tokens), pa.array(labels, type=tokens)
    head = pc.list_slice(labels_array, 0, max_len, return_fixed_size_list=False)
    rows = pc.list_parent_indices(head).to_numpy(zero_copy_only=False)
    keep = pc.not_equal(pc.list_flatten(head), IGNORE).to_numpy(zero_copy_only=False)
    trained = np.bincount(rows[keep], minlength=len(labels)).astype(np.int32)
    lengths = pc.list_value_length(ids_array).cast(pa.int32())
    return {"input_ids": ids_array, "labels": labels_array, "_length": lengths, "_trained": pa.array(trained)}


def column_arrays(dataset, names: list[str]):
    """Columns of a dataset as numpy arrays, reading only those columns (a few bytes a row)."""
    import numpy as np

    columns = dataset.select_columns(names).with_format("numpy")[:]
    return [np.asarray(columns[name]) for name in names]


class SFTPreparer(Preparer):
    """The SFT trainers' data (their records' `prepare`): input_ids + labels, lengths checked."""

    name = "sft"

    def __init__(self, tokenizer, cfg: Config, template: Optional[Template]) -> None:
        super().__init__(tokenizer, cfg, template)
        self.encoders: dict[DataFormat, Callable] = {}
        self.checked: set[str] = set()
        self.unmasked_chat = template is not None and not (cfg.trainer.response_only_loss and template.masks_assistant)
        if template is not None and cfg.trainer.response_only_loss and not template.masks_assistant:
            _warn_unmasked(template)

    def features(self):
        from datasets import Features, List, Value

        return Features({**{name: List(Value(kind)) for name, kind in FEATURES.items()},
                         "_length": Value("int32"), "_trained": Value("int32")})  # fmt: skip

    def key(self) -> dict[str, Any]:
        return {"response_only_loss": self.cfg.trainer.response_only_loss}

    def batch(self, rows, wheres, fmt: DataFormat):
        if self.template is not None and fmt is DataFormat.messages:
            if "tools" not in self.checked and any(chat.uses_tools(r) for r in rows):
                chat_templates.require_tool_support(self.tokenizer, self.template)
                self.checked.add("tools")
            if "reasoning" not in self.checked and any(chat.uses_reasoning(r) for r in rows):
                chat_templates.require_reasoning_support(self.tokenizer, self.template)
                self.checked.add("reasoning")
        if fmt not in self.encoders:
            self.encoders[fmt] = encoder(fmt, self.template, self.cfg)
        ids, labels = self.encoders[fmt](rows, self.tokenizer, wheres)
        counts = {"loss_weight_ignored": weightless(rows)} if self.unmasked_chat else {}
        return token_counts(ids, labels, self.cfg.model.max_seq_length), counts

    def finish(self, train, valid, counts):
        if counts.get("loss_weight_ignored"):
            reason = (
                "trainer.response_only_loss=false" if not self.cfg.trainer.response_only_loss else "no generation marks"
            )
            log.warning(
                "%d message(s) with loss_weight 0 are trained anyway: %s.", counts["loss_weight_ignored"], reason
            )
        max_len, cfg = self.cfg.model.max_seq_length, self.cfg
        lengths, trained = column_arrays(train, ["_length", "_trained"])
        stats = check_lengths(lengths, trained, max_len, "the training data")
        clipped = lengths.clip(max=max_len)
        stats.update(
            packing=cfg.trainer.packing,
            tokens=int(clipped.sum()),
            trained_tokens=int(trained.sum()),
            chat_template=self.template.source if self.template else None,
            padding_share_without_packing=round(padding_share(clipped, cfg.trainer.batch_size, cfg.seed), 4),
            # TRL's bfd packing is padding-free: rows are concatenated, position_ids keep examples apart.
            padding_share_with_packing=0.0,
        )
        return train, valid, stats

    def finish_streaming(self, train, valid):
        return train, valid, {"packing": self.cfg.trainer.packing,
                              "chat_template": self.template.source if self.template else None}  # fmt: skip


def prepare(examples: Examples, tokenizer, cfg: Config, template: Optional[Template]) -> Prepared:
    """The SFT trainers' data (their records' `prepare`): input_ids + labels, lengths checked."""
    return build(examples, tokenizer, cfg, template, SFTPreparer(tokenizer, cfg, template))
