"""RUN_DIR/gguf/<name>-<type>.gguf with llama.cpp's own tools: its converter writes f16 and q8_0
(and carries the tokenizer's chat template into the file's `tokenizer.chat_template`); q4_k_m is
llama.cpp's quantizer run on the f16 file (the llama-cpp-python binding, or llama-quantize)."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from typing import Optional

from aitraining.choices import GgufQuant
from aitraining.errors import RunError
from aitraining.export import llamacpp
from aitraining.export.merge import is_merged, merge
from aitraining.inference import FinishedRun

log = logging.getLogger(__name__)

FOLDER = "gguf"
CONVERTER_TYPES = {GgufQuant.f16: "f16", GgufQuant.q8_0: "q8_0"}  # what convert_hf_to_gguf.py writes itself
# Hints for the converter's known failures (its last line holds the exception).
HINTS = {
    "No module named": "pip install 'aitraining[gguf]' (the converter's packages)",
    "pre-tokenizer was not recognized": "this llama.cpp does not know the model's tokenizer: a newer llama.cpp "
    "(LLAMA_CPP_DIR) may",
    "is not supported": "this llama.cpp cannot convert this architecture: a newer llama.cpp (LLAMA_CPP_DIR) may",
}


def source_folder(run: FinishedRun) -> Path:
    """What to convert: the merged model (a LoRA run is merged first) or the full fine-tune."""
    if not run.is_adapter:
        return run.weights
    return run.merged if is_merged(run.merged) else merge(run)


def convert(source: Path, out: Path, outtype: str, llama_cpp: Path) -> Path:
    """llama.cpp's convert_hf_to_gguf.py, in this Python; RunError with its last line on failure."""
    command = [sys.executable, str(llama_cpp / llamacpp.CONVERTER), str(source), "--outfile", str(out),
               "--outtype", outtype]  # fmt: skip
    log.info("Converting %s to %s with %s.", source, out.name, llama_cpp / llamacpp.CONVERTER)
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not out.is_file():
        lines = [line for line in done.stderr.splitlines() if line.strip() and not line.startswith("INFO")]
        last = lines[-1].strip() if lines else f"exit code {done.returncode}"
        hint = next((f" ({h})" for needle, h in HINTS.items() if needle in last), "")
        raise RunError(f"llama.cpp's converter could not convert {source}: {last}{hint}.")
    return out


def quantize(f16: Path, out: Path, llama_cpp: Path) -> Path:
    """q4_k_m from the f16 file, with llama.cpp's quantizer: the binding's llama_model_quantize, else
    a llama-quantize binary; RunError saying what to install when there is neither."""
    try:
        import llama_cpp as binding  # llama-cpp-python
    except ImportError:
        binding = None
    if binding is not None:
        import ctypes

        params = binding.llama_model_quantize_default_params()
        params.ftype = binding.LLAMA_FTYPE_MOSTLY_Q4_K_M
        failed = binding.llama_model_quantize(str(f16).encode(), str(out).encode(), ctypes.byref(params))
    else:
        command = llamacpp.quantizer(llama_cpp)
        if command is None:
            raise RunError(
                f"q4_k_m needs llama.cpp's quantizer: pip install {llamacpp.BINDING}=={llamacpp.VERSION} (builds "
                "llama.cpp), or put llama-quantize on PATH (or build it in the llama.cpp folder: build/bin). "
                "f16 and q8_0 need only the converter."
            )
        failed = subprocess.run([*command, str(f16), str(out), "Q4_K_M"], capture_output=True, check=False).returncode
    if failed or not out.is_file():
        raise RunError(f"llama.cpp's quantizer could not write {out} (code {failed}).")
    return out


def export(run: FinishedRun, quants: list[GgufQuant], llama_cpp: Optional[str] = None) -> dict[str, Path]:
    """Each requested GGUF file, by file type. The converter is looked up before anything merges."""
    tools = llamacpp.find(llama_cpp)
    source = source_folder(run)
    folder = run.folder / FOLDER
    folder.mkdir(exist_ok=True)
    name = run.folder.name if run.folder.name != "." else "model"
    stem = f"{(run.saved.get('project_name') or name)}"
    written: dict[str, Path] = {}
    for quant in sorted(quants, key=lambda q: q not in CONVERTER_TYPES):  # f16 first: q4_k_m reuses it
        out = folder / f"{stem}-{quant.value}.gguf"
        if quant in CONVERTER_TYPES:
            written[quant.value] = convert(source, out, CONVERTER_TYPES[quant], tools)
            continue
        f16 = written.get("f16") or convert(source, folder / f".{stem}-f16.tmp.gguf", "f16", tools)
        try:
            written[quant.value] = quantize(f16, out, tools)
        finally:
            if f16.name.startswith("."):
                f16.unlink(missing_ok=True)
    return written
