"""Pinned Debian packages: fetch them once into a cache, unpack them without root.

A guest payload is assembled on the host from ``.deb`` files. Each one is
pinned by name, version and sha256, so a payload built today and one built
next month are made of the same bytes, or the build stops and says which pin
to update. ``apt-get download`` is the ordinary client: it knows the mirrors
and proxies the host is configured with. Packages of another architecture
than the host's come through a private apt configuration in the cache
(``private_apt``: that architecture, its suite, its own lists), so the
host's apt state is never touched.

``extract`` reads the ``ar`` container and the ``data.tar.*`` member in pure
Python; it never changes owners (no root needed) and keeps symlinks and modes.
"""

import contextlib
import fcntl
import functools
import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
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


@functools.lru_cache(maxsize=None)
def host_arch() -> str:
    """The host's Debian architecture (dpkg's own word for it)."""
    try:
        return subprocess.run(["dpkg", "--print-architecture"], capture_output=True,
                              text=True, check=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "amd64"


def fetch(pins: Collection[Pin], cache_dir: Path, log: Path,
          pinned_in: str = "the pin list", suite: "str | None" = None) -> "dict[str, Path]":
    """Return {package: path of its verified .deb in ``cache_dir``}.

    A cached file is reused when its sha256 matches the pin; otherwise the
    package is downloaded into a temporary folder inside the cache, checked,
    and only then renamed into place, so the cache never holds a file whose
    hash was not verified. ``pinned_in`` names the file holding the pins, for
    error messages. A pin of another architecture than the host's is fetched
    from ``suite`` (the host's Debian archive, that release) through a
    private apt configuration.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for pin in pins:
        target = cache_dir / pin.filename
        if not (target.is_file() and sha256_file(target) == pin.sha256):
            if pin.arch in ("all", host_arch()):
                _download(pin, target, log, pinned_in)
            else:
                # One apt at a time on the private lists (parallel stages,
                # test workers); the file may have come meanwhile.
                with _locked(cache_dir / ".apt-foreign.flock", log):
                    if not (target.is_file() and sha256_file(target) == pin.sha256):
                        _download(pin, target, log, pinned_in,
                                  ForeignApt(cache_dir, pin.arch, suite, log))
        paths[pin.package] = target
    return paths


LOCK_WAIT = 1800.0     # another process's apt-get update and downloads, at most


@contextlib.contextmanager
def _locked(path: Path, log: Path):
    with open(path, "w") as guard:
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            try:
                fcntl.flock(guard, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise UserError(f"another revive held {path} for {LOCK_WAIT:.0f} s while "
                                    "fetching packages; if none runs, remove the file",
                                    log=str(log)) from None
                time.sleep(0.2)
        yield


class ForeignApt:
    """apt for another architecture: its own sources (the host's Debian
    archive at ``suite``), lists and cache under ``cache_dir``; the host's
    keys, proxies and the rest of its configuration as they are."""

    def __init__(self, cache_dir: Path, arch: str, suite: "str | None", log: Path):
        if suite is None:
            raise ValueError(f"a {arch} package needs the suite to fetch it from")
        from revive.guests.debian import apt as sources
        text = sources.deb822(sources.release_sources(suite))
        key = hashlib.sha256(text.encode()).hexdigest()[:12]
        self.state = Path(cache_dir) / f"apt-{arch}-{suite}-{key}"
        self.config = private_apt(self.state, text, arch=arch)
        self.what = f"apt-get update ({arch} lists of {suite})"
        self.log = log
        if not any((self.state / "lists").glob("*_Packages*")):
            self.update()

    @property
    def env(self) -> "list[str]":
        return ["env", f"APT_CONFIG={self.config}"]

    def update(self) -> None:
        run([*self.env, "apt-get", "update", "-q"], log=self.log, timeout=900,
            what=self.what)


def private_apt(state: Path, sources_text: str, arch: "str | None" = None) -> Path:
    """An apt configuration of its own: its sources, lists and cache under
    ``state``; keys, proxies and the rest as the host has them. With
    ``arch``, apt works for that architecture alone and reads an empty
    package status instead of the host's."""
    for sub in ("lists/partial", "archives/partial", "sources.list.d"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    (state / "sources.list.d" / "revive.sources").write_text(sources_text)
    config = state / "apt.conf"
    host = os.environ.get("APT_CONFIG")
    lines = [f'#include "{host}";'] if host else []
    lines += [
        'Dir::Etc::sourcelist "/dev/null";',
        f'Dir::Etc::sourceparts "{state / "sources.list.d"}";',
        f'Dir::State::lists "{state / "lists"}";',
        f'Dir::Cache "{state}";',
        f'Dir::Cache::archives "{state / "archives"}";',
        'Dir::Cache::pkgcache "";',
        'Dir::Cache::srcpkgcache "";',
        'Acquire::Languages "none";',
    ]
    if arch is not None:
        (state / "status").touch()
        lines += [f'APT::Architecture "{arch}";', f'APT::Architectures {{ "{arch}"; }};',
                  f'Dir::State::status "{state / "status"}";']
    config.write_text("\n".join(lines) + "\n")
    return config


def _download(pin: Pin, target: Path, log: Path, pinned_in: str,
              apt: "ForeignApt | None" = None) -> None:
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=target.parent))
    argv = [*(apt.env if apt else []), "apt-get", "download", pin.spec]
    try:
        try:
            try:
                run(argv, cwd=staging, log=log, what=f"apt-get download {pin.spec}")
            except UserError:
                if apt is None:
                    raise
                apt.update()    # the private lists may predate the pin
                run(argv, cwd=staging, log=log, what=f"apt-get download {pin.spec}")
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
