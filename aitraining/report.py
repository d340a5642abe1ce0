"""The run's output folder: refusing to clobber an earlier run, run.json, and the end summary."""

from __future__ import annotations

import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

from aitraining.errors import ConfigError

# Files a run folder may already hold before this run writes anything: Hydra's log of this run.
OWN_FILES = {"train.log"}
PACKAGES = (
    "aitraining",
    "torch",
    "transformers",
    "trl",
    "peft",
    "datasets",
    "accelerate",
    "bitsandbytes",
    "hydra-core",
    "omegaconf",
    "unsloth",
    "unsloth_zoo",
)


def check_output_dir(out_dir: Path, overwrite: bool) -> None:
    """Refuse a folder that already holds another run's files, unless told to overwrite."""
    if not out_dir.exists():
        return
    existing = sorted(p.name for p in out_dir.iterdir() if p.name not in OWN_FILES)
    if existing and not overwrite:
        raise ConfigError(
            f"output_dir={out_dir} already holds a run ({', '.join(existing[:5])}). "
            "Choose another output_dir, or set overwrite=true to write into it."
        )


def remove_if_empty(folder: Path) -> None:
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def git_state(directory: Path) -> dict[str, Any]:
    """Commit and dirty flag of the git repository holding `directory` (None outside git)."""

    def git(*args: str) -> Optional[str]:
        try:
            done = subprocess.run(
                ["git", "-C", str(directory), *args], capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"directory": str(directory), "commit": None, "dirty": None}
    return {"directory": str(directory), "commit": commit, "dirty": bool(git("status", "--porcelain"))}


def package_versions() -> dict[str, Optional[str]]:
    versions: dict[str, Optional[str]] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")


def _fmt(value: Optional[float], spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


def summary(run: dict[str, Any]) -> str:
    """A one-screen summary of run.json."""
    accel = run["accelerator"]
    accel_line = (
        accel["used"]
        if accel["requested"] == accel["used"]
        else (f"{accel['used']} (requested {accel['requested']}: {accel['reason']})")
    )
    params = run["parameters"]
    loss = run["loss"]
    lines = [
        f"model        {run['model']['name']} ({run['model']['type']}, {run['model']['dtype']}, quant {run['quant']})",
        f"training     {run['trainer']} with {run['peft']}; {params['trainable']:,} of {params['total']:,} "
        f"parameters trainable ({100 * params['trainable'] / max(params['total'], 1):.2f}%)",
        f"accelerator  {accel_line}",
        f"data         {run['data']['train_examples']:,} examples ({run['data']['format']}) from "
        f"{', '.join(run['data']['sources'])}",
        f"loss         {_fmt(loss['train_first'])} -> {_fmt(loss['train_last'])} over {run['steps']} steps"
        + (f" (eval {_fmt(loss['eval'])})" if loss["eval"] is not None else ""),
        f"speed        {_fmt(run['tokens_per_second'], ',.0f')} tokens/s; {run['wall_seconds']:.1f} s wall"
        + (f"; peak GPU memory {run['peak_gpu_memory_gib']:.2f} GiB" if run["peak_gpu_memory_gib"] else ""),
        f"output       {run['output_dir']}",
    ]
    rule = "-" * min(max(len(line) for line in lines), 100)
    return "\n".join([rule, f"aitraining: {run['status']}", rule, *lines, rule])
