"""Clean interruption. While a run trains, SIGTERM or SIGINT (Ctrl-C) asks it to stop: the current
optimizer step finishes, a checkpoint of it is saved, run.json says `interrupted` with the command
that resumes it, and the process exits with 128 + the signal's number. A second signal aborts at once.

A launcher may ask for the same stop with its own signal (`request`: submitit's USR2 on a SLURM
preemption or time limit), and then requeues the job, which resumes (aitraining/launcher.py).

The trainer side (a TrainerCallback that acts on `STOP` at the end of each optimizer step) lives in
aitraining/trainers/build.py. Plain Python, no torch.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Optional

from aitraining.errors import AitrainingError

log = logging.getLogger("aitraining")

SIGNALS = (signal.SIGTERM, signal.SIGINT)


@dataclass
class Stop:
    """The stop asked for, if any: by which signal, and whether a launcher will requeue the job."""

    signum: Optional[int] = None
    requeue: bool = False
    step: Optional[int] = None  # the optimizer step after which training stopped for it

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else "-"


STOP = Stop()  # this process's; cleared when a run's handling ends


class Interrupted(AitrainingError):
    """Training stopped for a signal after saving a checkpoint; the run can be resumed."""

    def __init__(self, message: str, signum: int, requeue: bool = False):
        super().__init__(message)
        self.signum = signum
        self.requeue = requeue

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def request(signum: int, requeue: bool = False, log_it: bool = True) -> None:
    """Ask the run to stop after its current optimizer step (a launcher's signal handler calls this)."""
    if STOP.signum is None:
        STOP.signum, STOP.requeue = signum, requeue
        if not log_it:
            return
        name = signal.Signals(signum).name
        then = "the job will be requeued and resume" if requeue else f"{name} again aborts now"
        log.warning("%s: finishing the current optimizer step, saving a checkpoint, then stopping (%s).", name, then)


@contextlib.contextmanager
def handling(on_abort: Callable[[int], None]) -> Iterator[Stop]:
    """SIGTERM and SIGINT stop the run cleanly while inside; a second one calls `on_abort(signum)` and
    exits at once with 128 + signum. Only the main thread can take signals: elsewhere nothing is
    installed (the run then stops the usual way)."""

    def handler(signum: int, frame) -> None:
        if STOP.signum is None:
            request(signum)
            return
        sys.stderr.write(f"\n{signal.Signals(signum).name} again: aborting now, without a checkpoint of this step.\n")
        try:
            on_abort(signum)
        finally:
            os._exit(128 + signum)

    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        yield STOP
    finally:
        for s, old in previous.items():
            signal.signal(s, old)
        STOP.signum, STOP.requeue, STOP.step = None, False, None
