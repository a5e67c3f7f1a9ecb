"""The "tiny" guest: the shared Linux installer and kernel, and a system of
busybox and dropbear, assembled on the host from pinned Debian packages,
without root.

The system's ``etc/init.d/rcS`` starts dropbear and prints ``REVIVE-READY``.

``[guest] arch``: "amd64" (default), "arm64", "riscv64", "armhf", "ppc64el"
or "s390x", a key of
``devices.ARCHES``; other architectures run under TCG.
"""

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from revive.core.rows import Setting, choice, read
from revive.core.errors import UserError
from revive.formats.cpio import Archive
from revive.guests import debs
from revive.guests.linux import LinuxKind, installer
from revive.guests.linux import pins as linux_pins
from revive.guests.linux.elf import interpreter, needed
from revive.qemu.devices import ARCHES, Arch

from . import pins

HERE = Path(__file__).resolve().parent

SYSTEM_MODULES = [
    "virtio_net", "af_packet",                           # SSH
    "9p", "9pnet_virtio",                                # 9p shares
    "cifs", "nls_utf8",                                  # SMB shares
    # SMB 3 signing/encryption builds gcm(aes) and ccm(aes) at mount time;
    # the templates' own parts are not declared anywhere in modinfo.
    "ctr", "ghash_generic",
    "virtio_console",                                    # qemu-ga's virtio-serial port
    "virtio_scsi", "sr_mod",                             # big shares' images on CD drives
]

# The system's programs, whose shared libraries are found like ldd would.
SYSTEM_PROGRAMS = ["usr/sbin/dropbear", "usr/bin/dropbearkey", "usr/sbin/qemu-ga"]


def library_dirs(arch: Arch) -> "list[str]":
    return [f"lib/{arch.triplet}", f"usr/lib/{arch.triplet}", "lib", "usr/lib"]

# Folders of the installed system that no package provides.
SYSTEM_DIRS = {"proc": 0o555, "sys": 0o555, "dev": 0o755, "tmp": 0o1777,
               "run": 0o755, "root": 0o700, "home": 0o755, "mnt": 0o755,
               "var/log": 0o755, "etc/dropbear": 0o700, "etc/revive": 0o755}


# Every stage that starts or describes the machine sees the architecture.
KEYS = (
    Setting("guest.arch", choice(*ARCHES), "the guest's architecture: amd64, arm64, "
            "riscv64, armhf, ppc64el or s390x (emulated under TCG on an x86 host; docs/architectures.md)", "amd64",
            stages=("payload", "iso", "install", "snapshot")),
)


@dataclass(frozen=True)
class TinySettings:
    arch: str = "amd64"

    @classmethod
    def from_table(cls, table: dict, root: "Path | None" = None) -> "TinySettings":
        return cls(**read(KEYS, table, "config.toml", "guest", allowed=("kind",)))


class TinyKind(LinuxKind):
    name = "tiny"
    Settings = TinySettings
    keys = KEYS

    def source_files(self) -> "list[Path]":
        return source_files()

    def build_payload(self, inputs, paths, out: Path, log: Path) -> None:
        build_payload(paths.cache / "debs", out, log, self.arch())


def source_files() -> "list[Path]":
    """The repository files that shape the payload (file_dep of its task)."""
    own = [p for p in HERE.rglob("*")
           if p.is_file() and "__pycache__" not in p.parts]
    return sorted(own) + installer.source_files()


# --- the payload ----------------------------------------------------------

def build_payload(cache: Path, out: Path, log: Path, arch: Arch = ARCHES["amd64"]) -> None:
    """Fetch the pinned packages into ``cache`` and write the ISO tree
    (``out/iso``), the boot kernel and initramfs (``out/boot``) and
    ``out/manifest.json`` into the empty folder ``out``."""
    cache, out = Path(cache), Path(out)
    everything = linux_pins.BY_ARCH[arch.name].all + pins.BY_ARCH[arch.name]
    packages = debs.fetch(everything, cache, log, suite=arch.suite,
                          pinned_in="revive/guests/linux/pins.py and revive/guests/tiny/pins.py")
    with tempfile.TemporaryDirectory(prefix="tiny-payload-", dir=cache) as tmp:
        work = Path(tmp)
        inst = installer.build(packages, out, work, arch)
        userland = installer.unpack(packages, pins.BY_ARCH[arch.name], work / "userland")
        _system(userland, inst, work / "system-modules", arch).write(out / "iso/system.cpio")
    _write_manifest(out / "manifest.json", arch, everything)


