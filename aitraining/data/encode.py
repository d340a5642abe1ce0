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
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Optional

from aitraining import chat_templates
from aitraining.chat_templates import Template
from aitraining.choices import DataFormat
from aitraining.data import Examples, Prepared
from aitraining.data.formats import SHAREGPT_ROLES
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


def _render(tokenizer, conversations: list[list[dict]], tools: Optional[list], spans: bool, source: str):
    """The conversations as text through the chat template, with the character spans of each one's
    {% generation %} blocks: transformers' own renderer, as apply_chat_template calls it. A template
    error names the example (its index among the training examples) and the template."""
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
                raise DataError(f"{source} example {index + 1}: the chat template cannot render it: {first}") from None
        raise


def _block_weights(messages: list[dict], blocks: int, source: str, index: int) -> list[bool]:
    """Which generation blocks train: one block per assistant message, none of those with loss_weight 0."""
    assistant = [m for m in messages if m["role"] == "assistant"]
    if not any("loss_weight" in m for m in assistant):
        return [True] * blocks
    if blocks != len(assistant):
        raise DataError(
            f"{source} example {index + 1}: loss_weight needs one {{% generation %}} block per assistant message; the "
            f"chat template marks {blocks} block(s) for {len(assistant)} assistant message(s)."
        )
    return ["loss_weight" not in m for m in assistant]


def _encode_chat(rows: list[dict], tokenizer, mask: bool, source: str = "data") -> tuple[list, list]:
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
        rendered, blocks = _render(tokenizer, [rows[i]["messages"] for i in indices], tools, mask, source)
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
        weights = _block_weights(rows[index]["messages"], len(spans[index]), source, index)
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


def _weightless(rows: list[dict], reason: str) -> None:
    """loss_weight 0 cannot be honoured without the assistant mask: say so once, with the count."""
    count = sum("loss_weight" in m for r in rows for m in r.get("messages", r.get("conversations", ())))
    if count:
        log.warning("%d message(s) with loss_weight 0 are trained anyway: %s.", count, reason)


def encoder(data_format: DataFormat, template: Optional[Template], cfg: Config, source: str = "data") -> Callable:
    """rows, tokenizer -> (input_ids, labels) for this format, mask decided once here."""
    mask = cfg.trainer.response_only_loss
    if data_format is DataFormat.text:
        return lambda rows, tok: _encode_text(rows, tok, mask)
    if data_format is DataFormat.prompt_completion:
        return lambda rows, tok: _encode_prompt_completion(rows, tok, mask)
    assert template is not None
    chat_mask = mask and template.masks_assistant
    if mask and not template.masks_assistant:
        log.warning(
            "The chat template (%s) has no {%% generation %%} markers, so the loss covers every token, not only "
            "assistant turns. For assistant-only loss set model.chat_template to one of %s%s.",
            template.source,
            ", ".join(chat_templates.TEMPLATES),
            " and data.use_sharegpt_mapping=false" if template.renders_sharegpt else "",
        )
    if data_format is DataFormat.messages:
        return lambda rows, tok: _encode_chat(rows, tok, chat_mask, source)
    if template.renders_sharegpt:  # ShareGPT records as they are: the mapped template reads from/value
        return lambda rows, tok: _encode_chat([{"messages": r["conversations"]} for r in rows], tok, chat_mask, source)
    roles = {**SHAREGPT_ROLES, **cfg.data.sharegpt_roles}
    return lambda rows, tok: _encode_chat(
        [{"messages": _sharegpt_to_messages(r["conversations"], roles)} for r in rows], tok, chat_mask, source
    )


# --------------------------------------------------------------------------- checks and stats


def check_lengths(ids: list[list[int]], labels: list[list[int]], max_len: int, source: str) -> dict[str, Any]:
    """Error when no example fits max_seq_length, warn with the count when some are cut."""
    lengths = [len(x) for x in ids]
    long = sum(n > max_len for n in lengths)
    if long == len(lengths):
        raise DataError(
            f"{source}: every one of the {len(lengths)} examples is longer than model.max_seq_length={max_len} tokens "
            f"(the shortest has {min(lengths)}). Raise model.max_seq_length or shorten the examples."
        )
    if long:
        log.warning(
            "%d of %d examples are longer than model.max_seq_length=%d tokens and will be truncated (longest: %d).",
            long,
            len(lengths),
            max_len,
            max(lengths),
        )
    empty = sum(all(t == IGNORE for t in row[:max_len]) for row in labels)
    if empty:
        log.warning("%d example(s) have no trained tokens within max_seq_length and will be dropped.", empty)
    return {"examples": len(lengths), "truncated": long, "longest": max(lengths), "no_loss_tokens": empty}


def padding_share(lengths: list[int], batch_size: int, seed: int) -> float:
    """Share of pad tokens when examples are batched unpacked (random batches, padded to the longest)."""
    order = list(lengths)
    random.Random(seed).shuffle(order)
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    padded = sum(len(batch) * max(batch) for batch in batches)
    return 1 - sum(order) / padded if padded else 0.0


# --------------------------------------------------------------------------- entry point


def to_dataset(ids: list[list[int]], labels: list[list[int]]):
    """A datasets.Dataset built straight from Arrow arrays (no type inference pass)."""
    import pyarrow as pa
    from datasets import Dataset

    tokens = pa.list_(pa.int64())
    return Dataset(pa.table({"input_ids": pa.array(ids, type=tokens), "labels": pa.array(labels, type=tokens)}))


def prepare(examples: Examples, tokenizer, cfg: Config, template: Optional[Template]) -> Prepared:
    """The SFT trainers' data (their records' `prepare`): input_ids + labels, lengths checked."""
    if template is not None and examples.uses_tools:
        chat_templates.require_tool_support(tokenizer, template)
    if template is not None and examples.uses_reasoning:
        chat_templates.require_reasoning_support(tokenizer, template)
    encode_rows = encoder(examples.format, template, cfg, examples.sources[0])
    if examples.is_chat and not (cfg.trainer.response_only_loss and template and template.masks_assistant):
        reason = "trainer.response_only_loss=false" if not cfg.trainer.response_only_loss else "no generation marks"
        _weightless(examples.train, reason)
    max_len = cfg.model.max_seq_length
    ids, labels = encode_rows(examples.train, tokenizer)
    stats = check_lengths(ids, labels, max_len, examples.sources[0])
    lengths = [min(len(x), max_len) for x in ids]
    stats.update(
        packing=cfg.trainer.packing,
        tokens=sum(lengths),
        trained_tokens=sum(sum(t != IGNORE for t in row[:max_len]) for row in labels),
        chat_template=template.source if template else None,
        padding_share_without_packing=round(padding_share(lengths, cfg.trainer.batch_size, cfg.seed), 4),
        # TRL's bfd packing is padding-free: rows are concatenated, position_ids keep examples apart.
        padding_share_with_packing=0.0,
    )
    encode_valid = encoder(examples.format, template, cfg, examples.sources[-1])
    valid = to_dataset(*encode_valid(examples.valid, tokenizer)) if examples.valid else None
    return Prepared(to_dataset(ids, labels), valid, stats)
