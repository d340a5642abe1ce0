"""The `aitraining` console script: one subcommand per job, each loaded only when it runs.

    aitraining llm --train ...     the existing tool's flags (aitraining/compat/cli.py)
    aitraining chat RUN_DIR        talk to a trained model (aitraining/chat.py)
    aitraining export RUN_DIR ...  merge, GGUF, push to the Hub (aitraining/export/)

`aitraining --help` imports nothing heavy (no Hydra, no torch).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Optional

from aitraining.errors import closest

# name -> (module:function taking the whole argument list, one line of help)
COMMANDS: dict[str, tuple[str, str]] = {
    "llm": (
        "aitraining.compat.cli:main",
        "fine-tune an LLM with the existing tool's flags: aitraining llm --train ...",
    ),
    "chat": ("aitraining.chat:main", "talk to a trained model: aitraining chat RUN_DIR"),
    "export": (
        "aitraining.export:main",
        "merge, convert to GGUF, push to the Hub: aitraining export RUN_DIR --merge --gguf q8_0",
    ),
}

USAGE = """\
usage: aitraining COMMAND ...

Fine-tune LLMs. Also: python -m aitraining [group=option] [key=value] (Hydra).

commands:
{commands}

aitraining COMMAND --help shows a command's options.
"""


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        sys.stdout.write(USAGE.format(commands="\n".join(f"  {n:10} {h}" for n, (_, h) in COMMANDS.items())))
        return
    name = args[0]
    if name not in COMMANDS:
        what = (
            "a command is required." if name.startswith("-") else f"unknown command '{name}'.{closest(name, COMMANDS)}"
        )
        sys.stderr.write(f"ERROR: {what} Commands: {', '.join(COMMANDS)}. See: aitraining --help\n")
        sys.exit(2)
    module, _, function = COMMANDS[name][0].partition(":")
    getattr(importlib.import_module(module), function)(args)


if __name__ == "__main__":
    main()
