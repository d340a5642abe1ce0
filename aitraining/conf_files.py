"""The config folder shipped inside the package, and the options of its groups. No Hydra, no YAML.

`aitraining/conf` is the repository's `conf/` (a link in a checkout, a copy in the wheel), and
`conf/experiment` is `experiments/`. Everything that composes or lists options reads it from here.
"""

from __future__ import annotations

from pathlib import Path

CONF_DIR = Path(__file__).resolve().parent / "conf"
CONFIG_NAME = "config"


def group_options(group: str) -> list[str]:
    """The options of a config group: the YAML files in its folder."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
