"""The Debian guest's root filesystem, made on the host from Debian packages
without a VM, and cached by its recipe.

Who makes it (``maker``): mmdebstrap when the host runs the guest's
architecture; else ``debootstrap --foreign`` (under fakeroot when not
root), which only downloads and unpacks, so no binfmt_misc and no
qemu-user are needed: the packages are configured inside the emulated
guest at install time (``second_stage`` in installer-hooks.sh).

The recipe is the suite, the sources (deb822 text), the package list and
mmdebstrap's options; a root made from the same recipe is reused, so the
guest stays pinned to the mirror state it was first made from. Each root
records that state inside itself, in ``usr/share/revive/``: the ``Date`` of
every Release file apt read, and ``dpkg-query -W`` of the finished root.

Both makers give the newest versions of the suite and of its -updates and
-security companions among the sources: mmdebstrap reads them all;
debootstrap reads the suite alone, so ``_foreign_updates`` then swaps in
what the companions have newer (apt's own resolver and checks, for the
guest's architecture) before the second stage installs it.

mmdebstrap picks its mode itself: ``root`` when run as root, else
``unshare`` (unprivileged user namespaces and /etc/subuid ranges, as on a
default Debian) or ``fakechroot``.
"""

import hashlib
import json
import os
import shutil
import tarfile
import time
from urllib.parse import unquote
from dataclasses import dataclass
from pathlib import Path

from revive.core.errors import UserError
from revive.core.files import atomic_path, sha256_file
from revive.core.proc import run
from revive.guests.debs import private_apt
from revive.qemu.devices import ARCHES

from . import apt

MMDEBSTRAP = "mmdebstrap"
FOREIGN = "debootstrap --foreign"

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


def maker(arch: str, host_machine: "str | None" = None) -> str:
    """How the root of a guest of ``arch`` is made on this host: mmdebstrap
    when the host's ``uname -m`` is the guest's, else debootstrap --foreign."""
    host_machine = host_machine or os.uname().machine
    return MMDEBSTRAP if ARCHES[arch].uname == host_machine else FOREIGN


def recipe(suite: str, sources: "list[apt.Source]", packages: "list[str]",
           arch: str = "amd64", made_by: str = MMDEBSTRAP) -> dict:
    spec = {"suite": suite, "sources": apt.deb822(sources), "packages": sorted(set(packages)),
            "variant": VARIANT, "dpkg_options": DPKG_OPTIONS, "hooks": HOOKS}
    if made_by != MMDEBSTRAP or arch != "amd64":
        # (amd64 by mmdebstrap keeps the key it always had.)
        spec.update(arch=arch, maker=made_by)
    if made_by == FOREIGN:
        # The companions whose newer packages replace the suite's (a root
        # made before they were applied has another key).
        spec["updates_from"] = sorted({s.suite for s in sources if s.suite != suite})
    return spec


def cache_key(recipe_: dict) -> str:
    text = json.dumps(recipe_, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def folder_for(suite: str, sources: "list[apt.Source]", packages: "list[str]",
               cache: Path, arch: str = "amd64", made_by: str = MMDEBSTRAP) -> Path:
    """Where the root of this recipe is (or will be) cached."""
    spec = recipe(suite, sources, packages, arch, made_by)
    name = suite if arch == "amd64" else f"{suite}-{arch}"
    return Path(cache) / "debian-root" / f"{name}-{cache_key(spec)}"


def build(suite: str, sources: "list[apt.Source]", packages: "list[str]",
          cache: Path, log: Path, arch: str = "amd64", made_by: str = MMDEBSTRAP) -> Root:
    """The cached root for this recipe, made first if need be."""
    spec = recipe(suite, sources, packages, arch, made_by)
    folder = folder_for(suite, sources, packages, cache, arch, made_by)
    if (folder / INFO).is_file() and (folder / ROOT_TAR).is_file():
        return Root(folder / ROOT_TAR, json.loads((folder / INFO).read_text()))
    if made_by == FOREIGN:
        return _build_foreign(spec, arch, sources, folder, log)
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
                "made_by": version,
                "seconds": seconds, "sha256": sha256_file(tmp / ROOT_TAR)}
        (tmp / INFO).write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
    return Root(folder / ROOT_TAR, info)


