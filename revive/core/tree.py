"""What a shared folder holds, as one digest, hashing again only the files
whose stamp changed.

A build reads every file of its shared folders. Giving doit each file as a
``file_dep`` made a no-op `doit build` with a 50,000-file share 2.4× slower
than the demo's, and doit's database 6.3 MB. Instead the build's up-to-date
check keeps one digest per folder in doit's database and a record of every
file (stamp and sha256) in a file of its own; only files whose stamp differs
from the record are read.
"""

import hashlib
import marshal
import os
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .files import sha256_file, write_atomic


def _stamp(st: os.stat_result) -> "list[int]":
    # ctime too: no user can set it back after a write.
    return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]


def scan(folder: Path, before: "dict[str, list]") -> "dict[str, list]":
    """Every file and link below ``folder``: relative path → [kind, mode,
    sha256 (of the content, or of a link's target), *stamp]. A file's sha256
    is taken from ``before`` when its stamp is the same."""
    folder = Path(folder)
    found: "dict[str, list]" = {}
    if not folder.is_dir():
        return found
    pending = [(str(folder), "")]
    get = before.get
    while pending:
        path, rel = pending.pop()
        with os.scandir(path) as entries:
            for entry in entries:
                name = rel + entry.name
                # d_type: no system call for a folder; one lstat for a file.
                if entry.is_dir(follow_symlinks=False):
                    pending.append((entry.path, name + "/"))
                    continue
                st = entry.stat(follow_symlinks=False)
                old = get(name)
                mode = st.st_mode
                if (old is not None and old[0] == "file" and old[3] == st.st_size
                        and old[4] == st.st_mtime_ns and old[5] == st.st_ino
                        and old[6] == st.st_ctime_ns and old[1] == stat.S_IMODE(mode)
                        and stat.S_ISREG(mode)):
                    found[name] = old      # the common case: nothing to do
                    continue
                if stat.S_ISLNK(mode):
                    kind = "link"
                    digest = hashlib.sha256(os.fsencode(os.readlink(entry.path))).hexdigest()
                elif not stat.S_ISREG(mode):
                    continue            # sockets, fifos: nothing a build reads
                else:
                    kind, digest = "file", sha256_file(Path(entry.path))
                found[name] = [kind, stat.S_IMODE(mode), digest, *_stamp(st)]
    return found


_FIND_FORMAT = "%P\\0%y%m %s %T@ %i %C@ %l\\0"


def _find(folder: Path, stdout) -> subprocess.Popen:
    return subprocess.Popen(["find", str(folder), "-printf", _FIND_FORMAT],
                            stdout=stdout, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)


def stamps(folder: Path) -> "bytes | None":
    """``folder`` and every entry below it as GNU find prints them: the
    path relative to ``folder``, then its type, mode, size, mtime, inode,
    ctime and link target, each of the two NUL-terminated; None without
    GNU find."""
    try:
        proc = _find(folder, subprocess.PIPE)
    except OSError:
        return None
    with proc:
        out = _finish(proc, folder, proc.communicate)
    return out if out is not None and proc.returncode == 0 else None


LIST_TIMEOUT = 600.0    # seconds for GNU find to list a shared folder
LIST_NOTICE = 10.0      # seconds between the lines saying the listing goes on


