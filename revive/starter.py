"""``revive init``: a starting project in the current folder.

The config is written from the table of settings with the values of the
chosen kind's example (``revive.config.reference.starter``): every key, its
doc, its default. A kind whose example builds the demo also gets the
demo's sources (hello/), so ``revive init && revive build`` builds it.
"""

import shutil
from pathlib import Path

from .config import reference
from .config.reference import examples
from .core.errors import UserError
from .guests import KINDS


def write(folder: Path, kind: str) -> "list[Path]":
    if kind not in KINDS:
        raise UserError(f"revive init: no guest kind {kind!r}; choose one of {', '.join(KINDS)}")
    config = folder / "config.toml"
    if config.exists():
        raise UserError(f"revive init: {config} exists already; move it away to start anew")
    text = reference.starter(kind, *reference.example(kind, demo="hello"))
    written = []
    if "examples/hello" in (examples() / f"{kind}.toml").read_text():
        # The example builds the demo (tiny, windows): its sources come along.
        demo = folder / "hello"
        if demo.exists():
            raise UserError(f"revive init: {demo} exists already; move it away to start anew")
        shutil.copytree(examples() / "hello", demo)
        written.append(demo)
    tmp = config.with_name(".config.toml.tmp")
    tmp.write_text(text)
    tmp.rename(config)
    return [config, *written]
