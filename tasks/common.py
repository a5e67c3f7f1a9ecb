"""What the stage modules share: the project's config and paths, the
config-slice up-to-date check, and actions that fail in one line."""

import fcntl
import functools
import inspect
import json
import os
import sys
from pathlib import Path

from doit.exceptions import TaskFailed

from revive import config as config_mod
from revive.core import interrupts, tree, treeimage
from revive.core.errors import UserError, for_people
from revive.core.files import matches_sha256, sha256_file, sweep_stale
from revive.core.space import is_nospace, nospace_message


@functools.lru_cache(maxsize=None)
def _load(path: str, mtime_ns: int) -> config_mod.Config:
    return config_mod.load(path)


def settings() -> config_mod.Config:
    """The project's config, read once; a mistake in it ends doit with one
    line. Reading it does nothing else: ``start`` takes the project."""
    path = config_path()
    try:
        return _load(str(path), path.stat().st_mtime_ns if path.exists() else 0)
    except UserError as err:
        _stop_loading(err)


def config_path() -> Path:
    return Path(os.environ.get("REVIVE_CONFIG", "config.toml")).resolve()


def start() -> None:
    """Once per doit, where it starts (the clone's dodo.py, the ``revive``
    command), before any task is loaded: take the project's lock for this
    process's life (one doit per project: two would both write doit's state
    file and the same targets), remove the debris killed runs left (holding
    the lock, no other doit of this project runs), and from here on let
    Ctrl-C and SIGTERM end a stage in one line (revive/core/interrupts.py)."""
    artifacts = settings().artifacts
    try:
        _lock_project(artifacts)
    except UserError as err:
        _stop_loading(err)
    sweep_stale(artifacts)
    interrupts.install()


def _stop_loading(err: UserError):
    """A mistake found while doit loads the tasks: one line, exit 2."""
    print(for_people(err), file=sys.stderr)
    raise SystemExit(2) from None


_locks: dict = {}


def _lock_project(artifacts: Path) -> None:
    """Held until this process ends."""
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
    """The stage's input record (``revive.inputs``); a problem found while
    making it (the host's apt sources, say) ends doit with one line, like a
    config mistake."""
    from revive import inputs
    try:
        if stage.startswith("builds."):
            return inputs.for_build(cfg, stage.split(".", 1)[1])
        if stage.startswith("sources."):
            return inputs.for_sources(cfg, stage.split(".", 1)[1])
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


class code_files:
    """doit uptodate check on the repository files that shape a stage (the
    payload's ``GuestKind.source_files``): each file's sha256 under its
    path relative to the package's root. As file_dep, their absolute paths
    made another clone, or a venv made again elsewhere, a change, and the
    stage (a Debian root, then the install) was made again from the same
    code; ``doit info`` names the files that changed."""

    # revive's parent: the repository in a clone, site-packages installed
    # (where tasks/ is revive.tasks), so names read revive/... in both.
    ROOT = Path(config_mod.__file__).resolve().parents[2]

    def __init__(self, name: str, files):
        self.name = name
        self.files = [Path(f) for f in files]
        self.changes: "list[str]" = []
        self._digests: "dict[str, str] | None" = None

    def _name(self, path: Path) -> str:
        try:
            return path.resolve().relative_to(self.ROOT).as_posix()
        except ValueError:
            return str(path)

    def digests(self) -> "dict[str, str]":
        if self._digests is None:
            self._digests = {self._name(f): sha256_file(f) for f in self.files}
        return self._digests

    def configure_task(self, task) -> None:
        task.value_savers.append(lambda: {f"_code_{self.name}": self.digests()})

    def __call__(self, task, values) -> bool:
        before = values.get(f"_code_{self.name}")
        if before is None:
            self.changes = ["no successful run recorded"]
        else:
            now = self.digests()
            self.changes = [f"{name} {'added' if name not in before else 'removed' if name not in now else 'changed'}"
                            for name in sorted(set(before) | set(now))
                            if before.get(name) != now.get(name)]
        return not self.changes

    def __str__(self) -> str:
        what = "; ".join(self.changes) or "unchanged"
        return f"revive's files that shape the {self.name} changed: {what}"

    __repr__ = __str__


DIGEST = "\0digest"        # the folder's digest in its record (no file has this name)