def _build_foreign(spec: dict, arch: str, sources: "list[apt.Source]", folder: Path,
                   log: Path) -> Root:
    """``debootstrap --foreign``: the packages downloaded, checked and
    unpacked into a tree with debootstrap's second stage in /debootstrap;
    the records written from what it fetched; then one tarball."""
    debootstrap = shutil.which("debootstrap", path=os.pathsep.join(
        [os.environ.get("PATH", os.defpath), "/usr/sbin", "/sbin"]))
    if not debootstrap:
        raise UserError("debootstrap not found: run ./setup.sh (or apt-get install "
                        "debootstrap) to make a Debian guest's root for another architecture")
    main = next((s for s in sources if s.suite == spec["suite"]), None)
    if main is None:
        raise UserError(f"config.toml: [guest] mirror: no source carries {spec['suite']!r} "
                        "for debootstrap; set [guest] mirror to an archive URL that has it")
    # Not root: fakeroot records the owners and device nodes debootstrap
    # makes, and the tar of the same session writes them.
    fake = [] if os.geteuid() == 0 else [_need("fakeroot")]
    with atomic_path(folder) as tmp:
        tmp.mkdir(parents=True)
        (tmp / "sources.sources").write_text(spec["sources"])
        target, state = tmp / "root", tmp / "fakeroot.state"
        keyring = [f"--keyring={main.signed_by}"] \
            if main.signed_by and main.signed_by.startswith("/") else []
        start = time.monotonic()
        run([*fake, *(["-s", state] if fake else []), debootstrap, "--foreign",
             f"--arch={arch}", f"--variant={VARIANT}",
             f"--include={','.join(spec['packages'])}", *keyring,
             spec["suite"], target, main.uri],
            log=log, timeout=3600, what=f"debootstrap --foreign --arch={arch} (the Debian root)")
        updated = _foreign_updates(target, sources, spec["suite"], arch, tmp / "apt", log)
        shutil.rmtree(tmp / "apt", ignore_errors=True)
        _foreign_records(target)
        _foreign_sources(target, spec["sources"])
        run([*fake, *(["-i", state, "-s", state] if fake else []), "tar", "-C", target,
             "--numeric-owner", "-czf", tmp / ROOT_TAR, "."],
            log=log, timeout=1800, what="tar of the Debian root")
        seconds = round(time.monotonic() - start, 1)
        shutil.rmtree(target, ignore_errors=True)
        if fake:
            state.unlink(missing_ok=True)
        version = "debootstrap " + _debootstrap_version(debootstrap)
        info = {**spec, **read_records(tmp / ROOT_TAR), "made_by": version,
                "updated": updated,
                "seconds": seconds, "sha256": sha256_file(tmp / ROOT_TAR)}
        (tmp / INFO).write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
    return Root(folder / ROOT_TAR, info)


