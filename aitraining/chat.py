"""`aitraining chat RUN_DIR`: talk to a trained model, the reply streamed token by token.

The run's base model and adapter (or its merged / fully fine-tuned weights) load with the run's
own tokenizer and chat template (aitraining/inference.py). On a terminal it is a conversation
(`/reset` forgets it, `/exit` or Ctrl-D ends it); when stdin is not a terminal each input line is
one prompt, answered on one output line, and the command exits at the end of the input:

    printf 'Name a colour.\\nName a fruit.\\n' | aitraining chat outputs/quickstart/2026-... > answers.txt

Starts without torch: the folder and the options are checked before any weights load.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import Optional

from aitraining.errors import AitrainingError


class UsageError(Exception):
    """A command-line mistake argparse found."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def build_parser() -> _Parser:
    parser = _Parser(prog="aitraining chat", description=__doc__.split("\n\n")[1], allow_abbrev=False,
                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a finished run's folder (it holds run.json)")
    parser.add_argument("--max-new-tokens", type=int, default=256, metavar="N", help="longest reply (default 256)")
    parser.add_argument("--temperature", type=float, default=0.7, metavar="T",
                        help="sampling temperature; 0 answers greedily, the same every time (default 0.7)")  # fmt: skip
    parser.add_argument("--system", metavar="TEXT", help="a system prompt (chat templates; the Alpaca prompt's "
                        "preamble)")  # fmt: skip
    parser.add_argument("--merged", action="store_true", help="load RUN_DIR/merged/ (aitraining export --merge) "
                        "instead of the base model + adapter")  # fmt: skip
    return parser


def fail(message: str) -> None:
    sys.stderr.write(f"ERROR: {message}\n")
    sys.exit(2)


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "chat":
        args = args[1:]
    try:
        options = build_parser().parse_args(args)
        if options.max_new_tokens < 1:
            raise UsageError(f"--max-new-tokens {options.max_new_tokens}: must be >= 1")
        if options.temperature < 0:
            raise UsageError(f"--temperature {options.temperature}: must be >= 0 (0: greedy)")
        from aitraining.inference import finished_run, require_generative

        run = finished_run(options.run_dir)  # the folder checked before anything heavy
        require_generative(run, "chat")
        chat(run, options)
    except UsageError as exc:
        fail(f"{str(exc).removeprefix('argument ')}. See: aitraining chat --help")
    except AitrainingError as exc:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        fail(str(exc))
    except KeyboardInterrupt:
        sys.stderr.write("\n")


def chat(run, options: argparse.Namespace) -> None:
    from aitraining import inference

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s", stream=sys.stderr)
    interactive = sys.stdin.isatty()
    with contextlib.redirect_stdout(sys.stderr):  # stdout holds the replies only (Unsloth prints banners)
        model, tokenizer, how = inference.load(run, merged=options.merged)
    style = run.style
    sys.stderr.write(f"Loaded {how} ({style.value} prompts).")
    sys.stderr.write(" Type a message; /reset forgets the conversation, /exit ends.\n" if interactive else "\n")
    streamer = line_streamer(tokenizer, one_line=not interactive)
    history: list[dict[str, str]] = []
    while True:
        if interactive:
            sys.stderr.write("> ")
            sys.stderr.flush()
        line = sys.stdin.readline()
        if not line:  # end of input
            break
        text = line.rstrip("\n")
        if interactive and text.strip() in ("/exit", "/quit"):
            break
        if interactive and text.strip() == "/reset":
            history = []
            continue
        if not text.strip():
            if not interactive:
                print(flush=True)  # one output line per input line
            continue
        messages = inference.conversation(text, options.system, history)
        prompt = inference.render(style, tokenizer, messages)
        answer = inference.generate(model, tokenizer, prompt, style, options.max_new_tokens, options.temperature,
                                    streamer=streamer)  # fmt: skip
        if interactive:  # a conversation; piped lines are separate prompts
            history = [*(m for m in messages if m["role"] != "system"), {"role": "assistant", "content": answer}]


def line_streamer(tokenizer, one_line: bool):
    """transformers' TextStreamer, printing to stdout as tokens come; with `one_line` (piped input)
    a reply's own line breaks are written as \\n, so that each reply is one output line."""
    from transformers import TextStreamer

    class Streamer(TextStreamer):
        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            if one_line:
                text = text.replace("\r", "").replace("\n", "\\n")
            sys.stdout.write(text + ("\n" if stream_end else ""))
            sys.stdout.flush()

    return Streamer(tokenizer, skip_prompt=True, skip_special_tokens=True)


if __name__ == "__main__":
    main()
