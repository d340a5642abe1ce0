"""The end of a sweep: one table of every job and a plot of their loss curves.

`SweepSummary` is a Hydra callback (registered under `hydra.callbacks` in conf/config.yaml). When a
multirun ends it reads each job's run.json and metrics.json from the sweep folder, so it works the
same whichever launcher ran the jobs (in this process, submitit_local, SLURM), and writes:

- summary.csv and summary.md: overrides, status, final train and eval loss, tokens/s, wall time,
  accelerator used and the error of a failed job, best job first;
- loss_curves.png: the train (and eval) loss of every job that logged one.

It prints the table and records which jobs failed; `aitraining.app.main` turns that into the exit
status, and summarises a sweep that Hydra cut short with an error (`report_unfinished`).
`summarize(folder)` rewrites the summary of any sweep folder. No torch here; matplotlib (Agg) is
imported only to draw the plot.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from aitraining import record

SUMMARY_CSV = "summary.csv"
SUMMARY_MD = "summary.md"
LOSS_PLOT = "loss_curves.png"

# Process state for aitraining.app.main: the job folders that failed in sweeps that ended (the exit
# status), and the sweep folders that started and have not ended (summarised if the sweep errors out).
_failed_jobs: list[str] = []
_unfinished: list[Path] = []


@dataclass
class Job:
    """One sweep job, as its folder tells it."""

    name: str  # the job's folder under the sweep folder (its number)
    folder: Path
    status: str  # succeeded | failed | interrupted | running (still, or killed) | missing (no run.json)
    overrides: list[str] = field(default_factory=list)
    train_loss: Optional[float] = None
    eval_loss: Optional[float] = None
    tokens_per_second: Optional[float] = None
    wall_seconds: Optional[float] = None
    accelerator: Optional[str] = None
    error: Optional[str] = None

    @property
    def objective(self) -> Optional[float]:
        """What the run returned to the sweeper: eval loss when there is one, else the final train loss."""
        return self.eval_loss if self.eval_loss is not None else self.train_loss

    @property
    def ranked(self) -> bool:
        """Succeeded with a finite objective: it takes part in the ranking."""
        objective = self.objective
        return self.status == "succeeded" and objective is not None and math.isfinite(objective)

    def sort_key(self) -> tuple[int, float, int, str]:
        """Ranked jobs by objective (lowest first), then the others; ties by job number."""
        number = int(self.name) if self.name.isdigit() else sys.maxsize
        return (0, self.objective, number, self.name) if self.ranked else (1, math.inf, number, self.name)  # type: ignore[return-value]


@dataclass
class Summary:
    sweep_dir: Path
    jobs: list[Job]  # best first
    common_overrides: list[str]  # overrides every job shares (not repeated per row)
    files: list[Path]

    @property
    def failed(self) -> list[Job]:
        return [job for job in self.jobs if job.status != "succeeded"]


def read_job(folder: Path) -> Job:
    """A job from its run record (written by the run, or by app.py when the job failed before training)."""
    run = record.read(folder)
    if run is None:
        error = "no run.json: the job stopped before writing one (see its train.log)"
        return Job(folder.name, folder, "missing", error=error)
    error = run.error
    if run.status is record.Status.running:
        error = "still running, or stopped while training without recording an error (killed?); see its train.log"
    return Job(
        name=folder.name,
        folder=folder,
        status=run.status.value,
        overrides=list(run.overrides),
        train_loss=run.loss.train_last,
        eval_loss=run.loss.eval,
        tokens_per_second=run.tokens_per_second,
        wall_seconds=run.wall_seconds,
        accelerator=run.accelerator.label if run.accelerator else None,
        error=" ".join(str(error).split()) if error else None,
    )


def job_folders(sweep_dir: Path) -> list[Path]:
    """The job folders of a sweep: its subfolders (not hidden ones such as submitit's .submitit)."""
    if not sweep_dir.is_dir():
        return []
    return [p for p in sweep_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]


def collect(sweep_dir: Path) -> tuple[list[Job], list[str]]:
    """Every job of the sweep, best first, and the overrides they all share."""
    jobs = sorted((read_job(folder) for folder in job_folders(sweep_dir)), key=Job.sort_key)
    known = [job.overrides for job in jobs if job.overrides]
    common = [o for o in known[0] if all(o in other for other in known[1:])] if len(known) > 1 else []
    return jobs, common


def _fmt(value: Optional[float], spec: str) -> str:
    return "-" if value is None else format(value, spec)


COLUMNS = ["rank", "job", "status", "overrides", "train_loss", "eval_loss", "tokens_per_s", "wall_s", "accelerator"]


def _rows(jobs: list[Job], common: list[str]) -> list[dict[str, str]]:
    rows = []
    for rank, job in enumerate(jobs, start=1):
        own = [o for o in job.overrides if o not in common]
        rows.append(
            {
                "rank": str(rank) if job.ranked else "-",
                "job": job.name,
                "status": job.status,
                "overrides": " ".join(own) or "-",
                "train_loss": _fmt(job.train_loss, ".4f"),
                "eval_loss": _fmt(job.eval_loss, ".4f"),
                "tokens_per_s": _fmt(job.tokens_per_second, ".0f"),
                "wall_s": _fmt(job.wall_seconds, ".1f"),
                "accelerator": job.accelerator or "-",
                "error": job.error or "",
            }
        )
    return rows


def markdown_table(jobs: list[Job], common: list[str]) -> str:
    """An aligned Markdown table (readable on a console too), with an error column when a job failed."""
    rows = _rows(jobs, common)
    columns = COLUMNS + (["error"] if any(row["error"] for row in rows) else [])
    cells = [[c for c in columns]] + [[row[c].replace("|", "\\|") for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]

    def line(values: list[str]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"

    return "\n".join([line(cells[0]), line(["-" * w for w in widths]), *(line(c) for c in cells[1:])])


def write_csv(path: Path, jobs: list[Job], common: list[str]) -> None:
    """Full-precision numbers; the overrides column holds every override of the job."""
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow([*COLUMNS, "error", "output_dir"])
        for rank, job in enumerate(jobs, start=1):
            writer.writerow(
                [
                    rank if job.ranked else "",
                    job.name,
                    job.status,
                    " ".join(job.overrides),
                    job.train_loss,
                    job.eval_loss,
                    job.tokens_per_second,
                    job.wall_seconds,
                    job.accelerator,
                    job.error or "",
                    str(job.folder),
                ]
            )


def _number(value: Any) -> Optional[float]:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _loss_curves(folder: Path) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    try:
        history = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        history = None
    train: list[tuple[float, float]] = []
    evals: list[tuple[float, float]] = []
    for entry in history if isinstance(history, list) else []:
        if not isinstance(entry, dict) or _number(entry.get("step")) is None:
            continue
        for key, points in (("loss", train), ("eval_loss", evals)):
            value = _number(entry.get(key))
            if value is not None and math.isfinite(value):
                points.append((float(entry["step"]), value))
    return train, evals


def plot_losses(path: Path, jobs: list[Job], common: list[str], title: str) -> bool:
    """Draw every job's train loss (solid) and eval loss (dashed, dots); False when none logged a loss."""
    curves = [(job, *_loss_curves(job.folder)) for job in jobs]
    curves = [c for c in curves if c[1] or c[2]]
    if not curves:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5))
    for job, train, evals in curves:
        label = f"{job.name}: " + (" ".join(o for o in job.overrides if o not in common) or "-")
        color = None
        if train:
            (drawn,) = ax.plot(*zip(*train, strict=True), label=label, linewidth=1.5)
            color = drawn.get_color()
        if evals:
            ax.plot(*zip(*evals, strict=True), "o--", color=color, label=None if train else label, markersize=4)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (train solid, eval dashed)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_summary(sweep_dir: Path, jobs: list[Job], common: list[str]) -> Summary:
    """Write summary.csv, summary.md and (when a job logged a loss) loss_curves.png into the sweep folder."""
    csv_path, md_path, plot_path = sweep_dir / SUMMARY_CSV, sweep_dir / SUMMARY_MD, sweep_dir / LOSS_PLOT
    write_csv(csv_path, jobs, common)
    failed = [job for job in jobs if job.status != "succeeded"]
    lines = [
        f"# Sweep {sweep_dir}",
        "",
        f"{len(jobs)} jobs, {len(jobs) - len(failed)} succeeded, {len(failed)} failed; best first (lowest eval "
        "loss, else final train loss).",
        "",
    ]
    if common:
        lines += [f"Overrides of every job: `{' '.join(common)}`", ""]
    lines += [markdown_table(jobs, common), ""]
    try:
        plotted = plot_losses(plot_path, jobs, common, str(sweep_dir))
    except Exception as exc:  # a plot must never cost the table
        sys.stderr.write(f"WARNING: could not draw {plot_path.name}: {type(exc).__name__}: {exc}\n")
        plotted = False
    if plotted:
        lines += [f"![loss curves]({LOSS_PLOT})", ""]
    md_path.write_text("\n".join(lines), encoding="utf-8")
    return Summary(sweep_dir, jobs, common, [csv_path, md_path, *([plot_path] if plotted else [])])


def summarize(sweep_dir: Path) -> Summary:
    """Read a sweep folder and write its summary files (what the callback does, callable on any sweep folder)."""
    return write_summary(sweep_dir, *collect(sweep_dir))


def failed_jobs() -> list[str]:
    """Jobs that failed in the sweeps that ended in this process (empty after a clean sweep)."""
    return list(_failed_jobs)


def report(sweep_dir: Path) -> Summary:
    """Summarise a sweep folder and print the table, best first; the failures as one ERROR line."""
    jobs, common = collect(sweep_dir)
    # first, so that the exit status is right even if writing the files fails
    _failed_jobs.extend(str(job.folder) for job in jobs if job.status != "succeeded")
    summary = write_summary(sweep_dir, jobs, common)
    print(f"Sweep summary, best first: {len(jobs)} jobs in {sweep_dir}", flush=True)
    if common:
        print(f"Overrides of every job: {' '.join(common)}", flush=True)
    print(markdown_table(jobs, common), flush=True)
    print(f"Wrote {', '.join(p.name for p in summary.files)} in {sweep_dir}", flush=True)
    if summary.failed:
        names = ", ".join(job.name for job in summary.failed)
        sys.stderr.write(
            f"ERROR: {len(summary.failed)} of {len(jobs)} sweep jobs failed ({names}); "
            f"their errors are in {sweep_dir / SUMMARY_MD}\n"
        )
        sys.stderr.flush()
    return summary


def report_unfinished() -> None:
    """The sweeper or launcher ended in an error before the sweep's end (a SLURM job killed for its
    time or memory, a search that gave up): summarise what the sweep folders hold so far."""
    while _unfinished:
        sweep_dir = _unfinished.pop()
        if sweep_dir.is_dir():
            sys.stderr.write(f"ERROR: the sweep ended early; summarising what {sweep_dir} holds.\n")
            report(sweep_dir)


class SweepSummary(Callback):
    """Hydra callback: summarise the sweep folder when a multirun ends."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _unfinished.append(Path(str(config.hydra.sweep.dir)).resolve())

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir)).resolve()
        if sweep_dir in _unfinished:
            _unfinished.remove(sweep_dir)
        from aitraining import dist

        if dist.is_main():  # a sweep under torchrun: every process ran it, the main one sums it up
            report(sweep_dir)