def _foreign_updates(target: Path, sources: "list[apt.Source]", suite: str, arch: str,
                     state: Path, log: Path) -> "dict[str, list]":
    """Swap the packages debootstrap fetched from ``suite`` for the newer
    ones the other sources (its -updates and -security) carry, so the
    second stage installs those: {name: [suite's version or None, new]}.

    apt decides and checks, through a private configuration for ``arch``
    (``debs.private_apt``): ``apt-get update`` verifies each InRelease
    with its source's key and each index's sha256; a status file that says
    the fetched packages are installed (their own control fields) lets
    ``apt-get -s dist-upgrade`` pick the newer versions by Debian's rules,
    with any package they newly depend on; ``apt-get download`` checks
    each .deb against the signed index. Those .debs go where debootstrap
    put its own, and ``debootstrap/debpaths`` (what the second stage
    installs) and ``debootstrap/base`` name them."""
    if not any(s.suite != suite for s in sources):
        return {}
    config = private_apt(state, apt.deb822(sources), arch=arch)
    env = ["env", f"APT_CONFIG={config}"]
    _apt([*env, "apt-get", "update", "-q"], log, timeout=900,
         what=f"apt-get update ({arch} lists of {suite} and its updates, for the Debian root)")
    paths = dict(_debpaths(target))
    stanzas = [run(["dpkg-deb", "-f", target / deb.lstrip("/")]).rstrip("\n")
               + "\nStatus: install ok installed\n" for deb in paths.values()]
    (state / "status").write_text("\n".join(stanzas))
    plan = _apt([*env, "apt-get", "-s", "-q", "-o", "Debug::NoLocking=1",
                 "-o", "APT::Install-Recommends=false", "dist-upgrade"],
                log, what=f"apt-get -s dist-upgrade ({arch}: the root's newer packages)")
    updated = {}
    for line in plan.splitlines():
        word, _, rest = line.partition(" ")
        name = rest.split(" ", 1)[0]
        if word == "Remv":
            raise UserError(f"the updates of {suite} ({arch}) would remove {name} from the "
                            f"Debian root: set [guest] mirror to the suite's archive URL to "
                            "make it from the suite alone", log=str(log))
        if word == "Inst":
            old = rest.split("[", 1)[1].split("]", 1)[0] if " [" in rest.split("(")[0] else None
            updated[name] = [old, rest.split("(", 1)[1].split(" ", 1)[0]]
    if not updated:
        return {}
    archives = target / "var/cache/apt/archives"
    staging = state / "download"
    staging.mkdir()
    _apt([*env, "apt-get", "download", "-q", *(f"{n}={v}" for n, (_, v) in updated.items())],
         log, cwd=staging, timeout=1800,
         what=f"apt-get download ({arch}: {len(updated)} newer packages for the Debian root)")
    got = {deb.name.split("_", 1)[0]: deb for deb in staging.glob("*.deb")
           if unquote(deb.name).split("_")[1] == updated.get(deb.name.split("_", 1)[0],
                                                             [None, None])[1]}
    missing = sorted(set(updated) - set(got))
    if missing:
        raise UserError(f"apt-get download left no .deb of {missing[0]} "
                        f"{updated[missing[0]][1]} for the Debian root", log=str(log))
    for name, deb in sorted(got.items()):
        if name in paths:
            (target / paths[name].lstrip("/")).unlink(missing_ok=True)
        os.replace(deb, archives / deb.name)
        paths[name] = f"/var/cache/apt/archives/{deb.name}"
    (target / "debootstrap/debpaths").write_text(
        "".join(f"{n} {p}\n" for n, p in sorted(paths.items())))
    # The second stage reads the control fields of what it installs from
    # the suite's index debootstrap kept (dpkg's available file, from which
    # dpkg --predep-package finds unmet Pre-Depends): there, the new
    # versions' stanzas. (An old libpam-modules' Pre-Depends on
    # libpam-modules-bin (= the old version) stopped the second stage.)
    stanzas = _apt([*env, "apt-cache", "show", *(f"{n}={v}" for n, (_, v) in updated.items())],
                   log, what=f"apt-cache show ({arch}: the newer packages' control fields)")
    _replace_stanzas(target, suite, arch, stanzas)
    added = [n for n, (old, _) in updated.items() if old is None]
    if added:
        base = target / "debootstrap/base"
        base.write_text(" ".join([*base.read_text().split(), *sorted(added)]) + "\n")
    # The companions' Release files join the suite's, for the records.
    lists = target / "var/lib/apt/lists"
    for source in sources:
        if source.suite != suite:
            for release in (state / "lists").glob(f"*_dists_{source.suite}_InRelease"):
                shutil.copyfile(release, lists / release.name)
    return dict(sorted(updated.items()))


def _replace_stanzas(target: Path, suite: str, arch: str, stanzas: str) -> None:
    """In debootstrap's copy of the suite's Packages index(es), the
    packages of ``stanzas`` (apt-cache show) in place of the suite's, and
    those new to the suite after the last stanza."""
    new = {}
    for stanza in stanzas.strip("\n").split("\n\n"):
        name = stanza.split("\n", 1)[0].partition(": ")[2].strip()
        new[name] = stanza.rstrip("\n") + "\n"
    lists = target / "var/lib/apt/lists"
    indexes = sorted(lists.glob(f"*_dists_{suite}_*_binary-{arch}_Packages"))
    if not indexes:
        raise UserError(f"debootstrap left no {suite} {arch} Packages index in "
                        f"{target}/var/lib/apt/lists to update; report this as a bug")
    left = dict(new)
    for index in indexes:
        out = []
        for stanza in index.read_text().split("\n\n"):
            name = stanza.lstrip("\n").split("\n", 1)[0].partition(": ")[2].strip()
            out.append(left.pop(name).rstrip("\n") if name in new and name in left
                       else stanza)
        if index == indexes[-1]:
            out[-1:-1] = [s.rstrip("\n") for s in left.values()]
        index.write_text("\n\n".join(out))


