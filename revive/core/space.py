"""Which filesystem a path lives on, for "no space left" messages."""

import errno
import os
from pathlib import Path

from .errors import UserError


def mount_point(path: Path) -> Path:
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    dev = os.stat(path).st_dev
    while path != path.parent and os.stat(path.parent).st_dev == dev:
        path = path.parent
    return path


def describe_filesystem(path: Path) -> str:
    """'the filesystem at /mnt/x (0.0 MB free of 8.0 MB)' for ``path``."""
    try:
        where = mount_point(path)
        vfs = os.statvfs(where)
    except OSError:
        return f"the filesystem of {path}"
    free = vfs.f_bavail * vfs.f_frsize / (1 << 20)
    total = vfs.f_blocks * vfs.f_frsize / (1 << 20)
    return f"the filesystem at {where} ({free:.1f} MB free of {total:.1f} MB)"


def is_nospace(err: BaseException) -> bool:
    return isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)


def nospace_message(err: OSError, fallback: Path) -> str:
    """One line for an ENOSPC from writing ``err.filename`` (or somewhere
    under ``fallback``)."""
    where = Path(err.filename) if err.filename else Path(fallback)
    return (f"no space left on {describe_filesystem(where)} while writing {where}; "
            "free space there and rerun")


class writing:
    """``with writing(target):`` turns a full disk while writing ``target``
    into one line naming its filesystem (a write() error carries no file
    name of its own)."""

    def __init__(self, target: Path):
        self.target = Path(target)

    def __enter__(self):
        return self.target

    def __exit__(self, kind, err, tb):
        if err is not None and is_nospace(err):
            raise UserError(f"no space left on {describe_filesystem(self.target.parent)} "
                            f"while writing {self.target}; free space there and rerun") from None
        return False
