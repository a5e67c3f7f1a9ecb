"""Targets are written to a temporary name and renamed when complete."""

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(target: Path):
    """Yield a temporary sibling of ``target``; rename it over ``target`` on
    success, remove it on any failure (Ctrl-C included).

    Works for files and directories: whatever the body creates at the
    temporary path is what gets published.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    remove(tmp)
    try:
        yield tmp
        if target.is_dir() and not target.is_symlink():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.rename(target, old)
            os.rename(tmp, target)
            shutil.rmtree(old)
        else:
            os.replace(tmp, target)
    finally:
        remove(tmp)


def write_atomic(target: Path, data: "bytes | str", mode: int = 0o644) -> None:
    with atomic_path(target) as tmp:
        if isinstance(data, str):
            data = data.encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)


def remove(path: Path) -> None:
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


# Names a process gives its temporary files: atomic_path's `.NAME.tmp-PID`
# and `.NAME.old-PID`, the snapshot's `.verified.PID`, a build's
# `work/build-NAME-PID` (its overlay and exchange folder).
_STALE = re.compile(r"^\..+\.(?:tmp|old)-(\d+)$|^\.verified\.(\d+)$|^build-.+-(\d+)$")


def sweep_stale(artifacts: Path, only_pid: "int | None" = None) -> "list[Path]":
    """Remove temporary names left in ``artifacts`` by a doit that was killed
    (SIGKILL, power loss) before its own cleanup ran; return what went.

    The caller holds the project lock, so no other doit of this project
    runs: a name is debris unless its PID is alive *and* that process has
    the project's lock file open (PIDs are reused). The shared download
    cache is not ours to sweep. ``only_pid``: the names of that one dead
    process (a ``doit -n`` worker that was killed), while the others run.
    """
    artifacts = Path(artifacts)
    lock = artifacts / ".lock"
    removed = []
    for folder in (artifacts, artifacts / "builds", artifacts / "media",
                   artifacts / "keys", artifacts / "snapshot", artifacts / "work",
                   artifacts / "overlays", artifacts / "trees" / "images"):
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            m = _STALE.match(entry.name)
            if not m or (m.group(3) and folder != artifacts / "work"):
                continue
            pid = int(next(g for g in m.groups() if g))
            if only_pid is not None and pid != only_pid:
                continue
            if pid != os.getpid() and not _holds(pid, lock):
                remove(Path(entry.path))
                removed.append(Path(entry.path))
    # QEMU's own temporary folders (revive.qemu.process), named by the PID
    # of the process that started QEMU: shared by every project, so only
    # those of processes that no longer exist.
    temp = Path(tempfile.gettempdir())
    for entry in temp.glob("revive-qemu-*-*"):
        m = re.match(r"^revive-qemu-(\d+)-", entry.name)
        pid = int(m.group(1)) if m else None
        if pid is None or (only_pid is not None and pid != only_pid):
            continue
        if pid != os.getpid() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    # The snapshot stage's scratch folder has a fixed name.
    if only_pid is None and (artifacts / "work" / "snapshot").exists():
        remove(artifacts / "work" / "snapshot")
        removed.append(artifacts / "work" / "snapshot")
    return removed


def _holds(pid: int, lock: Path) -> bool:
    """Whether process ``pid`` is alive and has ``lock`` open."""
    fds = Path(f"/proc/{pid}/fd")
    try:
        links = list(fds.iterdir())
    except FileNotFoundError:
        return False
    except PermissionError:
        return True             # alive and not ours to inspect: leave it
    for fd in links:
        try:
            if os.readlink(fd) == str(lock):
                return True
        except OSError:
            continue
    return False


def stamp(path: Path) -> "list[int]":
    """What changes when a file's content can have changed: size, mtime,
    inode and ctime (which no user can set back after a write)."""
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]


def matches_sha256(path: Path, sha256: str, record: Path) -> bool:
    """Whether ``path`` still holds the content whose sha256 is given.

    Hashes only when the file's stamp differs from the one remembered in
    ``record`` (a small JSON file), so multi-GB images are not re-hashed on
    every run; a match is remembered with the new stamp.
    """
    path = Path(path)
    try:
        now = stamp(path)
    except FileNotFoundError:
        return False
    if _read_record(record).get(path.name) == [sha256, *now]:
        return True
    if sha256_file(path) != sha256:
        return False
    remember_sha256(path, sha256, record)
    return True


def remember_sha256(path: Path, sha256: str, record: Path) -> None:
    """Record that ``path``, as it is now, has this sha256 (just computed)."""
    known = _read_record(record)
    known[Path(path).name] = [sha256, *stamp(path)]
    tmp = Path(record).with_name(f".{Path(record).name.lstrip('.')}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(known))
    os.replace(tmp, record)


def _read_record(record: Path) -> dict:
    try:
        return json.loads(Path(record).read_text())
    except (OSError, ValueError):
        return {}
