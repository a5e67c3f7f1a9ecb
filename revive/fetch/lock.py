"""revive.lock, next to config.toml: what a source resolved to the first
time it was fetched, so that a later fetch which differs is refused rather
than built silently. JSON; meant to be committed with config.toml."""

import fcntl
import json
from pathlib import Path

from ..core.errors import UserError
from ..core.files import write_atomic

NAME = "revive.lock"
HEADER = ("revive's record of fetched sources: a later fetch that differs is refused. "
          "Remove an entry to accept a new version.")


def path_for(config: Path) -> Path:
    return Path(config).parent / NAME


def check_and_record(lock: Path, source: str, entry: dict, compare: "tuple[str, ...]") -> None:
    """Record ``entry`` for ``source`` in ``lock``, or refuse it when an
    entry for the same request (all keys but ``compare``) is recorded with
    other values for ``compare``."""
    lock = Path(lock)
    with open(lock.with_name(f".{lock.name}.flock"), "w") as guard:
        # Sources are fetched in parallel under doit -n: one writer at a time.
        fcntl.flock(guard, fcntl.LOCK_EX)
        data = read(lock)
        recorded = data["sources"].get(source)
        same_request = recorded is not None and all(
            recorded.get(k) == v for k, v in entry.items() if k not in compare)
        if same_request:
            changed = [k for k in compare if recorded.get(k) != entry.get(k)]
            if changed:
                now = ", ".join(f"{k} {entry.get(k)}" for k in compare)
                was = ", ".join(f"{k} {recorded.get(k)}" for k in compare)
                raise UserError(
                    f"{lock.name}: [sources.{source}] fetched {now}, but {lock.name} "
                    f"records {was}; if the new version is wanted, remove "
                    f"\"{source}\" from {lock}")
            return
        data["sources"][source] = entry
        write_atomic(lock, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read(lock: Path) -> dict:
    try:
        data = json.loads(Path(lock).read_text())
    except FileNotFoundError:
        return {"comment": HEADER, "sources": {}}
    except ValueError as err:
        raise UserError(f"{Path(lock).name}: not valid JSON ({err}); fix it or "
                        "remove it to record the sources afresh") from None
    if not isinstance(data, dict) or not isinstance(data.get("sources"), dict):
        raise UserError(f"{Path(lock).name}: no \"sources\" object; remove the file "
                        "to record the sources afresh")
    return data
