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
Sparse files stay sparse: only the data extents (``SEEK_DATA`` /
``SEEK_HOLE``) are copied, so a guest's ``truncate -s 2G`` brings back a
2 GiB file that takes a few KiB. Before anything is copied, what the copies
will really take (the source's allocated blocks) is checked against the
build's cap (``max_output_size``) and against the destination's free space,
which must keep ``keep_free`` bytes to spare after the outputs.

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
    size: int                # bytes the copy takes on disk (holes not counted)


class Limits(NamedTuple):
    """What one build may bring back; ``setting`` names where they are set."""
    max_size: int = 4 << 30          # bytes the outputs may take on disk
    keep_free: int = 256 << 20       # bytes left free on the destination after them
    setting: str = "[builds.NAME]"


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


def collect_outputs(exchange: Path, outputs, dest: Path,
                    limits: Limits = Limits()) -> Collected:
    """Copy each declared output from ``exchange`` into ``dest`` (created).

    Raises ``UserError`` (one line) when the outputs take more than
    ``limits.max_size``, when they would leave less than ``limits.keep_free``
    on ``dest``'s filesystem, or when writing runs out of space.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    collected, missing, refused = [], [], []
    plan: "list[_Entry]" = []
    sizes: "dict[str, int]" = {}
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
                sizes[rel] = sum(e.size for e in found)
        _check_space(sizes, dest, limits)
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
            return [_Entry(rel, False, mode, _on_disk(st))]
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
                entries.append(_Entry(sub, False, cmode, _on_disk(cst)))
    finally:
        os.close(fd)


def _on_disk(st: os.stat_result) -> int:
    """What a sparse copy of the file takes: its allocated blocks (a file
    the guest wrote densely counts whole; holes count nothing)."""
    return min(st.st_blocks * 512, st.st_size + (64 << 10))


def _check_space(sizes: "dict[str, int]", dest: Path, limits: Limits) -> None:
    need = sum(sizes.values())
    if need > limits.max_size:
        largest = sorted(sizes.items(), key=lambda kv: -kv[1])[:3]
        named = ", ".join(f"{rel} {_mb(n)}" for rel, n in largest)
        raise UserError(f"the outputs take {_mb(need)} on disk ({named}), over "
                        f"{limits.setting} max_output_size = {_mb(limits.max_size)}; "
                        "raise it or make the outputs smaller")
    vfs = os.statvfs(dest)
    free = vfs.f_bavail * vfs.f_frsize
    if need + limits.keep_free > free:
        raise UserError(f"no space left for the outputs: they take {_mb(need)} and "
                        f"{_mb(limits.keep_free)} must stay free ({limits.setting} keep_free) "
                        f"on {describe_filesystem(dest)}; free space there (or lower "
                        "keep_free) and rerun")


def _mb(n: int) -> str:
    if n and n < (100 << 10):
        return f"{n / 1024:.1f} KB"
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
        try:
            _copy_sparse(src, out)
            os.fchmod(out, entry.mode)
        finally:
            os.close(out)
    finally:
        os.close(src)


def _copy_sparse(src: int, out: int) -> None:
    """Copy the data extents of ``src`` to the same offsets in ``out``; the
    holes between stay holes (the final size is set by truncating)."""
    size = os.fstat(src).st_size
    pos = 0
    while pos < size:
        try:
            start = os.lseek(src, pos, os.SEEK_DATA)
        except OSError as err:
            if err.errno == errno.ENXIO:    # only a hole from here to the end
                break
            raise
        end = os.lseek(src, start, os.SEEK_HOLE)
        while start < end:
            chunk = os.pread(src, min(_CHUNK, end - start), start)
            if not chunk:
                break
            done = 0
            while done < len(chunk):
                done += os.pwrite(out, chunk[done:], start + done)
            start += len(chunk)
        pos = end
    os.ftruncate(out, size)
