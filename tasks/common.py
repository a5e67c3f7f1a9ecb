"""What the stage modules share: the project's config and paths, the
config-slice up-to-date check, and actions that fail in one line."""

import fcntl
import functools
import json
import os
import sys
from pathlib import Path

from doit.exceptions import TaskFailed

from . import config as config_mod
from .core.errors import UserError, for_people
from .core.space import is_nospace, nospace_message


@functools.lru_cache(maxsize=None)
def _load(path: str, mtime_ns: int) -> config_mod.Config:
    return config_mod.load(path)


def settings() -> config_mod.Config:
    """The project's config; a mistake in it ends doit with one line."""
    path = Path(os.environ.get("REVIVE_CONFIG", "config.toml")).resolve()
    try:
        cfg = _load(str(path), path.stat().st_mtime_ns if path.exists() else 0)
        _lock_project(cfg.artifacts)
        return cfg
    except UserError as err:
        _stop_loading(err)


def _stop_loading(err: UserError):
    """A mistake found while doit loads the tasks: one line, exit 2."""
    print(for_people(err), file=sys.stderr)
    raise SystemExit(2) from None


_locks: dict = {}


def _lock_project(artifacts: Path) -> None:
    """One doit per project at a time: two would both write doit's state
    file and the same targets. Held until this process ends."""
    if str(artifacts) in _locks:
        return
    artifacts.mkdir(parents=True, exist_ok=True)
    fh = open(artifacts / ".lock", "w")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        raise UserError(f"another doit is running in this project ({artifacts}); "
                        "wait for it to finish") from None
    _locks[str(artifacts)] = fh


def stage_inputs(cfg: config_mod.Config, stage: str):
    """The stage's input record (``tasks.inputs``); a problem found while
    making it (the host's apt sources, say) ends doit with one line, like a
    config mistake."""
    from . import inputs
    try:
        if stage.startswith("builds."):
            return inputs.for_build(cfg, stage.split(".", 1)[1])
        return inputs.for_stage(cfg, stage)
    except UserError as err:
        _stop_loading(err)


def uptodate(record) -> "config_slice":
    """doit's up-to-date check on a stage's input record."""
    return config_slice(record.stage, record.plain())


class Paths:
    """Where every artifact of a project lives."""

    def __init__(self, cfg: config_mod.Config):
        a = cfg.artifacts
        self.artifacts = a
        self.cache = Path(os.environ.get("REVIVE_CACHE", a / "cache"))
        self.logs = a / "logs"
        self.key = a / "keys" / "id_ed25519"
        self.public_key = a / "keys" / "id_ed25519.pub"
        self.payload = a / "payload"
        self.payload_manifest = a / "payload" / "manifest.json"
        self.iso = a / "media" / "install.iso"
        self.floppy = a / "media" / "answers.img"
        self.base = a / "base.qcow2"
        self.base_meta = a / "base.json"
        self.snapshot = a / "snapshot"
        self.snapshot_meta = a / "snapshot" / "meta.json"
        self.builds = a / "builds"
        self.work = a / "work"
        self.accel_cache = self.cache / "accel.json"


class config_slice:
    """doit uptodate check on the plain-data slice of config a stage reads.

    Unlike doit's ``config_changed`` it keeps the slice itself, so that
    ``doit info`` can say which key changed, not just that something did.
    """

    def __init__(self, name: str, data: dict):
        self.name = name
        self.data = json.loads(json.dumps(data, sort_keys=True, default=str))
        self.changes: "list[str]" = []

    def configure_task(self, task) -> None:
        task.value_savers.append(lambda: {f"_config_{self.name}": self.data})

    def __call__(self, task, values) -> bool:
        before = values.get(f"_config_{self.name}")
        if before is None:
            self.changes = ["no successful run recorded"]
        else:
            self.changes = list(_differences(before, self.data, ""))
        return not self.changes

    def __str__(self) -> str:
        what = "; ".join(self.changes) or "unchanged"
        return f"config.toml ({self.name}) changed: {what}"

    __repr__ = __str__


def _differences(old, new, where: str):
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            sub = f"{where}.{key}" if where else key
            if key not in old:
                yield f"{sub} added"
            elif key not in new:
                yield f"{sub} removed"
            else:
                yield from _differences(old[key], new[key], sub)
    elif old != new:
        yield f"{where}: {old!r} -> {new!r}"


def action(fn):
    """Wrap a stage function as a doit python-action: a ``UserError``
    becomes a one-line task failure, never a traceback."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        try:
            fn(*args, **kwargs)
        except UserError as err:
            return TaskFailed(for_people(err))
        except OSError as err:
            # A full disk while writing the payload, the ISO, outputs or
            # logs is the user's to fix: one line naming the filesystem.
            if not is_nospace(err):
                raise
            where = next((a.artifacts for a in args if isinstance(a, Paths)), Path.cwd())
            return TaskFailed(for_people(f"{fn.__name__}: {nospace_message(err, where)}"))
        return None
    return run


def say(message: str) -> None:
    # One write of the whole line: under `doit -n N` the workers and doit's
    # own reporter share one pipe, and print()'s separate newline lets
    # another process's line land in between.
    sys.stdout.write(for_people(message) + "\n")
    sys.stdout.flush()


def files_under(folder: Path) -> "list[str]":
    """Every file below ``folder`` (the build's sources), sorted, for file_dep."""
    if not folder.is_dir():
        return []
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        found.extend(str(Path(dirpath) / f) for f in sorted(filenames))
    return found
