"""`aitraining export RUN_DIR`: what to do with a finished run's weights, and the same steps at the
end of training (`export=` in the config, run.py's last step).

    aitraining export RUN_DIR --merge                      RUN_DIR/merged/ (merge.py)
    aitraining export RUN_DIR --gguf q8_0,q4_k_m           RUN_DIR/gguf/*.gguf, merging first (gguf.py)
    aitraining export RUN_DIR --push-to-hub user/name      the merged model (else the adapter) to the Hub (hub.py)

Each step records what it wrote in run.json's `export`. Starts without torch: the folder, the
options and the tools a step needs are checked before any weights load.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Optional

from aitraining import record
from aitraining.choices import GgufQuant
from aitraining.errors import AitrainingError, ConfigError, closest

if TYPE_CHECKING:
    from aitraining.config import ExportConfig
    from aitraining.inference import FinishedRun

log = logging.getLogger("aitraining")


def wanted(cfg: ExportConfig) -> bool:
    return cfg.merge or bool(cfg.gguf) or cfg.push_to_hub is not None


def export(run: FinishedRun, cfg: ExportConfig) -> record.ExportRecord:
    """Merge, convert, push, as `cfg` asks, in that order; run.json records each result (and the
    error of a step that failed, before it is raised)."""
    done = run.run.export
    try:
        if cfg.gguf:
            from aitraining.export import llamacpp

            llamacpp.find(cfg.llama_cpp)  # the converter is there before anything loads
        if cfg.merge or (cfg.gguf and run.is_adapter):
            from aitraining.export.merge import merge, merged_into

            done.merged = merge(run).name
            done.merged_into = merged_into(run)
            log.info("Merged model: %s", run.merged)
        if cfg.gguf:
            from aitraining.export import gguf

            files = gguf.export(run, list(cfg.gguf), cfg.llama_cpp)
            done.gguf.update({quant: str(path.relative_to(run.folder)) for quant, path in files.items()})
            done.gguf_converter = str(gguf.llamacpp.find(cfg.llama_cpp))
            log.info("GGUF: %s", ", ".join(str(p) for p in files.values()))
        if cfg.push_to_hub:
            from aitraining.export import hub

            done.hub_repo, done.hub_url, done.hub_folder = hub.push(run, cfg.push_to_hub, cfg.private)
            log.info("Pushed %s/ to the Hub: %s (%s)", done.hub_folder, done.hub_repo, done.hub_url)
        done.error = None
    except Exception as exc:
        done.error = str(exc) if isinstance(exc, AitrainingError) else f"{type(exc).__name__}: {exc}"
        raise
    finally:
        record.write(run.folder, run.run)
    return done


# --------------------------------------------------------------------------- the command


class UsageError(Exception):
    """A command-line mistake argparse found."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def _quants(text: str) -> list[GgufQuant]:
    names = [t.strip().lower() for t in text.split(",") if t.strip()]
    allowed = [q.value for q in GgufQuant]
    for name in names:
        if name not in allowed:
            raise argparse.ArgumentTypeError(f"'{name}' is not a GGUF type.{closest(name, allowed)} "
                                             f"Allowed: {', '.join(allowed)}")  # fmt: skip
    return [GgufQuant(n) for n in names]


def build_parser() -> _Parser:
    parser = _Parser(prog="aitraining export", description=__doc__.split("\n\n")[0].split(": ", 1)[1],
                     formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False,
                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))  # fmt: skip
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a finished run's folder (it holds run.json)")
    parser.add_argument("--merge", action="store_true", help="merge the LoRA adapter into the base: RUN_DIR/merged/")
    parser.add_argument("--gguf", type=_quants, action="extend", default=[], metavar="TYPE[,TYPE]",
                        help="GGUF files with llama.cpp's converter: f16, q8_0, q4_k_m (merges first)")  # fmt: skip
    parser.add_argument("--push-to-hub", metavar="REPO", help="upload to this Hub repo (user/name, or name); the "
                        "token: HF_TOKEN or `hf auth login`")  # fmt: skip
    parser.add_argument("--public", action="store_true", help="create the Hub repo public (default: private)")
    parser.add_argument("--llama-cpp", metavar="DIR", help="a llama.cpp folder with convert_hf_to_gguf.py "
                        "(default: $LLAMA_CPP_DIR, else python -m aitraining.export.llamacpp's)")  # fmt: skip
    return parser


def parse(argv: Sequence[str]) -> tuple[str, ExportConfig]:
    from aitraining.config import ExportConfig
    from aitraining.errors import collecting

    options = build_parser().parse_args(list(argv))
    if not (options.merge or options.gguf or options.push_to_hub):
        raise UsageError("nothing to do: add --merge, --gguf TYPE or --push-to-hub REPO")
    with collecting():
        cfg = ExportConfig(merge=options.merge, gguf=options.gguf, push_to_hub=options.push_to_hub,
                           private=not options.public, llama_cpp=options.llama_cpp)  # fmt: skip
    return options.run_dir, cfg


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "export":
        args = args[1:]
    try:
        run_dir, cfg = parse(args)
        from aitraining.inference import finished_run, require_generative

        run = finished_run(run_dir)
        require_generative(run, "export")
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
        export(run, cfg)
    except UsageError as exc:
        sys.stderr.write(f"ERROR: {str(exc).removeprefix('argument ')}. See: aitraining export --help\n")
        sys.exit(2)
    except (AitrainingError, ConfigError) as exc:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        sys.stderr.write(f"ERROR: {exc}\n")
        sys.exit(2)
    for key, value in record.read(run.folder).export.__dict__.items():  # type: ignore[union-attr]
        if value and key != "error":
            print(f"{key:16} {value}")


if __name__ == "__main__":
    main()
