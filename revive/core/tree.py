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
import json
import os
import stat
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
    pending = [(folder, "")]
    while pending:
        path, rel = pending.pop()
        with os.scandir(path) as entries:
            for entry in entries:
                name = f"{rel}{entry.name}"
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    pending.append((Path(entry.path), name + "/"))
                    continue
                stamp = _stamp(st)
                old = before.get(name)
                if stat.S_ISLNK(st.st_mode):
                    kind = "link"
                    digest = hashlib.sha256(os.fsencode(os.readlink(entry.path))).hexdigest()
                elif not stat.S_ISREG(st.st_mode):
                    continue            # sockets, fifos: nothing a build reads
                elif old and old[0] == "file" and old[3:] == stamp:
                    kind, digest = "file", old[2]
                else:
                    kind, digest = "file", sha256_file(Path(entry.path))
                found[name] = [kind, stat.S_IMODE(st.st_mode), digest, *stamp]
    return found


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


def read_record(record: Path) -> "dict[str, list]":
    try:
        data = json.loads(Path(record).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_record(record: Path, files: "dict[str, list]") -> None:
    Path(record).parent.mkdir(parents=True, exist_ok=True)
    write_atomic(Path(record), json.dumps(files, separators=(",", ":")))
