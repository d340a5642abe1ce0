"""Build what scripts/gpu_check.sh trains on: a Llama-3.2-1B-shaped model with random weights (no
download) and a text file whose rows each nearly fill a 2048-token sequence.

    python scripts/gpu_check_setup.py WORKDIR [--small]     (--small: a CPU-sized dry run)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from aitraining import tiny

# meta-llama/Llama-3.2-1B's config.json, minus the weights.
LLAMA_3_2_1B = {
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_hidden_layers": 16,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 64,
    "vocab_size": 128256,
    "max_position_embeddings": 131072,
    "rope_theta": 500000.0,
    "rope_scaling": {
        "factor": 32.0,
        "high_freq_factor": 4.0,
        "low_freq_factor": 1.0,
        "original_max_position_embeddings": 8192,
        "rope_type": "llama3",
    },
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": True,
}
SMALL = {**LLAMA_3_2_1B, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 4096}  # fmt: skip
SEQ_TOKENS = 2048
ROWS = 160


def main() -> None:
    work, small = Path(sys.argv[1]), "--small" in sys.argv
    tokenizer = tiny.build_tokenizer()
    config = LlamaConfig(
        **(SMALL if small else LLAMA_3_2_1B),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model_dir = work / "llama-3.2-1b-random"
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    print(f"model: {sum(p.numel() for p in model.parameters()) / 1e9:.3f} B parameters -> {model_dir}")

    rows = json.loads((Path(tiny.__file__).parent / "samples" / "alpaca_en_demo.json").read_text())
    texts = [f"{r['instruction']}\n{r['input']}\n{r['output']}" for r in rows]
    lengths = [len(ids) for ids in tokenizer(texts)["input_ids"]]
    out, start = [], 0
    while len(out) < ROWS:  # rows of consecutive examples, each just under SEQ_TOKENS tokens (the
        parts, total, i = [], 0, start  # runner refuses data of which no example fits max_seq_length)
        while total + lengths[i % len(texts)] + 1 < SEQ_TOKENS - 8:
            parts.append(texts[i % len(texts)])
            total += lengths[i % len(texts)] + 1
            i += 1
        out.append({"text": "\n\n".join(parts)})
        start += 7
    (work / "long.jsonl").write_text("".join(json.dumps(r) + "\n" for r in out))
    print(f"data: {len(out)} rows of just under {SEQ_TOKENS} tokens -> {work / 'long.jsonl'}")


if __name__ == "__main__":
    main()
