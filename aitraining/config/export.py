"""`export=`: what happens to the trained weights after training (aitraining/export/).

The same steps run later with `aitraining export RUN_DIR --merge --gguf q8_0 --push-to-hub REPO`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

from aitraining.choices import GgufQuant
from aitraining.errors import require

_REPO_ID = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*/)?[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass
class ExportConfig:
    """`export=`: merge, convert to GGUF and push to the Hub at the end of training."""

    merge: bool = False
    """Merge the LoRA adapter into the base model: RUN_DIR/merged/ (safetensors, tokenizer, chat
    template, generation config). A quantized run merges into the base reloaded unquantized, in
    the run's dtype. The adapter stays in RUN_DIR/adapter/ either way."""
    gguf: list[GgufQuant] = field(default_factory=list)
    """GGUF files to write into RUN_DIR/gguf/ with llama.cpp's converter: f16, q8_0, q4_k_m. A LoRA
    run is merged first."""
    push_to_hub: Optional[str] = None
    """Hub repo id (user/name, or name for your own account) to upload the merged model (else the
    adapter or full model) to, with a model card from run.json. The token comes from HF_TOKEN or
    `hf auth login`, never from the config."""
    private: bool = True
    """Create the Hub repo private."""
    llama_cpp: Optional[str] = None
    """A llama.cpp source folder (holding convert_hf_to_gguf.py); None: $LLAMA_CPP_DIR, else the one
    `python -m aitraining.export.llamacpp` unpacks into the aitraining cache."""

    def __post_init__(self) -> None:
        require(
            self.push_to_hub is None or bool(_REPO_ID.match(self.push_to_hub)),
            "export.push_to_hub",
            f"export.push_to_hub={self.push_to_hub}: not a Hub repo id (user/name or name: letters, digits, "
            "'.', '_', '-').",
        )
        require(
            len(set(self.gguf)) == len(self.gguf),
            "export.gguf",
            f"export.gguf lists a file type twice ({', '.join(q.value for q in self.gguf)}).",
        )
