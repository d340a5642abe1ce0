"""Running as one of several processes (torchrun, accelerate launch, SLURM tasks): everything about it.

aitraining has no launcher of its own: the processes come from torchrun / `accelerate launch` (or
SLURM tasks through submitit), and this module makes one run of them:

- the world: this process's rank, the number of processes and the launcher, read from the
  environment the launcher sets (`world`), no torch;
- the start (`start`): join the process group as the trainer will (accelerate's PartialState), and
  agree on the launch time, rank 0's, so that the default `outputs/<project>/<time>` folder (the
  `launch_time` resolver, conf/config.yaml) is one folder for all processes, however late one starts;
- quiet replicas (`quiet_replicas`): only the main process logs, warns, prints and writes files;
- agreement (`on_main`, `everywhere`): a step run on the main process only (reading and tokenizing
  the data, checking the output folder), its result handed to the others, or run everywhere; an
  error in any process stops every process with the same one-line message (printed once), instead
  of N tracebacks or a hang at the next collective;
- the strategy (`dist=`, conf/dist/): what is refused before weights load (`problem`), the launch
  environment the libraries read while loading (`export_launch_env`), the TRL arguments
  (`trainer_args`) and the 4-bit storage QLoRA needs under sharding (`quantization_kwargs`).

Single-process runs never import torch here.
"""

from __future__ import annotations

import atexit
import importlib.util
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Optional, TypeVar

from aitraining.choices import DistKind, PeftKind, Quant
from aitraining.config.dist import ZERO_STAGES
from aitraining.errors import AitrainingError, ConfigError

if TYPE_CHECKING:
    from aitraining.config import Config

log = logging.getLogger(__name__)

LAUNCH_TIME_ENV = "AITRAINING_LAUNCH_TIME"
"""Epoch seconds of the launch, set by `start` from rank 0's clock (a user may set it too)."""
DEEPSPEED_PIN = "deepspeed==0.19.8"
SHARDED = (DistKind.fsdp, DistKind.zero3)  # strategies that shard the parameters themselves
T = TypeVar("T")


# --------------------------------------------------------------------------- the world


@dataclass(frozen=True)
class World:
    """This process's place in the launch, from the launcher's environment."""

    rank: int = 0
    local_rank: int = 0
    size: int = 1
    launcher: str = "python"
    """python (a plain single process), torchrun, accelerate or slurm (tasks started by submitit / srun)."""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def _int(env: Mapping[str, str], *names: str, default: int) -> int:
    for name in names:
        try:
            return int(env[name])
        except (KeyError, ValueError):
            continue
    return default


def world(env: Optional[Mapping[str, str]] = None) -> World:
    """The world this process is in. torchrun and accelerate launch set RANK / WORLD_SIZE / LOCAL_RANK;
    SLURM tasks (hydra/launcher=slurm with tasks_per_node > 1) have only SLURM_PROCID / SLURM_NTASKS
    until `start` exports the torch.distributed variables from them."""
    env = os.environ if env is None else env
    slurm_tasks = _int(env, "SLURM_NTASKS", default=1)
    if "RANK" not in env and "SUBMITIT_EXECUTOR" in env and slurm_tasks > 1:
        rank, size = _int(env, "SLURM_PROCID", default=0), slurm_tasks
        return World(rank, _int(env, "SLURM_LOCALID", default=0), size, "slurm")
    size = _int(env, "WORLD_SIZE", default=1)
    rank = _int(env, "RANK", default=0)
    if "ACCELERATE_MIXED_PRECISION" in env or "ACCELERATE_DYNAMO_BACKEND" in env:
        launcher = "accelerate"  # accelerate launch exports these to every process it starts
    elif "TORCHELASTIC_RUN_ID" in env:
        launcher = "torchrun"
    elif "SLURM_PROCID" in env and size > 1:
        launcher = "slurm"
    else:
        launcher = "python"
    return World(rank, _int(env, "LOCAL_RANK", default=0), size, launcher)


_started: Optional[World] = None


def current() -> World:
    """The world `start` joined; before it (or in a single process), what the environment says."""
    return _started or world()


def is_main() -> bool:
    return current().is_main


def start() -> World:
    """Join the process group (idempotent) and agree on the launch time. A single process: nothing.

    Called by the app before Hydra composes the config (so that `launch_time` agrees), and again
    inside the job for SLURM tasks started by submitit, which get the composed config already.
    """
    global _started
    if _started is not None:
        return _started
    here = world()
    if not here.distributed:
        return here
    if here.launcher == "slurm" and "RANK" not in os.environ:
        import submitit

        submitit.helpers.TorchDistributedEnvironment().export()  # MASTER_ADDR/PORT, RANK, WORLD_SIZE, LOCAL_RANK
    import torch
    from accelerate import PartialState

    # As the trainer will (TrainingArguments(use_cpu=not cuda)): gloo on CPU, nccl on GPUs.
    PartialState(cpu=not torch.cuda.is_available())
    if not torch.cuda.is_available():
        _cpu_ranks_load()
    atexit.register(_leave)
    stamp = [float(os.environ.get(LAUNCH_TIME_ENV) or time.time())]
    torch.distributed.broadcast_object_list(stamp, src=0)
    os.environ[LAUNCH_TIME_ENV] = repr(stamp[0])
    _started = here
    return here


