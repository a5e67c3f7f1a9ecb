"""Collect a build's outputs from the exchange folder, treating everything
the guest left there as hostile input.

What comes back is only regular files and folders, owned by whoever runs
revive. Every entry is reached by ``openat`` with ``O_NOFOLLOW`` one path
component at a time from the exchange folder, so a symlinked parent folder
(output ``a/b`` where ``a`` points to ``/etc``) cannot lead out of it.
Symlinks, fifos, sockets and device nodes are refused, not copied; a file
with several hard links is copied as its bytes, never linked. Modes keep
the guest's read/write/execute bits (from the 9p mapped-xattr
``user.virtfs.mode`` when present) minus setuid, setgid, sticky and
group/other write; the owner can always read files and traverse folders.
The total size is checked against the free space of the destination's
filesystem before anything is copied.

Call it after the guest is stopped: a running guest could swap an entry
between the check and the copy.
"""

import errno
import os
import stat
from pathlib import Path
from typing import NamedTuple

from .errors import UserError
from .space import describe_filesystem

XATTR_MODE = "user.virtfs.mode"
FILE_MASK = 0o755          # no setuid/setgid/sticky, no group/other write
OWNER_FILE = 0o600
OWNER_DIR = 0o700
_CHUNK = 1 << 20


class Collected(NamedTuple):
    collected: "list[str]"   # outputs copied (as declared)
    missing: "list[str]"     # declared outputs the build did not produce
    refused: "list[str]"     # "path: why" for each entry not copied


class _Entry(NamedTuple):
    rel: str                 # path below the exchange folder
    is_dir: bool
    mode: int                # the mode to give the copy
    size: int


