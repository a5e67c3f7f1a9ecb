"""config.toml for the tests and benches, written with tomli-w from Python
data instead of TOML pasted into each module.

    write(root, tiny("agent-test", src="hello", answers={"user": "builder"},
                     builds={"hello": build("sh /mnt/src/build.sh",
                                            outputs=["hello", "hello.txt"])}))

``tiny()`` is the project the integration tests run: the tiny guest in
256 MB with short deadlines, a read-only ``src`` share and the exchange
folder; whatever a module changes is merged in, table by table.
"""

import copy
import tomllib
from pathlib import Path

import tomli_w


def shares(src: str = "src") -> dict:
    """The build's inputs read-only at /mnt/src from folder ``src``, and
    the exchange folder at /mnt/xchg."""
    return {"src": {"guest": "/mnt/src", "host": src},
            "xchg": {"guest": "/mnt/xchg", "mode": "rw"}}


def text(config: dict) -> str:
    return tomli_w.dumps(config)


# The two shares as TOML, for the unit tests that append tables of their own.
SHARES = text({"shares": shares()})


def tiny(hostname: str = "revive-test", src: str = "src", **tables) -> dict:
    """The tiny guest's project as the integration tests run it, with
    ``tables`` (``vm={...}``, ``builds={...}``, ...) merged in."""
    return merge({"guest": {"kind": "tiny"},
                  "answers": {"hostname": hostname},
                  "vm": {"memory": "256M"},
                  "timeouts": {"install": "10m", "boot": "3m", "revive": "1m"},
                  "shares": shares(src)}, tables)


def build(command: str, outputs=(), timeout: str = "2m", **keys) -> dict:
    """One [builds.NAME] table."""
    table = {"command": command}
    if outputs:
        table["outputs"] = list(outputs)
    return {**table, "timeout": timeout, **keys}


def merge(base: dict, changes: dict) -> dict:
    """``base`` with ``changes`` merged in: tables key by key, anything
    else replaced. Neither argument is changed."""
    merged = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def write(folder: Path, config: dict) -> Path:
    """``folder``/config.toml holding ``config``."""
    path = Path(folder) / "config.toml"
    path.write_text(text(config))
    return path


def edit(path: Path, changes: dict) -> dict:
    """Merge ``changes`` into the config file at ``path``; return what it held
    before (``write`` puts it back)."""
    before = tomllib.loads(Path(path).read_text())
    Path(path).write_text(text(merge(before, changes)))
    return before