def _system(userland: Path, inst: installer.Installer, staging: Path,
            arch: Arch = ARCHES["amd64"]) -> Archive:
    """The installed system: busybox (its applet links are made at install
    time by ``busybox --install -s``), dropbear and its libraries, the etc/
    files beside this module, and the modules for disk, network and shares."""
    archive = Archive()
    for path, mode in SYSTEM_DIRS.items():
        archive.dir(path, mode)
    archive.char_device("dev/console", 5, 1)
    archive.char_device("dev/null", 1, 3, 0o666)
    archive.file("bin/busybox", inst.busybox, 0o755)
    archive.symlink("bin/sh", "busybox")
    archive.symlink("sbin/init", "../bin/busybox")
    for path in SYSTEM_PROGRAMS + shared_libraries(userland, SYSTEM_PROGRAMS, arch):
        _copy_into(archive, userland, path)
    for loader in loaders(userland, SYSTEM_PROGRAMS):
        # A merged-/usr package (trixie) ships the loader under usr/ only;
        # the path the binaries name must still lead to it.
        if not os.path.lexists(userland / loader.lstrip("/")):
            archive.symlink(loader.lstrip("/"), "/usr" + loader)
    _add_repo_files(archive, HERE / "etc", "etc")
    installer.add_modules(archive, inst.modules,
                          installer.for_arch(installer.BOOT_MODULES, arch) + SYSTEM_MODULES,
                          staging, release=inst.release)
    return archive


def _add_repo_files(archive: Archive, folder: Path, prefix: str) -> None:
    """Files from this repository, with modes that depend only on their
    execute bit (not on the umask of whoever checked the repository out)."""
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
            rel = path.relative_to(folder).as_posix()
            archive.file(f"{prefix}/{rel}", path.read_bytes(), mode)


def _copy_into(archive: Archive, root: Path, path: str) -> None:
    host = root / path
    if host.is_symlink():
        archive.symlink(path, os.readlink(host))
    else:
        archive.file(path, host.read_bytes(), host.stat().st_mode & 0o7777)


def loaders(root: Path, programs: "list[str]") -> "set[str]":
    """The dynamic loaders ``programs`` name (absolute guest paths)."""
    return {name for name in (interpreter(root / _resolve(root, p)) for p in programs) if name}


def shared_libraries(root: Path, programs: "list[str]",
                     arch: Arch = ARCHES["amd64"]) -> "list[str]":
    """The library files (symlinks and what they point to) and the dynamic
    loader that ``programs`` load, as paths relative to ``root``."""
    found: "list[str]" = []
    queue = list(programs)
    while queue:
        real = _resolve(root, queue.pop())
        loader = interpreter(root / real)
        names = needed(root / real) + ([loader] if loader else [])
        for name in names:
            path = _find_library(root, name, arch)
            for step in _symlink_chain(root, path):
                if step not in found:
                    found.append(step)
                    queue.append(step)
    return sorted(found)


def _find_library(root: Path, name: str, arch: Arch) -> str:
    if name.startswith("/"):
        candidates = [name.lstrip("/"), "usr/" + name.lstrip("/")]
    else:
        candidates = [f"{d}/{name}" for d in library_dirs(arch)]
    for rel in candidates:
        if os.path.lexists(root / rel):
            return rel
    raise UserError(f"no package in revive/guests/tiny/pins.py provides {name}: "
                    "add the library's package there")


def _symlink_chain(root: Path, rel: str) -> "list[str]":
    """``rel`` and every path its symlinks lead to, all inside ``root``."""
    chain = [rel]
    while (root / rel).is_symlink():
        target = os.readlink(root / rel)
        if target.startswith("/"):
            rel = os.path.normpath(target.lstrip("/"))
        else:
            rel = os.path.normpath(os.path.join(os.path.dirname(rel), target))
        chain.append(rel)
    return chain


def _resolve(root: Path, rel: str) -> str:
    return _symlink_chain(root, rel)[-1]


def _write_manifest(target: Path, arch: Arch, everything: "list[debs.Pin]") -> None:
    manifest = {
        "guest": "tiny",
        "arch": arch.name,
        "kernel_release": linux_pins.BY_ARCH[arch.name].kernel_release,
        "boot_cmdline": installer.boot_cmdline(arch),
        "packages": [{"package": p.package, "version": p.version,
                      "arch": p.arch, "sha256": p.sha256}
                     for p in everything],
    }
    target.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