def _cpu_ranks_load() -> None:
    """On CPU processes the Trainer loads a checkpoint's optimizer with map_location=args.device, which
    is `cpu:<rank>` there, a location torch.load does not know (transformers' _load_optimizer_and_scheduler):
    storages tagged `cpu:N` load onto the CPU. GPU runs (cuda:N) never take this path."""
    import torch.serialization

    def cpu_n(storage, location: str):
        return storage if location.startswith("cpu:") else None

    torch.serialization.register_package(30, lambda obj: None, cpu_n)


def _leave() -> None:
    """Leave the process group at exit (a gloo group left to the interpreter's teardown can abort)."""
    import torch.distributed as td

    if td.is_initialized():
        td.destroy_process_group()


def launch_time(pattern: str) -> str:
    """The `launch_time` resolver: Hydra's `now`, but the agreed launch time in a multi-process run."""
    stamp = os.environ.get(LAUNCH_TIME_ENV)
    moment = datetime.fromtimestamp(float(stamp)) if stamp else datetime.now()
    return moment.strftime(pattern)


def quiet_replicas() -> None:
    """In a process other than the main one: no log lines, warnings, progress bars or prints (the main
    process says it all once), and no train.log (the main process writes the run folder). Errors
    that stop the run reach the main process through `on_main` / `everywhere`; a crash still shows
    its traceback."""
    if current().is_main:
        return
    root = logging.getLogger()
    for handler in root.handlers[:]:
        if isinstance(handler, logging.FileHandler):
            root.removeHandler(handler)
            handler.close()
    root.setLevel(logging.CRITICAL + 1)
    os.environ.update(TRANSFORMERS_VERBOSITY="error", DATASETS_VERBOSITY="error", HF_DATASETS_DISABLE_PROGRESS_BARS="1")
    import warnings

    warnings.simplefilter("ignore")
    sys.stdout = open(os.devnull, "w")  # for the life of the process


# --------------------------------------------------------------------------- agreement


class Elsewhere(AitrainingError):
    """Another process failed: this one stops with its message (only the main process prints it)."""


def _describe(exc: Optional[BaseException], rank: int) -> Optional[str]:
    if exc is None:
        return None
    if isinstance(exc, AitrainingError):
        return str(exc)
    return f"process {rank} failed: {type(exc).__name__}: {exc}"


def _active() -> bool:
    return _started is not None


def on_main(step: Callable[[], T]) -> T:
    """Run `step` on the main process only and hand its result to every process (the data is read
    and tokenized once). An error there stops every process with its message."""
    if not _active():
        return step()
    import torch.distributed as td

    result: Any = None
    error: Optional[BaseException] = None
    if is_main():
        try:
            result = step()
        except Exception as exc:
            error = exc
    box = [(result if error is None else None, _describe(error, 0))]
    td.broadcast_object_list(box, src=0)
    if error is not None:
        raise error
    result, message = box[0]
    if message is not None:
        raise Elsewhere(message)
    return result


def main_first(step: Callable[[], T]) -> T:
    """Run `step` on the main process, then on the others (which find what it made, e.g. a model
    built or downloaded into the cache, instead of racing to make it too)."""
    if not _active():
        return step()
    first = everywhere(lambda: step() if is_main() else None)
    return everywhere(lambda: first if is_main() else step())


def everywhere(step: Callable[[], T]) -> T:
    """Run `step` in every process; if it fails in any, every process stops with the first failure's
    message (lowest rank), at once instead of waiting in the next collective."""
    if not _active():
        return step()
    import torch.distributed as td

    result: Any = None
    error: Optional[BaseException] = None
    try:
        result = step()
    except Exception as exc:
        error = exc
    messages: list[Optional[str]] = [None] * current().size
    td.all_gather_object(messages, _describe(error, current().rank))
    if error is not None:
        raise error
    first = next((m for m in messages if m is not None), None)
    if first is not None:
        raise Elsewhere(first)
    return result


def any_process(flag: bool) -> bool:
    """True in every process when it is true in any (a stop asked for: all stop at the same step,
    instead of one waiting for the others in the next collective). One small all-reduce."""
    if not _active():
        return flag
    import torch
    import torch.distributed as td

    device = f"cuda:{current().local_rank}" if td.get_backend() == "nccl" else "cpu"
    value = torch.tensor([1 if flag else 0], device=device)
    td.all_reduce(value, op=td.ReduceOp.MAX)
    return bool(value.item())