class shared_folder:
    """doit uptodate check on a build's shared folder: the folder's digest
    (``revive.core.tree``) in doit's database, every file's stamp and sha256
    in ``record``, so that a no-op reads stamps only and ``doit info`` names
    the files that changed since the last successful build."""

    def __init__(self, key: str, folder: Path, record: Path):
        self.key, self.folder, self.record = key, Path(folder), Path(record)
        # The listing starts now, in a thread: the check below waits for it.
        tree.list_early(self.folder)
        self.files: "dict[str, list] | None" = {}
        self.listing: "str | None" = None
        self.changes: "list[str]" = []

    def configure_task(self, task) -> None:
        task.value_savers.append(self._save)

    def _save(self) -> dict:
        if self.files is None:              # the fast path found it unchanged
            self.files = tree.read_record(self.record)
            self.files.pop(DIGEST, None)
        digest = tree.digest(self.files)
        self._remember(digest)
        return {f"_tree_{self.key}": digest}

    def _remember(self, digest: str) -> None:
        tree.write_record(self.record, {**self.files, DIGEST: digest})
        tree.write_summary(self.record, {"digest": digest, "listing": self.listing})

    def __call__(self, task, values) -> bool:
        recorded = values.get(f"_tree_{self.key}")
        # Fast path: no stamp changed since the record (GNU find, one pass).
        found, since = tree.listed(self.folder)
        self.listing = tree.listing_of(found)
        summary = tree.read_summary(self.record)
        if (recorded is not None and self.listing is not None
                and summary.get("listing") == self.listing
                and summary.get("digest") == recorded):
            self.files, self.changes = None, []
            # A build that runs anyway (another input changed) reads what
            # these stamps hold, the recorded content: its revive takes its
            # image by this listing instead of listing the folder again.
            treeimage.remember(self.folder, found)
            return True
        before = tree.read_record(self.record)
        known = before.pop(DIGEST, None)
        self.files = tree.scan(self.folder, before)
        if tree.settled(self.files, found, since):
            # What the scan hashed is what the listing lists (so what the
            # image made or found by it holds); else the revive lists again.
            treeimage.remember(self.folder, found)
        same = tree.unchanged(before, self.files)
        now = known if same and known else tree.digest(self.files)
        if recorded is None:
            self.changes = ["no successful run recorded"]
        elif recorded == now:
            self.changes = []
            if not same or summary.get("listing") != self.listing:
                # Same content, new stamps (a touch, a checkout): remembered,
                # so that the next no-op does not read these files again.
                self._remember(now)
        else:
            # The record is what the last successful build read, unless a
            # failed build's check got there first; the digest decides.
            named = tree.differences(before, self.files) if before else []
            self.changes = [f"{self.folder}/{change}" for change in named] or [
                "its content differs from the last successful build's"]
        return not self.changes

    def __str__(self) -> str:
        shown = self.changes[:20]
        more = f"; and {len(self.changes) - 20} more" if len(self.changes) > 20 else ""
        return (f"shared folder {self.folder} changed: "
                f"{'; '.join(shown) or 'unchanged'}{more}")

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


def base_record(paths: Paths):
    return paths.artifacts / ".base.verified"


def base_damage(paths: Paths, recheck: bool = False) -> "str | None":
    """What is wrong with base.qcow2, the backing image of every snapshot
    and build, against base.json; None when it is intact. Hashes only when
    the image's stamp changed since it was last checked, or on ``recheck``
    (QEMU could not open it: damage beneath an unchanged stamp, which the
    install stage's up-to-date check then sees too)."""
    if recheck:
        base_record(paths).unlink(missing_ok=True)
    try:
        want = json.loads(paths.base_meta.read_text())["sha256"]
    except (OSError, ValueError, KeyError):
        return f"{paths.base_meta}: missing or unreadable"
    if not paths.base.exists():
        return f"{paths.base}: missing"
    if not matches_sha256(paths.base, want, base_record(paths)):
        return (f"{paths.base}: does not match its sha256 in {paths.base_meta.name} "
                "(the installed image was changed after the install)")
    return None


class base_intact:
    """doit up-to-date check: a damaged base.qcow2 makes the install stage
    out of date, so `doit build` reinstalls instead of reviving on it."""

    def __init__(self, paths: Paths):
        self.paths = paths
        self.problem: "str | None" = None

    def __call__(self):
        if not self.paths.base_meta.exists():
            return None         # never installed: doit runs the stage anyway
        self.problem = base_damage(self.paths)
        return self.problem is None

    def __str__(self) -> str:
        return self.problem or "base.qcow2 matches base.json"

    __repr__ = __str__


def action(fn):
    """Wrap a stage function as a doit python-action: a ``UserError``
    becomes a one-line task failure, never a traceback; so does Ctrl-C or
    SIGTERM (an ``Interrupted``), after the stage's own cleanup ran."""
    @functools.wraps(fn)
    def run(*args, task, **kwargs):
        if interrupts.interrupted():
            return TaskFailed(for_people(f"{task.name}: not started, doit was interrupted "
                                         f"({interrupts.interrupted()})"))
        try:
            with interrupts.action_running():
                fn(*args, **kwargs)
        except BaseException as err:
            if not interrupts.interrupted() and not isinstance(err, KeyboardInterrupt):
                if isinstance(err, UserError):
                    return TaskFailed(for_people(err))
                if isinstance(err, OSError) and is_nospace(err):
                    # A full disk while writing the payload, the ISO, outputs
                    # or logs is the user's to fix: one line naming the
                    # filesystem.
                    where = next((a.artifacts for a in args if isinstance(a, Paths)),
                                 Path.cwd())
                    return TaskFailed(for_people(f"{task.name.replace(':', ' ', 1)}: "
                                                 f"{nospace_message(err, where)}"))
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
    return for_people(f"{task_name} interrupted ({why}){where}; its QEMU was stopped "
                      f"and its temporary files removed{kept}")


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
