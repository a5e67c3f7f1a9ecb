"""Debian source packages for builds, fetched on the host with the ordinary
client: ``apt-get source --download-only`` under a private apt
configuration whose only entries are ``deb-src`` twins of the guest's
sources (the host's apt setup is read, never changed).

The files are kept in the cache, keyed by suite and sources, and copied
into the folder a build shares read-only with the guest::

    .venv/bin/python -m tasks.guests.debian.sources hello sources/hello

(``--config`` names the config.toml whose [guest] suite and mirror to use;
by default ./config.toml, or bookworm from the host's sources.)
"""

import argparse
import hashlib
import os
import shutil
import sys
from pathlib import Path

from tasks.core.errors import UserError, for_people
from tasks.core.files import atomic_path
from tasks.core.proc import run

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
    config = _private_apt(state, sources_text)
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


def _private_apt(state: Path, sources_text: str) -> Path:
    """An apt configuration of its own: its sources, lists and cache under
    ``state``; keys, proxies and the rest as the host has them."""
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
        # Only the deb-src indexes: no Packages or translations.
        'Acquire::Languages "none";',
    ]
    config.write_text("\n".join(lines) + "\n")
    return config


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Fetch a Debian source package "
                                     "for a build (apt-get source --download-only).")
    parser.add_argument("package")
    parser.add_argument("dest", type=Path, help="folder to put the files in")
    parser.add_argument("--config", type=Path, default=Path("config.toml"))
    args = parser.parse_args(argv)
    from tasks.common import Paths
    from tasks.config import load
    from . import DebianSettings, from_table
    try:
        if args.config.exists():
            cfg = load(args.config)
            settings = cfg.guest_settings if isinstance(cfg.guest_settings, DebianSettings) \
                else from_table({})
            cache = Paths(cfg).cache
            log = cfg.artifacts / "logs" / "sources.log"
        else:
            settings = from_table({})
            cache = Path(os.environ.get("REVIVE_CACHE", "artifacts/cache"))
            log = Path("artifacts/logs/sources.log")
        log.parent.mkdir(parents=True, exist_ok=True)
        for path in fetch(args.package, args.dest, suite=settings.suite,
                          sources=settings.sources(), cache=cache, log=log):
            print(path)
    except UserError as err:
        print(for_people(err), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
