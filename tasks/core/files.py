"""Targets are written to a temporary name and renamed when complete."""

import contextlib
import hashlib
import os
import shutil
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