def _finish(proc: subprocess.Popen, folder: Path, wait) -> "bytes | None":
    """``wait(timeout=…)``'s answer (``proc.wait`` or ``proc.communicate``)
    once find ends; a line on stderr every LIST_NOTICE seconds says what
    doit waits for; None (and find killed) past LIST_TIMEOUT: the folder
    is then read without a listing."""
    deadline = time.monotonic() + LIST_TIMEOUT
    while True:
        try:
            answer = wait(timeout=min(LIST_NOTICE, max(0.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            if time.monotonic() < deadline:
                print(f"revive: waiting for GNU find to list {folder} (pid {proc.pid}, "
                      f"{LIST_TIMEOUT - (deadline - time.monotonic()):.0f} s of at most "
                      f"{LIST_TIMEOUT:.0f} s)", file=sys.stderr, flush=True)
                continue
            print(f"revive: GNU find did not list {folder} within {LIST_TIMEOUT:.0f} s: "
                  "its files are read without a listing", file=sys.stderr, flush=True)
            proc.kill()
            proc.wait()
            return None
        return answer[0] if isinstance(answer, tuple) else b""


# Listings started ahead (``list_early``): folder → (the process that
# started it, GNU find, the unnamed file it writes, when it began).
_early: "dict[Path, tuple[int, subprocess.Popen, object, int]]" = {}


def _timed(folder: Path) -> "tuple[bytes | None, int]":
    start = time.time_ns()
    return stamps(folder), start


def list_early(folder: Path) -> None:
    """Start GNU find on ``folder`` now, for the next ``listed`` of the
    same folder: it runs beside the rest of doit's start (its database,
    the other stages' checks) instead of after it.

    find writes into an unnamed file, and no thread waits on it: a thread
    reading find's pipe lost the race with `doit -n 2`, whose worker
    processes are forked from this one. A worker forked while the thread
    was starting find inherited the pipe's write end, so find's output
    never ended while that worker lived, and the first build waited for
    the listing's 600 s deadline (CI, stop 24: the run took 1635 s)."""
    folder = Path(folder)
    if folder in _early:
        return
    start = time.time_ns()
    out = tempfile.TemporaryFile()
    try:
        proc = _find(folder, out)
    except OSError:
        out.close()
        return
    _early[folder] = (os.getpid(), proc, out, start)


def listed(folder: Path) -> "tuple[bytes | None, int]":
    """``stamps(folder)`` and when (``time.time_ns``) the listing began:
    the one ``list_early`` started in this process (each is used once: a
    later call, or a forked worker, lists the folder again), else taken
    now."""
    started = _early.pop(Path(folder), None)
    if started is not None:
        owner, proc, out, start = started
        with out:
            if owner == os.getpid():        # a forked worker cannot wait on find
                if _finish(proc, folder, proc.wait) is None:
                    return None, start          # past its deadline: no listing
                if proc.returncode == 0:
                    out.seek(0)
                    return out.read(), start
    return _timed(folder)


def settled(files: "dict[str, list]", found: "bytes | None", since: int) -> bool:
    """Whether the files ``scan`` read are the ones the listing ``found``
    (begun at ``since``) lists: none changed from a second before the
    listing began (any change sets ctime; the kernel's file clock lags by
    a tick) and as many files and links listed as scanned (a removal)."""
    if found is None:
        return False
    limit = since - 1_000_000_000
    if any(entry[6] >= limit for entry in files.values()):
        return False
    kinds = found.split(b"\0")[1::2]
    return sum(1 for kind in kinds if kind[:1] in (b"f", b"l")) == len(files)


def listing_of(found: "bytes | None") -> "str | None":
    """A sha256 of ``stamps`` (0.15 s of CPU for 50,000 files where the
    same stamps through Python's scandir take 0.4 s); None without GNU
    find. Equal listings mean no file's stamp changed, so the recorded
    digest stands. Take the stamps *before* ``scan``: a change between the
    two then makes the next listing differ."""
    return None if found is None else hashlib.sha256(found).hexdigest()


def listing(folder: Path) -> "str | None":
    """``listing_of`` the folder's stamps taken now."""
    return listing_of(stamps(folder))


def unchanged(before: "dict[str, list]", now: "dict[str, list]") -> bool:
    """Whether ``scan`` found every file as recorded (it then reuses the
    record's entries), so that the recorded digest still holds."""
    return len(before) == len(now) and all(now.get(k) is v for k, v in before.items())


def digest(files: "dict[str, list]") -> str:
    """One sha256 of the folder's content: names, kinds, modes and content
    hashes (not the stamps)."""
    h = hashlib.sha256()
    for name in sorted(files):
        kind, mode, sha = files[name][:3]
        h.update(f"{name}\0{kind}\0{mode:o}\0{sha}\n".encode())
    return h.hexdigest()


def differences(before: "dict[str, list]", now: "dict[str, list]") -> "list[str]":
    """The files that changed, were added or removed (by content and mode)."""
    changes = []
    for name in sorted(set(before) | set(now)):
        if name not in before:
            changes.append(f"{name} added")
        elif name not in now:
            changes.append(f"{name} removed")
        elif before[name][:3] != now[name][:3]:
            changes.append(f"{name} changed")
    return changes


def read_summary(record: Path) -> dict:
    """The small file beside a record: its digest and listing."""
    try:
        data = marshal.loads(summary_path(record).read_bytes())
    except (OSError, ValueError, EOFError, TypeError):
        return {}
    return data if isinstance(data, dict) else {}


def write_summary(record: Path, summary: dict) -> None:
    write_atomic(summary_path(record), marshal.dumps(summary))


def summary_path(record: Path) -> Path:
    return Path(record).with_name(Path(record).name + ".sum")


def read_record(record: Path) -> "dict[str, list]":
    """The record written by ``write_record``; {} when it is missing or
    unreadable (another Python's marshal format included): every file is
    then hashed again, nothing worse."""
    try:
        data = marshal.loads(Path(record).read_bytes())
    except (OSError, ValueError, EOFError, TypeError):
        return {}
    return data if isinstance(data, dict) else {}


def write_record(record: Path, files: "dict[str, list]") -> None:
    # marshal, not JSON: 50,000 entries load in a quarter of the time, and
    # unlike pickle it runs no code.
    Path(record).parent.mkdir(parents=True, exist_ok=True)
    write_atomic(Path(record), marshal.dumps(files))
