"""The Debian guest's root filesystem, made on the host from Debian packages
by mmdebstrap, without a VM, and cached by its recipe.

The recipe is the suite, the sources (deb822 text), the package list and
mmdebstrap's options; a root made from the same recipe is reused, so the
guest stays pinned to the mirror state it was first made from. Each root
records that state inside itself, in ``usr/share/revive/``: the ``Date`` of
every Release file apt read, and ``dpkg-query -W`` of the finished root.

mmdebstrap picks its mode itself: ``root`` when run as root, else
``unshare`` (unprivileged user namespaces and /etc/subuid ranges, as on a
default Debian) or ``fakechroot``.
"""

import hashlib
import json
import shutil
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from revive.core.errors import UserError
from revive.core.files import atomic_path, sha256_file
from revive.core.proc import run

from . import apt

VARIANT = "minbase"
RECORDS = "usr/share/revive"
ROOT_TAR = "root.tar.gz"
INFO = "info.json"

# Documentation, manual pages and translations are of no use to a build
# machine and are a fifth of the root (copyright files stay).
DPKG_OPTIONS = [
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
]

# Shell run by mmdebstrap with the root's path as $1, before its own
# cleanup removes apt's lists. No user data is ever part of these strings.
HOOKS = [
    # Every install makes its own SSH host key; none may come from the cache.
    'rm -f "$1"/etc/ssh/ssh_host_*',
    f'mkdir -p "$1/{RECORDS}"',
    # The mirror state: which Release files apt read, and their dates.
    "grep -H -E '^(Origin|Suite|Codename|Date):' \"$1\"/var/lib/apt/lists/*Release"
    f' | sed "s|^$1/var/lib/apt/lists/||" > "$1/{RECORDS}/releases"',
    f'chroot "$1" dpkg-query -W > "$1/{RECORDS}/packages"',
]


@dataclass(frozen=True)
class Root:
    tarball: Path
    info: dict


def recipe(suite: str, sources: "list[apt.Source]", packages: "list[str]") -> dict:
    return {"suite": suite, "sources": apt.deb822(sources), "packages": sorted(set(packages)),
            "variant": VARIANT, "dpkg_options": DPKG_OPTIONS, "hooks": HOOKS}


def cache_key(recipe_: dict) -> str:
    text = json.dumps(recipe_, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def folder_for(suite: str, sources: "list[apt.Source]", packages: "list[str]",
               cache: Path) -> Path:
    """Where the root of this recipe is (or will be) cached."""
    return Path(cache) / "debian-root" / f"{suite}-{cache_key(recipe(suite, sources, packages))}"


def build(suite: str, sources: "list[apt.Source]", packages: "list[str]",
          cache: Path, log: Path) -> Root:
    """The cached root for this recipe, made first if need be."""
    spec = recipe(suite, sources, packages)
    folder = folder_for(suite, sources, packages, cache)
    if (folder / INFO).is_file() and (folder / ROOT_TAR).is_file():
        return Root(folder / ROOT_TAR, json.loads((folder / INFO).read_text()))
    mmdebstrap = shutil.which("mmdebstrap")
    if not mmdebstrap:
        raise UserError("mmdebstrap not found: run ./setup.sh (or apt-get install "
                        "mmdebstrap) to make the Debian guest's root filesystem")
    with atomic_path(folder) as tmp:
        tmp.mkdir(parents=True)
        (tmp / "sources.sources").write_text(spec["sources"])
        argv = [mmdebstrap, f"--variant={VARIANT}", "--format=tar",
                f"--include={','.join(spec['packages'])}",
                *(f"--dpkgopt={o}" for o in DPKG_OPTIONS),
                *(f"--customize-hook={h}" for h in HOOKS),
                suite, tmp / ROOT_TAR, tmp / "sources.sources"]
        start = time.monotonic()
        run(argv, log=log, timeout=3600, what="mmdebstrap (the Debian root filesystem)")
        seconds = round(time.monotonic() - start, 1)
        version = run([mmdebstrap, "--version"]).strip()
        info = {**spec, **read_records(tmp / ROOT_TAR), "mmdebstrap": version,
                "seconds": seconds, "sha256": sha256_file(tmp / ROOT_TAR)}
        (tmp / INFO).write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
    return Root(folder / ROOT_TAR, info)


def read_records(tarball: Path) -> dict:
    """The mirror state a root recorded in itself: Release fields by list
    file, and the installed packages as (name, version) pairs."""
    wanted = {f"{RECORDS}/releases": "releases", f"{RECORDS}/packages": "installed"}
    found = {}
    with tarfile.open(tarball, "r|*") as tar:
        for member in tar:
            name = member.name.lstrip("./")
            if name in wanted and member.isfile():
                found[wanted[name]] = tar.extractfile(member).read().decode()
                if len(found) == len(wanted):
                    break
    missing = set(wanted.values()) - set(found)
    if missing:
        raise UserError(f"{tarball}: the root has no {RECORDS}/{sorted(missing)[0]}; "
                        "remove the folder and rebuild the payload")
    return {"releases": parse_releases(found["releases"]),
            "installed": [line.split("\t", 1) for line in found["installed"].splitlines()
                          if "\t" in line]}


def parse_releases(text: str) -> "dict[str, dict[str, str]]":
    """``LISTFILE:Field: value`` lines → {list file: {field: value}}."""
    releases: "dict[str, dict[str, str]]" = {}
    for line in text.splitlines():
        source, _, rest = line.partition(":")
        field, _, value = rest.partition(":")
        if field and value:
            releases.setdefault(source, {})[field.strip()] = value.strip()
    return releases


def packages_listing(info: dict) -> str:
    """artifacts/payload/debian-packages.txt: the mirror state, then
    ``dpkg-query -W`` of the root."""
    lines = [f"# The Debian guest's root: suite {info['suite']}, made by {info['mmdebstrap']}",
             f"# requested: {' '.join(info['packages'])}", "# from:"]
    lines += [f"#   {l}" for l in info["sources"].splitlines() if l.startswith(("URIs", "Suites"))]
    for source, fields in sorted(info["releases"].items()):
        lines.append(f"# Release {fields.get('Suite', '?')} ({fields.get('Codename', '?')}) "
                     f"dated {fields.get('Date', '?')}: {source}")
    lines += [f"{name}\t{version}" for name, version in info["installed"]]
    return "\n".join(lines) + "\n"
