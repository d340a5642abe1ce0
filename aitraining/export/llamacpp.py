"""llama.cpp's converter, where to find it, and how to get it from the package registry.

`convert_hf_to_gguf.py` is a script in llama.cpp's source tree (with its `conversion/` package and
its own `gguf-py`); no wheel installs it. llama-cpp-python's source package (PyPI, the well-kept
binding) vendors that tree, so

    python -m aitraining.export.llamacpp

downloads that source package with pip (76 MB) and unpacks the converter from its `vendor/llama.cpp`
(the script, its `conversion/` package and `gguf-py/`, 6 MB) into the aitraining cache
(`$AITRAINING_CACHE/llama.cpp-<version>`), or into the folder given as its argument. A llama.cpp
checkout of your own works too: `export.llama_cpp=PATH` or `LLAMA_CPP_DIR=PATH`. The converter runs
in this Python and needs torch, transformers, numpy and sentencepiece (`pip install 'aitraining[gguf]'`).

q4_k_m needs llama.cpp's quantizer: the binding's `llama_model_quantize` (`pip install
llama-cpp-python==0.3.36`, which builds llama.cpp), or a `llama-quantize` binary on PATH or in
the llama.cpp folder's build/bin.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Optional

from aitraining import tiny
from aitraining.errors import RunError

BINDING = "llama-cpp-python"
VERSION = "0.3.36"  # pinned: its vendored llama.cpp is the converter aitraining is tested with
CONVERTER = "convert_hf_to_gguf.py"
# What the converter needs of llama.cpp's tree: itself, its model classes and its own gguf package.
CONVERTER_FILES = (CONVERTER, "conversion/", "gguf-py/", "LICENSE")
GET_IT = (
    f"python -m aitraining.export.llamacpp (unpacks llama.cpp's converter from {BINDING}=={VERSION}'s source "
    "package), or set LLAMA_CPP_DIR (or export.llama_cpp) to a llama.cpp checkout"
)


def default_dir() -> Path:
    return tiny.cache_dir() / f"llama.cpp-{VERSION}"


def find(configured: Optional[str] = None) -> Path:
    """The llama.cpp folder holding the converter, or RunError saying how to get one."""
    candidates = [Path(p).expanduser() for p in (configured, os.environ.get("LLAMA_CPP_DIR")) if p]
    for folder in [*candidates, default_dir()]:
        if (folder / CONVERTER).is_file():
            return folder
    looked = ", ".join(str(c) for c in [*candidates, default_dir()])
    raise RunError(f"GGUF export needs llama.cpp's converter ({CONVERTER}), not found in {looked}. Get it: {GET_IT}.")


def quantizer(folder: Path) -> Optional[list[str]]:
    """A llama-quantize command: on PATH or built in the llama.cpp folder; None when there is none."""
    found = shutil.which("llama-quantize")
    built = folder / "build" / "bin" / "llama-quantize"
    return [found] if found else [str(built)] if built.is_file() else None


def fetch(target: Optional[Path] = None) -> Path:
    """Download llama-cpp-python's source package with pip and unpack its vendored llama.cpp."""
    target = target or default_dir()
    if (target / CONVERTER).is_file():
        return target
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-d", scratch,
                        f"{BINDING}=={VERSION}"], check=True)  # fmt: skip
        archive = next(Path(scratch).glob("*.tar.gz"))
        prefix = f"{archive.name.removesuffix('.tar.gz')}/vendor/llama.cpp/"
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(prefix)
                       and m.name[len(prefix):].startswith(CONVERTER_FILES)]  # fmt: skip
            for member in members:
                member.name = member.name[len(prefix) :]
            staging = Path(tempfile.mkdtemp(prefix=".llama.cpp-", dir=_parent(target)))
            tar.extractall(staging, members=[m for m in members if m.name], filter="data")
        staging.rename(target)
    return target


def _parent(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    return target.parent


if __name__ == "__main__":
    print(fetch(Path(sys.argv[1]) if len(sys.argv) > 1 else None))