def check_output_name(rel: str) -> "str | None":
    """Why ``rel`` cannot name an output (None if it can): it must be a
    relative path below the exchange folder, not the folder itself."""
    if not rel or "\0" in rel:
        return "must be a non-empty path"
    if rel.startswith("/") or rel.startswith("\\"):
        return "must be a path relative to the exchange folder"
    parts = [p for p in rel.replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts:
        return "names the exchange folder itself; name the files or folders in it"
    if ".." in parts:
        return "must be a path relative to the exchange folder, without '..'"
    return None


def _parts(rel: str) -> "list[str]":
    return [p for p in rel.replace("\\", "/").split("/") if p not in ("", ".")]


def collect_outputs(exchange: Path, outputs, dest: Path) -> Collected:
    """Copy each declared output from ``exchange`` into ``dest`` (created).

    Raises ``UserError`` (one line) when the outputs do not fit in the free
    space of ``dest``'s filesystem, or when writing runs out of space.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    collected, missing, refused = [], [], []
    plan: "list[_Entry]" = []
    root = os.open(exchange, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for rel in outputs:
            why = check_output_name(rel)
            if why:
                refused.append(f"{rel}: {why}")
                continue
            found = _plan_output(root, _parts(rel), refused)
            if found is None:
                missing.append(rel)
            elif found:
                plan.extend(found)
                collected.append(rel)
        _check_space(plan, dest)
        for entry in plan:
            _copy(root, entry, dest)
        # Folder modes last: a folder the guest made read-only must still
        # take its files first.
        for entry in reversed(plan):
            if entry.is_dir:
                os.chmod(dest / entry.rel, entry.mode)
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise UserError(f"collecting the outputs: no space left on "
                            f"{describe_filesystem(dest)}; free space there and rerun") from None
        raise
    finally:
        os.close(root)
    return Collected(collected, missing, refused)


def _plan_output(root: int, parts: "list[str]", refused: "list[str]"):
    """The entries of one output; None if it does not exist, [] if refused."""
    rel = "/".join(parts)
    fd = _open_parent(root, parts)
    if isinstance(fd, str):
        if fd == "missing":
            return None
        refused.append(f"{rel}: {fd}")
        return []
    try:
        try:
            st = os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        why, mode = _judge(fd, parts[-1], st)
        if why:
            refused.append(f"{rel}: {why}")
            return []
        if stat.S_ISREG(st.st_mode):
            return [_Entry(rel, False, mode, st.st_size)]
        entries: "list[_Entry]" = []
        _plan_tree(fd, parts[-1], rel, mode, entries, refused)
        return entries
    finally:
        os.close(fd)


def _open_parent(root: int, parts: "list[str]"):
    """A dir fd for the folder holding ``parts[-1]``, walked without
    following links; or a reason string."""
    fd = os.dup(root)
    for i, name in enumerate(parts[:-1]):
        try:
            nxt = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
        except FileNotFoundError:
            os.close(fd)
            return "missing"
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.ELOOP, errno.ENOTDIR):
                return f"{'/'.join(parts[:i + 1])} is not a folder (a link or a file)"
            raise
        os.close(fd)
        fd = nxt
    return fd


def _refusal(st: os.stat_result, guest_mode: "int | None" = None) -> "str | None":
    m = st.st_mode
    if guest_mode is not None and stat.S_IFMT(guest_mode) and stat.S_ISREG(m):
        # 9p mapped-xattr keeps a guest's symlink, fifo or device node as a
        # plain host file whose xattr names the real type: judge by that.
        m = guest_mode
    if stat.S_ISLNK(m):
        return "a symbolic link (revive copies only files and folders)"
    if stat.S_ISFIFO(m):
        return "a fifo (revive copies only files and folders)"
    if stat.S_ISSOCK(m):
        return "a socket (revive copies only files and folders)"
    if stat.S_ISCHR(m) or stat.S_ISBLK(m):
        return "a device node (revive copies only files and folders)"
    if not (stat.S_ISREG(m) or stat.S_ISDIR(m)):
        return "not a regular file or folder"
    return None


def _xattr_mode(dir_fd: int, name: str, st: os.stat_result) -> "int | None":
    """The mode the guest gave the entry, if 9p mapped-xattr recorded one
    (the host file is then 0600 and the guest's mode is in an xattr)."""
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        return None
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        raw = os.getxattr(fd, XATTR_MODE)
        return int.from_bytes(raw[:4], "little")
    except OSError:
        return None
    finally:
        os.close(fd)


def _mode(guest_mode: "int | None", st: os.stat_result, is_dir: bool) -> int:
    mode = (st.st_mode if guest_mode is None else guest_mode) & FILE_MASK
    return mode | (OWNER_DIR if is_dir else OWNER_FILE)


def _judge(dir_fd: int, name: str, st: os.stat_result):
    """(why refused or None, the mode for the copy)."""
    guest_mode = _xattr_mode(dir_fd, name, st)
    why = _refusal(st, guest_mode)
    return why, _mode(guest_mode, st, stat.S_ISDIR(st.st_mode))


def _plan_tree(parent: int, name: str, rel: str, mode: int, entries, refused) -> None:
    entries.append(_Entry(rel, True, mode, 0))
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)
    try:
        for child in sorted(os.listdir(fd)):
            sub = f"{rel}/{child}"
            cst = os.stat(child, dir_fd=fd, follow_symlinks=False)
            why, cmode = _judge(fd, child, cst)
            if why:
                refused.append(f"{sub}: {why}")
            elif stat.S_ISDIR(cst.st_mode):
                _plan_tree(fd, child, sub, cmode, entries, refused)
            else:
                entries.append(_Entry(sub, False, cmode, cst.st_size))
    finally:
        os.close(fd)


def _check_space(plan: "list[_Entry]", dest: Path) -> None:
    need = sum(e.size for e in plan)
    vfs = os.statvfs(dest)
    free = vfs.f_bavail * vfs.f_frsize
    # Leave a little room for the log and result.json written after.
    if need + (1 << 20) > free:
        raise UserError(f"the outputs need {_mb(need)} but only {_mb(free)} is free on "
                        f"{describe_filesystem(dest)}; free space there and rerun")


def _mb(n: int) -> str:
    return f"{n / (1 << 20):.1f} MB"


def _copy(root: int, entry: _Entry, dest: Path) -> None:
    target = dest / entry.rel
    if entry.is_dir:
        target.mkdir(mode=OWNER_DIR, parents=True, exist_ok=True)
        return
    parts = _parts(entry.rel)
    parent = _open_parent(root, parts)
    if isinstance(parent, str):
        raise UserError(f"output {entry.rel} changed while it was collected ({parent})")
    try:
        src = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=parent)
    finally:
        os.close(parent)
    try:
        if not stat.S_ISREG(os.fstat(src).st_mode):
            raise UserError(f"output {entry.rel} changed while it was collected")
        target.parent.mkdir(parents=True, exist_ok=True)
        out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(out, "wb") as fh:
            while chunk := os.read(src, _CHUNK):
                fh.write(chunk)
            fh.flush()
            os.fchmod(out, entry.mode)
    finally:
        os.close(src)
