"""Tarballs named by URL and sha256: downloaded once into the cache (keyed
by the hash), checked, and unpacked without trusting their contents.

The archive comes from outside: ``tarfile``'s ``data`` filter refuses
absolute names, ``..``, links that leave the folder, devices and FIFOs,
and drops set-uid bits; anything it refuses is one line naming the member.
"""

import hashlib
import shutil
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

from ..core.errors import UserError
from ..core.files import atomic_path, sha256_file

CHUNK = 1 << 20


def fetch(url: str, sha256: str, cache: Path, *, key: str, timeout: float = 300) -> Path:
    """The tarball behind ``url`` as a cached file whose sha256 is ``sha256``.

    ``key`` names the config key in errors (``[sources.NAME]``).
    """
    cached = Path(cache) / "sources" / f"{sha256}.tar"
    if cached.is_file() and sha256_file(cached) == sha256:
        return cached
    with atomic_path(cached) as tmp:
        digest = hashlib.sha256()
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, \
                    open(tmp, "wb") as out:
                while chunk := response.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
        except (urllib.error.URLError, OSError, ValueError) as err:
            reason = getattr(err, "reason", None) or err
            raise UserError(f"{key} url: cannot download {url}: {reason}") from None
        got = digest.hexdigest()
        if got != sha256:
            raise UserError(f"{key} sha256: {url} has sha256 {got}, not the {sha256} "
                            "configured; check the URL, or set sha256 to the new "
                            "value if you trust it")
    return cached


def unpack(archive: Path, dest: Path, *, key: str) -> "list[str]":
    """Unpack ``archive`` (any compression tarfile reads) into the new folder
    ``dest``; return the files' relative paths."""
    dest = Path(dest)
    dest.mkdir(parents=True)
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar.getmembers():
                # Checked one by one so the error names the member. The
                # filter would quietly strip a leading "/"; such an archive
                # is refused instead.
                if member.name.startswith("/"):
                    raise UserError(f"{key}: the tarball is refused: {member.name!r} "
                                    "is an absolute path")
                try:
                    tarfile.data_filter(member, str(dest))
                except tarfile.FilterError as err:
                    raise UserError(f"{key}: the tarball is refused: {err}") from None
            tar.extractall(dest, filter="data")
    except UserError:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    except (tarfile.TarError, EOFError, OSError) as err:
        shutil.rmtree(dest, ignore_errors=True)
        raise UserError(f"{key}: {archive} is not a readable tarball: {err}") from None
    return sorted(str(p.relative_to(dest)) for p in dest.rglob("*")
                  if p.is_file() and not p.is_symlink())
