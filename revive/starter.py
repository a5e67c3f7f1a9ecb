"""``revive init``: a starting project in the current folder.

The config is the example of the chosen kind; an example that builds the
demo also gets its sources (hello/), so ``revive init && revive build``
builds the demo.
"""

import shutil
from pathlib import Path

from .core.errors import UserError

KINDS = {"tiny": "tiny.toml", "debian": "debian.toml", "windows": "windows.toml"}


def examples() -> Path:
    """revive's examples: installed inside the package (pyproject maps them
    to revive/examples); in a clone, examples/ beside revive/."""
    here = Path(__file__).resolve().parent
    installed = here / "examples"
    return installed if installed.is_dir() else here.parent / "examples"


def write(folder: Path, kind: str) -> "list[Path]":
    if kind not in KINDS:
        raise UserError(f"revive init: no guest kind {kind!r}; choose one of {', '.join(KINDS)}")
    config = folder / "config.toml"
    if config.exists():
        raise UserError(f"revive init: {config} exists already; move it away to start anew")
    text = (examples() / KINDS[kind]).read_text()
    written = []
    if '"examples/hello"' in text:
        # The example builds the demo in examples/hello: it comes along.
        demo = folder / "hello"
        if demo.exists():
            raise UserError(f"revive init: {demo} exists already; move it away to start anew")
        shutil.copytree(examples() / "hello", demo)
        text = text.replace('"examples/hello"', '"hello"')
        written.append(demo)
    tmp = config.with_name(".config.toml.tmp")
    tmp.write_text(text)
    tmp.rename(config)
    return [config, *written]
