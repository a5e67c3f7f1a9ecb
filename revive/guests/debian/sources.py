"""Debian source packages for builds, fetched on the host with the ordinary
client: ``apt-get source --download-only`` under a private apt
configuration whose only entries are ``deb-src`` twins of the guest's
sources (the host's apt setup is read, never changed).

The files are kept in the cache, keyed by suite and sources, and copied
into the folder a build shares read-only with the guest: the ``sources:NAME``
task (tasks/sources.py) of a ``[sources.NAME] debian = "PKG"`` table.
"""

import hashlib
import os
import shutil
from pathlib import Path

from revive.core.errors import UserError
from revive.core.files import atomic_path
from revive.core.proc import run
from revive.guests.debs import private_apt

from . import apt


def fetch(package: str, dest: Path, *, suite: str, sources: "list[apt.Source]",
          cache: Path, log: Path) -> "list[Path]":
    """Put the files of source package ``package`` (.dsc, .orig tarball,
    Debian changes) into the folder ``dest``; return their paths."""
    text = apt.deb822(sources, types="deb-src")
    key = hashlib.sha256(text.encode()).hexdigest()[:12]
    state = Path(cache) / "debian-sources" / f"{suite}-{key}"
    files = state / "files" / package
    if not files.is_dir():
        _download(package, files, state, text, log)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    copied = []
    for path in sorted(files.iterdir()):
        shutil.copy2(path, dest / path.name)
        copied.append(dest / path.name)
    return copied


def _download(package: str, files: Path, state: Path, sources_text: str, log: Path) -> None:
    config = private_apt(state, sources_text)
    env_argv = ["env", f"APT_CONFIG={config}"]
    lists = state / "lists"
    if not any(lists.glob("*Sources*")):
        run([*env_argv, "apt-get", "update", "-q"], log=log, timeout=900,
            what="apt-get update (deb-src lists for the Debian guest)")
    with atomic_path(files) as tmp:
        tmp.mkdir(parents=True)
        try:
            run([*env_argv, "apt-get", "source", "-q", "--download-only", package],
                cwd=tmp, log=log, timeout=900, what=f"apt-get source {package}")
        except UserError:
            # The lists may predate the package: fetch them again once.
            run([*env_argv, "apt-get", "update", "-q"], log=log, timeout=900,
                what="apt-get update (deb-src lists for the Debian guest)")
            run([*env_argv, "apt-get", "source", "-q", "--download-only", package],
                cwd=tmp, log=log, timeout=900, what=f"apt-get source {package}")
        if not list(tmp.glob("*.dsc")):
            raise UserError(f"apt-get source {package} fetched no .dsc", log=str(log))
