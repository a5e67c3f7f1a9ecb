"""What the stage modules share: the project's config and paths, the
config-slice up-to-date check, and actions that fail in one line."""

import fcntl
import functools
import inspect
import json
import os
import sys
import time
from pathlib import Path

from doit.exceptions import TaskFailed

from . import config as config_mod
from .core import interrupts
from .core.errors import UserError
from .core.files import sweep_stale


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
        print(f"revive: {err}", file=sys.stderr)
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
    # Holding the lock, no other doit of this project runs: temporary names
    # left by a killed one are debris. Ctrl-C and SIGTERM from here on end a
    # stage in one line (tasks/core/interrupts.py).
    sweep_stale(artifacts)
    interrupts.install()


def guest_kind(cfg: config_mod.Config):
    """The guest kind's object; a mistake in its [guest] keys ends doit with
    one line, like any other config mistake."""
    from . import guests
    try:
        return guests.kind_for(cfg)
    except UserError as err:
        print(f"revive: {err}", file=sys.stderr)
        raise SystemExit(2) from None


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
    becomes a one-line task failure, never a traceback; so does Ctrl-C or
    SIGTERM (an ``Interrupted``), after the stage's own cleanup ran."""
    @functools.wraps(fn)
    def run(*args, task, **kwargs):
        if interrupts.interrupted():
            return TaskFailed(f"revive: {task.name}: not started, doit was interrupted "
                              f"({interrupts.interrupted()})")
        try:
            with interrupts.action_running():
                fn(*args, **kwargs)
        except BaseException as err:
            if not interrupts.interrupted() and not isinstance(err, KeyboardInterrupt):
                if isinstance(err, UserError):
                    return TaskFailed(f"revive: {err}")
                raise
            # Whatever a cleanup raised after an interrupt is its consequence.
            message = interrupted_line(task.name, interrupts.find(err) or err)
            if interrupts.parent_gone():
                # doit itself was killed: nobody reads this worker's result.
                print(message, file=sys.__stderr__, flush=True)
                os._exit(1)
            return TaskFailed(message)
        return None
    # doit passes the running Task to an action with a `task` parameter.
    sig = inspect.signature(fn)
    run.__signature__ = sig.replace(parameters=[
        *sig.parameters.values(),
        inspect.Parameter("task", inspect.Parameter.KEYWORD_ONLY)])
    return run


def interrupted_line(task_name: str, err: BaseException) -> str:
    why = getattr(err, "why", None) or "SIGINT"
    phase = getattr(err, "phase", None)
    log = getattr(err, "log", None)
    where = f" during {phase}" if phase else ""
    kept = f"; partial log kept: {log}" if log else ""
    return (f"revive: {task_name} interrupted ({why}){where}; its QEMU was stopped and "
            f"its temporary files removed{kept}")


class Stopwatch:
    """Named phase timings for result.json and the benchmark."""

    def __init__(self):
        self.phases: "dict[str, float]" = {}
        self._start = time.monotonic()

    def phase(self, name: str):
        watch = self

        class _Phase:
            def __enter__(self):
                self.t = time.monotonic()

            def __exit__(self, kind, err, tb):
                stopped = interrupts.find(err)
                if stopped is not None and stopped.phase is None:
                    stopped.phase = name
                spent = time.monotonic() - self.t
                watch.phases[name] = round(watch.phases.get(name, 0) + spent, 3)
        return _Phase()

    def total(self) -> float:
        return round(time.monotonic() - self._start, 3)


def say(message: str) -> None:
    print(f"revive: {message}", flush=True)


def files_under(folder: Path) -> "list[str]":
    """Every file below ``folder`` (the build's sources), sorted, for file_dep."""
    if not folder.is_dir():
        return []
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        found.extend(str(Path(dirpath) / f) for f in sorted(filenames))
    return found