def _apt(argv: list, log: Path, what: str, cwd=None, timeout: float = 600) -> str:
    """``run`` of an apt-get command whose failure names apt's first error
    (a bad signature, a checksum that differs from the signed index), not
    its last line of detail."""
    start = log.stat().st_size if log.is_file() else 0
    try:
        return run(argv, log=log, cwd=cwd, timeout=timeout, what=what)
    except UserError:
        with open(log, "rb") as fh:
            fh.seek(start)
            said = fh.read().decode(errors="replace").splitlines()
        errors = [line[3:].strip() for line in said if line.startswith("E: ")]
        if not errors:
            raise
        raise UserError(f"{what} refused: {errors[0]}; if the mirror was mid-update, "
                        "run the build again, else check the host's apt sources and keys",
                        log=str(log)) from None


def _debpaths(target: Path) -> "list[tuple[str, str]]":
    """debootstrap/debpaths: (NAME, /var/cache/apt/archives/NAME_VERSION_ARCH.deb)."""
    found = []
    for line in (target / "debootstrap/debpaths").read_text().splitlines():
        name, _, deb = line.partition(" ")
        if name:
            found.append((name, deb))
    return found


def _foreign_sources(target: Path, sources_text: str) -> None:
    """The guest's apt reads the sources the root was made from (the suite
    and its companions), as in a root made by mmdebstrap, not the suite
    alone that debootstrap writes."""
    (target / "etc/apt/sources.list").unlink(missing_ok=True)
    parts = target / "etc/apt/sources.list.d"
    parts.mkdir(parents=True, exist_ok=True)
    (parts / "0000sources.sources").write_text(sources_text)


def _need(command: str) -> str:
    found = shutil.which(command)
    if not found:
        raise UserError(f"{command} not found: run ./setup.sh (or apt-get install {command}) "
                        "to make a Debian guest's root for another architecture as a user")
    return found


def _debootstrap_version(debootstrap: str) -> str:
    # debootstrap has no --version; the script carries VERSION='1.0.128+nmu2'.
    for line in Path(debootstrap).read_text(errors="replace").splitlines():
        if line.startswith("VERSION="):
            return line.split("=", 1)[1].strip("'\"")
    return "(version unknown)"


def _foreign_records(target: Path) -> None:
    """What mmdebstrap's hooks record, for a root whose packages are not
    configured yet: the Release files debootstrap read, and the packages
    it fetched (debootstrap/debpaths: NAME PATH/NAME_VERSION_ARCH.deb).
    The dpkg options go where dpkg reads them at the second stage."""
    records = target / RECORDS
    records.mkdir(parents=True, exist_ok=True)
    lines = []
    for path in sorted((target / "var/lib/apt/lists").glob("*Release")):
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith(("Origin:", "Suite:", "Codename:", "Date:")):
                lines.append(f"{path.name}:{line}")
    (records / "releases").write_text("".join(f"{l}\n" for l in lines))
    installed = []
    for name, deb in _debpaths(target):
        version = unquote(Path(deb).name[:-len(".deb")].split("_")[1])
        installed.append(f"{name}\t{version}\n")
    (records / "packages").write_text("".join(sorted(installed)))
    (target / "etc/dpkg/dpkg.cfg.d").mkdir(parents=True, exist_ok=True)
    (target / "etc/dpkg/dpkg.cfg.d/revive-nodoc").write_text(
        "".join(f"{o}\n" for o in DPKG_OPTIONS))


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
    made_by = info.get("made_by") or info["mmdebstrap"]
    arch = f" {info['arch']}" if "arch" in info else ""
    lines = [f"# The Debian guest's root: suite {info['suite']}{arch}, made by {made_by}",
             f"# requested: {' '.join(info['packages'])}", "# from:"]
    lines += [f"#   {l}" for l in info["sources"].splitlines() if l.startswith(("URIs", "Suites"))]
    for source, fields in sorted(info["releases"].items()):
        lines.append(f"# Release {fields.get('Suite', '?')} ({fields.get('Codename', '?')}) "
                     f"dated {fields.get('Date', '?')}: {source}")
    # A foreign root: what the suite's -updates and -security replaced.
    for name, (old, new) in sorted(info.get("updated", {}).items()):
        lines.append(f"# updated: {name} {old or '(new)'} -> {new}")
    lines += [f"{name}\t{version}" for name, version in info["installed"]]
    return "\n".join(lines) + "\n"
