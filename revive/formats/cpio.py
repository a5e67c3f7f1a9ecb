"""A "newc" cpio writer: the format of Linux initramfs images.

Everything in the archive is owned by root:root and stamped with one fixed
mtime, and entries are written sorted by path, so the same inputs always give
the same bytes (a rebuilt payload does not look changed). Written by hand so
that no root is needed for device nodes and owners: the kernel (or the
guest's ``cpio -i``) creates them when it unpacks.
"""

import gzip
import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

FIXED_MTIME = 0
_MAGIC = b"070701"
_TRAILER = "TRAILER!!!"


@dataclass(frozen=True)
class _Entry:
    mode: int            # file type bits | permission bits
    data: bytes = b""    # file contents, or a symlink's target
    rdev: "tuple[int, int]" = (0, 0)


class Archive:
    """Collects entries by path (``dev/console``, no leading slash); a path
    added twice keeps the last entry. Missing parent folders are added with
    mode 0755."""

    def __init__(self):
        self._entries: "dict[str, _Entry]" = {}

    def dir(self, path: str, mode: int = 0o755) -> None:
        self._put(path, _Entry(stat.S_IFDIR | mode))

    def file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self._put(path, _Entry(stat.S_IFREG | mode, bytes(data)))

    def symlink(self, path: str, target: str) -> None:
        self._put(path, _Entry(stat.S_IFLNK | 0o777, target.encode()))

    def char_device(self, path: str, major: int, minor: int, mode: int = 0o600) -> None:
        self._put(path, _Entry(stat.S_IFCHR | mode, rdev=(major, minor)))

    def add_tree(self, root: Path, prefix: str = "") -> None:
        """Add the folders, regular files and symlinks under host folder
        ``root`` at ``prefix`` in the archive, keeping permission bits."""
        root = Path(root)
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                host = Path(dirpath, name)
                path = _join(prefix, host.relative_to(root).as_posix())
                info = host.lstat()
                perms = stat.S_IMODE(info.st_mode)
                if stat.S_ISLNK(info.st_mode):
                    self.symlink(path, os.readlink(host))
                elif stat.S_ISDIR(info.st_mode):
                    self.dir(path, perms)
                elif stat.S_ISREG(info.st_mode):
                    self.file(path, host.read_bytes(), perms)
                else:
                    raise ValueError(f"{host}: only folders, files and "
                                     "symlinks can be copied into a cpio archive")

    def paths(self) -> "list[str]":
        return sorted(self._entries)

    def to_bytes(self) -> bytes:
        out = bytearray()
        for ino, path in enumerate(self.paths(), start=1):
            out += _record(path, self._entries[path], ino)
        out += _record(_TRAILER, _Entry(0), 0, nlink=1)
        return bytes(out)

    def write(self, target: Path, compress: bool = False) -> None:
        data = self.to_bytes()
        if compress:
            # mtime=0 keeps the gzip header free of the build time.
            data = gzip.compress(data, compresslevel=9, mtime=0)
        Path(target).write_bytes(data)

    def _put(self, path: str, entry: _Entry) -> None:
        path = _normalise(path)
        parent = str(PurePosixPath(path).parent)
        if parent != "." and parent not in self._entries:
            self.dir(parent)
        self._entries[path] = entry


def _normalise(path: str) -> str:
    parts = [p for p in PurePosixPath(path).parts if p not in ("/", ".")]
    if not parts or ".." in parts:
        raise ValueError(f"bad archive path: {path!r}")
    return "/".join(parts)


def _join(prefix: str, rel: str) -> str:
    return f"{prefix.strip('/')}/{rel}" if prefix.strip("/") else rel


def _record(path: str, entry: _Entry, ino: int, nlink: "int | None" = None) -> bytes:
    name = path.encode() + b"\0"
    if nlink is None:
        nlink = 2 if stat.S_ISDIR(entry.mode) else 1
    fields = [ino, entry.mode, 0, 0, nlink, FIXED_MTIME, len(entry.data),
              0, 0, entry.rdev[0], entry.rdev[1], len(name), 0]
    header = _MAGIC + b"".join(b"%08X" % f for f in fields)
    return _pad4(header + name) + _pad4(entry.data)


def _pad4(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)
