"""Pinned Debian packages: fetch them once into a cache, unpack them without root.

A guest payload is assembled on the host from ``.deb`` files. Each one is
pinned by name, version and sha256, so a payload built today and one built
next month are made of the same bytes, or the build stops and says which pin
to update. ``apt-get download`` is the ordinary client: it knows the mirrors
and proxies the host is configured with.

``extract`` reads the ``ar`` container and the ``data.tar.*`` member in pure
Python; it never changes owners (no root needed) and keeps symlinks and modes.
"""

import io
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Collection, Optional

from revive.core.errors import UserError
from revive.core.files import remove, sha256_file
from revive.core.proc import run


@dataclass(frozen=True)
class Pin:
    package: str
    version: str
    sha256: str
    arch: str = "amd64"

    @property
    def spec(self) -> str:
        """``name=version`` (with ``:arch`` for arch-specific packages), as
        apt-get accepts it."""
        name = self.package if self.arch == "all" else f"{self.package}:{self.arch}"
        return f"{name}={self.version}"

    @property
    def filename(self) -> str:
        # apt's own naming: the epoch's colon is escaped as %3a.
        return f"{self.package}_{self.version.replace(':', '%3a')}_{self.arch}.deb"


def fetch(pins: Collection[Pin], cache_dir: Path, log: Path,
          pinned_in: str = "the pin list") -> "dict[str, Path]":
    """Return {package: path of its verified .deb in ``cache_dir``}.

    A cached file is reused when its sha256 matches the pin; otherwise the
    package is downloaded into a temporary folder inside the cache, checked,
    and only then renamed into place, so the cache never holds a file whose
    hash was not verified. ``pinned_in`` names the file holding the pins, for
    error messages.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for pin in pins:
        target = cache_dir / pin.filename
        if not (target.is_file() and sha256_file(target) == pin.sha256):
            _download(pin, target, log, pinned_in)
        paths[pin.package] = target
    return paths


def _download(pin: Pin, target: Path, log: Path, pinned_in: str) -> None:
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=target.parent))
    try:
        try:
            run(["apt-get", "download", pin.spec], cwd=staging, log=log,
                what=f"apt-get download {pin.spec}")
        except UserError:
            raise UserError(
                f"cannot download {pin.spec}: run `apt-get update`; if it is "
                f"still missing, the archive no longer carries it: update the "
                f"pin in {pinned_in}", log=str(log)) from None
        downloaded = sorted(staging.glob("*.deb"))
        if len(downloaded) != 1:
            raise UserError(f"apt-get download {pin.spec} left "
                            f"{len(downloaded)} .deb files instead of one",
                            log=str(log))
        actual = sha256_file(downloaded[0])
        if actual != pin.sha256:
            raise UserError(
                f"{pin.spec} from the archive has sha256 {actual}, the pin "
                f"says {pin.sha256}: check the mirror, then update the pin in "
                f"{pinned_in}", log=str(log))
        os.replace(downloaded[0], target)
    finally:
        remove(staging)


# --- ar + tar -------------------------------------------------------------

_AR_MAGIC = b"!<arch>\n"
_AR_HEADER = 60


def ar_members(data: bytes) -> "dict[str, bytes]":
    """The members of an ``ar`` archive (the .deb container), by name."""
    if not data.startswith(_AR_MAGIC):
        raise ValueError("not an ar archive")
    members = {}
    pos = len(_AR_MAGIC)
    while pos + _AR_HEADER <= len(data):
        header = data[pos:pos + _AR_HEADER]
        if header[58:60] != b"`\n":
            raise ValueError(f"corrupt ar header at offset {pos}")
        name = header[0:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        start = pos + _AR_HEADER
        members[name] = data[start:start + size]
        pos = start + size + (size & 1)  # members are 2-byte aligned
    return members


def data_tar(deb: Path) -> tarfile.TarFile:
    """Open the ``data.tar.*`` member of ``deb`` as a stream of members.

    A stream (mode ``r|``), because a kernel package unpacks to ~400 MB: the
    members are read once, in order, never all held in memory.
    """
    members = ar_members(Path(deb).read_bytes())
    for name, payload in members.items():
        if name.startswith("data.tar"):
            return _open_tar_stream(name, payload)
    raise ValueError(f"{deb}: no data.tar member")


_STREAM_MODES = {"data.tar": "r|", "data.tar.xz": "r|xz", "data.tar.gz": "r|gz",
                 "data.tar.bz2": "r|bz2"}


def _open_tar_stream(name: str, payload: bytes) -> tarfile.TarFile:
    if name == "data.tar.zst":
        # No zstd in the standard library before 3.14: use the zstd tool.
        with tempfile.TemporaryDirectory() as tmp:
            src, dst = Path(tmp, "data.tar.zst"), Path(tmp, "data.tar")
            src.write_bytes(payload)
            run(["zstd", "-q", "-d", src, "-o", dst])
            name, payload = "data.tar", dst.read_bytes()
    if name not in _STREAM_MODES:
        raise ValueError(f"unsupported compression: {name}")
    return tarfile.open(fileobj=io.BytesIO(payload), mode=_STREAM_MODES[name])


def member_path(name: str) -> str:
    """A tar member name as a plain relative path: ``./usr/bin`` → ``usr/bin``."""
    parts = [p for p in PurePosixPath(name).parts if p not in ("/", ".")]
    if ".." in parts:
        raise ValueError(f"unsafe path in package: {name}")
    return "/".join(parts)


def _wanted(path: str, members: Optional[Collection[str]]) -> bool:
    if members is None:
        return True
    return any(path == m or path.startswith(m + "/") for m in members)


def extract(deb: Path, dest: Path, members: Optional[Collection[str]] = None) -> "list[str]":
    """Unpack ``deb``'s files into ``dest`` and return the paths written.

    ``members`` limits the extraction to these relative paths (``usr/bin/x``)
    and everything below them. Owners are left alone (so no root is
    needed); modes, symlinks and hard links are kept; device nodes, which
    packages do not ship, are skipped.
    """
    dest = Path(dest)
    members = None if members is None else [member_path(m) for m in members]
    written = []
    with data_tar(deb) as tar:
        for info in tar:
            path = member_path(info.name)
            if not path or not _wanted(path, members):
                continue
            _extract_member(tar, info, dest, path)
            written.append(path)
    return written


def _extract_member(tar: tarfile.TarFile, info: tarfile.TarInfo, dest: Path,
                    path: str) -> None:
    target = dest / path
    target.parent.mkdir(parents=True, exist_ok=True)
    if info.isdir():
        target.mkdir(exist_ok=True)
        os.chmod(target, info.mode | 0o700)  # stay writable for our own use
        return
    remove(target)
    if info.issym():
        os.symlink(info.linkname, target)
    elif info.islnk():
        os.link(dest / member_path(info.linkname), target)
    elif info.isreg():
        with tar.extractfile(info) as src, open(target, "wb") as out:
            shutil.copyfileobj(src, out)
        os.chmod(target, info.mode)
