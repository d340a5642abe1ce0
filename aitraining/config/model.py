"""`model=`: the base model to fine-tune."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from omegaconf import MISSING

from aitraining import chat_templates
from aitraining.choices import DType
from aitraining.errors import reporting, require


@dataclass
class ModelConfig:
    """`model=`: the base model to fine-tune."""

    name: str = MISSING
    """Hub id (meta-llama/Llama-3.2-1B), local folder, or `tiny:<type>` for an offline tiny model."""
    max_seq_length: int = 2048
    """Longest sequence in tokens; longer examples are truncated (TRL's max_length)."""
    trust_remote_code: bool = False
    """Run modelling code shipped with the checkpoint. Off unless you trust its author."""
    dtype: DType = DType.auto
    """Weights' dtype while training: auto picks bfloat16 on a capable GPU, float32 on CPU."""
    revision: Optional[str] = None
    """Hub branch, tag or commit; None for the default branch."""
    attn_implementation: Optional[str] = None
    """Attention kernel (transformers' attn_implementation): None for the default (sdpa), or
    eager, flash_attention_2, ... Packing is fastest with a flash-attention kernel."""
    liger_kernel: bool = False
    """Liger's fused Triton kernels (TRL's use_liger_kernel): less memory for long sequences. Needs a
    CUDA GPU and `pip install 'aitraining[liger]'`; checked before the weights load."""
    chat_template: Optional[str] = None
    """None: the tokenizer's own. Or a built-in template by name (chatml, llama3, mistral, gemma,
    qwen2.5), or a path to a .jinja file, for base models that lack one."""

    def __post_init__(self) -> None:
        require(bool(self.name.strip()), "model.name",
                "model.name is empty: give a hub id, a local folder or tiny:<type>.")  # fmt: skip
        require(self.max_seq_length >= 8, "model.max_seq_length",
                f"model.max_seq_length must be >= 8 (got {self.max_seq_length}).")  # fmt: skip
        if self.chat_template is not None:
            with reporting():
                chat_templates.resolve(self.chat_template)  # a built-in name or an existing .jinja file