def barrier() -> None:
    """Wait until every process is here (e.g. all wrote their part of a checkpoint)."""
    if _active():
        import torch.distributed as td

        td.barrier()


# --------------------------------------------------------------------------- the strategy


@dataclass(frozen=True)
class Facts:
    """What the strategy check needs from the machine, each asked only when needed."""

    deepspeed_installed: Callable[[], bool]
    has_gpu: Callable[[], bool]


def problem(kind: DistKind, here: World, facts: Facts) -> Optional[ConfigError]:
    """Why `dist=kind` cannot run in this launch (the decision table), or None. Pure: the machine's
    facts come in `facts`. Cheapest checks first."""
    if kind in ZERO_STAGES and not facts.deepspeed_installed():
        return ConfigError(
            f"dist={kind.value} needs DeepSpeed, which is not installed: pip install 'aitraining[deepspeed]' "
            f"(pinned {DEEPSPEED_PIN}).",
            key="dist",
        )
    if kind in (DistKind.fsdp, *ZERO_STAGES) and not facts.has_gpu():
        return ConfigError(
            f"dist={kind.value} needs CUDA GPUs: accelerate 1.15 runs FSDP and DeepSpeed only on a GPU launch "
            "(on CPU it would silently run plain DDP). Use dist=ddp (or none) here.",
            key="dist",
            fix={"dist": "ddp"},
        )
    if kind is DistKind.fsdp and here.launcher == "python":
        return ConfigError(
            "dist=fsdp needs a distributed launch: torchrun --nproc_per_node N -m aitraining dist=fsdp ... "
            "(or accelerate launch).",
            key="dist",
        )
    return None


def _deepspeed_installed() -> bool:
    return importlib.util.find_spec("deepspeed") is not None


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


FACTS = Facts(_deepspeed_installed, _has_gpu)


def check(cfg: Config, facts: Facts = FACTS) -> None:
    """Refuse a strategy that cannot run here, before any weights load; note one that does nothing."""
    here = current()
    error = problem(cfg.dist.kind, here, facts)
    if error is not None:
        raise error
    if cfg.dist.kind is DistKind.ddp and not here.distributed:
        log.warning(
            "dist=ddp in a single process: nothing to distribute. Launch several: "
            "torchrun --nproc_per_node N -m aitraining dist=ddp ..."
        )


def export_launch_env(cfg: Config) -> None:
    """What `accelerate launch` exports for this strategy, before the model loads: Unsloth's and
    transformers' loaders read it (e.g. Unsloth stores 4-bit weights for FSDP2 only when it sees
    FSDP_VERSION=2, unsloth/models/llama.py:4022). The trainer's own settings are `trainer_args`."""
    kind = cfg.dist.kind
    if kind is DistKind.fsdp:
        os.environ.setdefault("ACCELERATE_USE_FSDP", "true")
        os.environ.setdefault("FSDP_VERSION", "2")
    elif kind in ZERO_STAGES:
        os.environ.setdefault("ACCELERATE_USE_DEEPSPEED", "true")
        os.environ.setdefault("ACCELERATE_DEEPSPEED_ZERO_STAGE", str(ZERO_STAGES[kind]))


def sharded(cfg: Config) -> bool:
    """Whether the weights are split over the processes (dist=fsdp, zero3): saving them gathers."""
    return cfg.dist.kind in SHARDED


def trainer_args(cfg: Config) -> dict[str, Any]:
    """TRL config arguments of the strategy (`trainer.args` may still override the DDP one)."""
    kind = cfg.dist.kind
    args: dict[str, Any] = {}
    if cfg.peft.kind is PeftKind.lora:
        # Every LoRA weight gets a gradient each step: no extra pass over the autograd graph.
        args["ddp_find_unused_parameters"] = False
    if kind is DistKind.fsdp:
        args.update(fsdp=True, fsdp_config=dict(cfg.dist.fsdp_config))
    elif kind in ZERO_STAGES:
        args["deepspeed"] = _plain(cfg.dist.deepspeed)
    return args


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def quantization_kwargs(cfg: Config, dtype) -> dict[str, Any]:
    """BitsAndBytesConfig arguments QLoRA needs under this strategy: FSDP and ZeRO-3 can shard
    4-bit weights only when they are stored in a float dtype (the compute dtype)."""
    if cfg.quant.kind is Quant.int4 and cfg.dist.kind in SHARDED:
        return {"bnb_4bit_quant_storage": dtype}
    return {}


def device_map(cfg: Config) -> Optional[dict[str, int]]:
    """Where a quantized model loads under DDP on GPUs: this process's own GPU (bitsandbytes places
    the weights at load time; the trainer cannot move them later). None otherwise."""
    here = current()
    if cfg.quant.kind is Quant.none or not here.distributed or cfg.dist.kind in SHARDED:
        return None
    import torch

    return {"": here.local_rank} if torch.cuda.is_available() else None
