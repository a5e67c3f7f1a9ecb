"""The "debian" guest: a real Debian system (systemd, OpenSSH, a toolchain)
on the same stages as the tiny guest; only what is installed differs.

Payload: the tiny guest's installer, kernel, boot initramfs and isolinux,
unchanged, plus on the ISO:

- ``system.tar.gz``: the Debian root, made on the host from Debian packages
  (``rootfs``): by mmdebstrap when the host runs the guest's architecture,
  else by ``debootstrap --foreign``, whose second stage the installer runs
  inside the emulated guest; cached by suite, sources and packages;
- ``system.cpio``: revive's files for it, the pinned kernel's modules
  (network, 9p, SMB, autofs), the pinned static busybox (``BUSYBOX``: it
  sets the clock and mounts the shares after a revive) and the settings
  beside this module in ``system/`` (SSH, network, the REVIVE-READY unit);
- ``installer-hooks.sh``: the Debian steps the tiny installer sources.

Boot: like the tiny guest, no bootloader on the disk. QEMU boots the
payload's pinned kernel and boot initramfs, which switch_root into the
Debian system's /sbin/init (systemd). The root carries no linux-image and
no grub: the kernel that runs is exactly the pinned one, the same as the
installer's, and there is nothing to update inside the image.

``[guest]`` keys: ``arch`` ("amd64", "arm64", "riscv64"), ``suite`` (the
arch row's Debian release: "bookworm", "trixie" on riscv64), ``mirror`` ("host": the host's apt
sources; or an archive URL), ``packages`` (["build-essential"]: added to
``REQUIRED``, which revive itself needs).
"""

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from revive.core.rows import Invalid, Setting, read, shown
from revive.core.errors import UserError
from revive.core.files import sha256_file
from revive.formats.cpio import Archive
from revive.guests import debs, tiny
from revive.guests.linux import LinuxKind, installer, kmod, pins
from revive.qemu.devices import ARCHES

from . import apt, rootfs

HERE = Path(__file__).resolve().parent

# What revive needs in every Debian guest: systemd as init (with udev, which
# systemd-networkd waits for and which starts qemu-ga when its virtio-serial
# port appears), OpenSSH, QEMU's guest agent, modprobe for the pinned
# kernel's modules, and ip for looking around.
REQUIRED = ("systemd-sysv", "udev", "openssh-server", "qemu-guest-agent", "kmod", "iproute2")
DEFAULT_PACKAGES = ("build-essential",)
DEFAULT_SUITE = "bookworm"
# The architectures the Debian guest is tested on (docs/architectures.md).
ARCHITECTURES = ("amd64", "arm64", "riscv64")
# Where the overlay puts the pinned static busybox (the installer's, from
# revive/guests/linux/pins.py). Its applets set the clock and mount the
# shares after each revive: Debian's date and util-linux's mount are
# dynamically linked (mount: libmount, libblkid, libselinux, libpcre2), and
# after a revive TCG translates a program's loader and libraries again at
# its first start; one static binary is translated once. The root's own
# programs stay what builds run.
BUSYBOX = "/usr/lib/revive/busybox"
# A foreign guest configures its packages under TCG at install time
# (arm64: about 12 minutes here).
FOREIGN_INSTALL_TIMEOUT = "60m"

# Modules of the pinned kernel the system loads at boot (dependencies come
# from the modules' metadata): the tiny guest's disk, network and share
# drivers, and autofs, which systemd asks for.
MODULES = [*installer.BOOT_MODULES, *tiny.SYSTEM_MODULES, "autofs4"]

_SUITE = re.compile(r"^[a-z][a-z0-9-]{1,40}$")
_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
_URL = re.compile(r"^(https?|file):///?[^\s\"']+$")


@dataclass(frozen=True)
class DebianSettings:
    suite: str
    mirror: str                   # "host" or an archive URL
    packages: "tuple[str, ...]"   # the user's; REQUIRED is always added
    arch: str = "amd64"           # a key of ARCHES, one of ARCHITECTURES

    @property
    def all_packages(self) -> "list[str]":
        return sorted(set(REQUIRED) | set(self.packages))

    def sources(self) -> "list[apt.Source]":
        # Another architecture's packages come from the host's Debian
        # archive at that release, as the tiny guest's do (a bookworm host
        # fetching trixie for riscv64).
        return apt.sources_for(self.suite, self.mirror, rebase=self.arch != "amd64")

    @classmethod
    def from_table(cls, table: dict, root: "Path | None" = None) -> "DebianSettings":
        return from_table(table)


def _suite(value, seen=None) -> str:
    if not isinstance(value, str) or not _SUITE.match(value):
        raise Invalid(f"{value!r} is not a Debian suite name; use a code name such as "
                      "\"bookworm\"")
    return value


def _mirror(value, seen=None) -> str:
    if not isinstance(value, str) or (value != "host" and not _URL.match(value)):
        raise Invalid(f"{value!r} is neither \"host\" nor an archive URL; use \"host\" (the "
                      "host's apt sources) or an http(s):// or file:// URL of a Debian archive")
    return value.rstrip("/") if value != "host" else value


def _packages(value, seen=None) -> "tuple[str, ...]":
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise Invalid(f"{value!r} is not a list of package names; write e.g. "
                      "packages = [\"build-essential\", \"git\"]")
    for name in value:
        if not _PACKAGE.match(name):
            raise Invalid(f"{name!r} is not a Debian package name; use names as "
                          "apt-get install takes them, without versions")
    return tuple(value)


def _arch(value, seen=None) -> str:
    if value not in ARCHITECTURES:
        raise Invalid(f"{value!r} is not an architecture of the Debian guest; use one of: "
                      f"{', '.join(ARCHITECTURES)}")
    return value


@shown("the arch's Debian release: `\"bookworm\"`, `\"trixie\"` on riscv64")
def _default_suite(values: dict) -> str:
    return ARCHES[values.get("arch") or "amd64"].suite


# The suite and mirror are also what [sources.NAME] debian fetches from.
# arch first: the suite's default comes from its row in ARCHES.
KEYS = (
    Setting("guest.arch", _arch, "the guest's architecture: amd64, arm64 or riscv64 (the "
            "other two emulated under TCG on an x86 host, their root made by debootstrap "
            "--foreign; docs/architectures.md)", "amd64",
            stages=("payload", "iso", "install", "snapshot")),
    Setting("guest.suite", _suite, "the Debian suite (code name) the root is made from",
            _default_suite, stages=("payload", "sources:NAME")),
    Setting("guest.mirror", _mirror, "\"host\": the archive URIs, suites and keys of the "
            "host's own apt sources (/etc/apt/sources.list, sources.list.d/*.list and "
            "deb822 *.sources): the suite and its -updates and -security companions. Or an "
            "archive URL (http://…/debian, file:///…), used for the suite alone", "host",
            stages=("payload", "sources:NAME")),
    Setting("guest.packages", _packages, "Debian packages installed on top of what revive "
            "needs (systemd, udev, OpenSSH, qemu-guest-agent, kmod, iproute2)",
            list(DEFAULT_PACKAGES), stages=("payload",)),
)


def from_table(table: dict) -> DebianSettings:
    """The ``[guest]`` table of a Debian guest, read by its rows."""
    return DebianSettings(**read(KEYS, table, "config.toml", "guest", allowed=("kind",)))


# --- what the stages call -------------------------------------------------

# Modules here that build no part of the payload (they fetch build inputs).
NOT_IN_PAYLOAD = ("sources.py",)


def source_files() -> "list[Path]":
    """The repository files that shape the payload (file_dep of its task):
    this guest's and the tiny guest's, whose installer and boot it uses."""
    own = [p for p in HERE.rglob("*")
           if p.is_file() and "__pycache__" not in p.parts and p.name not in NOT_IN_PAYLOAD]
    return sorted(own) + list(tiny.source_files())


class DebianKind(LinuxKind):
    """The stages' view of this guest: the tiny guest's, with its own payload."""

    name = "debian"
    Settings = DebianSettings
    keys = KEYS
    busybox = BUSYBOX

    @classmethod
    def defaults(cls, settings) -> dict:
        # A root with build-essential needs more room than the tiny guest.
        found = {**super().defaults(settings), "answers.disk_size": "4G", "vm.memory": "1G"}
        if settings is not None and settings.arch != "amd64":
            found["timeouts.install"] = FOREIGN_INSTALL_TIMEOUT
        return found

    @classmethod
    def minimums(cls, settings) -> dict:
        return {**super().minimums(settings), "answers.disk_size": "1G"}

    def source_files(self) -> "list[Path]":
        return source_files()

    def host_facts(self) -> dict:
        # The resolved sources: a change in the host's apt sources makes
        # another root, so the payload must be rebuilt.
        # Who makes the root (mmdebstrap, or debootstrap --foreign and a
        # second stage at install) follows from the host: hashed too.
        return {"apt_sources": self.settings.sources(),
                "root_maker": rootfs.maker(self.settings.arch)}

    def build_payload(self, inputs, paths, out: Path, log: Path) -> None:
        build_payload(paths.cache, out, log, inputs.guest, list(inputs.host["apt_sources"]),
                      inputs.host["root_maker"])


# --- the payload ----------------------------------------------------------

def build_payload(cache: Path, out: Path, log: Path, settings: DebianSettings,
                  sources: "list[apt.Source]", made_by: str = rootfs.MMDEBSTRAP) -> None:
    """Write into the empty folder ``out``: the tiny guest's payload (its
    installer, kernel, boot initramfs and isolinux), with the Debian system
    on the ISO in place of the tiny one, debian-packages.txt and
    manifest.json."""
    cache, out = Path(cache), Path(out)
    arch = ARCHES[settings.arch]
    tiny.build_payload(cache / "debs", out, log, arch)   # the installer, kernel and boot
    root = rootfs.build(settings.suite, sources, settings.all_packages, cache, log,
                        arch.name, made_by)
    iso = out / "iso"
    _link_or_copy(root.tarball, iso / "system.tar.gz")
    _overlay(cache / "debs", log, arch).write(iso / "system.cpio")
    shutil.copyfile(HERE / "installer-hooks.sh", iso / "installer-hooks.sh")
    (out / "debian-packages.txt").write_text(rootfs.packages_listing(root.info))
    _write_manifest(out / "manifest.json", settings, root)


def _link_or_copy(source: Path, target: Path) -> None:
    # The cached root is never changed in place (a new one is renamed over
    # it), so a hard link is a safe copy.
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _overlay(debs_cache: Path, log: Path, arch=ARCHES["amd64"]) -> Archive:
    """revive's files for the Debian root: ``system/``, the modules and
    the pinned busybox."""
    archive = Archive()
    system = HERE / "system"
    for path in sorted(system.rglob("*")):
        if path.is_file():
            mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
            archive.file(path.relative_to(system).as_posix(), path.read_bytes(), mode)
    own = pins.BY_ARCH[arch.name]
    release = own.kernel_release
    packages = debs.fetch([own.kernel, own.busybox], debs_cache, log, suite=arch.suite,
                          pinned_in="revive/guests/linux/pins.py")
    with tempfile.TemporaryDirectory(prefix="debian-modules-", dir=debs_cache) as tmp:
        unpacked, staging = Path(tmp, "kernel"), Path(tmp, "staging")
        archive.file(BUSYBOX.lstrip("/"), installer.busybox_binary(
            installer.unpack(packages, [own.busybox], Path(tmp, "busybox"))), 0o755)
        installer.unpack_kernel(packages, unpacked, own, arch.kernel_image)
        index = kmod.ModuleIndex(unpacked / "lib/modules" / release)
        try:
            # Under usr/: in a merged-/usr system /lib is a symlink, which
            # the installer's cpio would replace by a folder.
            kmod.install(index, MODULES, release, staging / "usr")
        except KeyError as err:
            raise UserError(f"{err.args[0]}: update MODULES in "
                            "revive/guests/debian/__init__.py for the pinned kernel") from None
        archive.add_tree(staging)
        loadable = [m.name for m in map(index.resolve, MODULES) if m is not None]
    archive.file("etc/modules-load.d/revive.conf",
                 "".join(f"{m}\n" for m in ["# loaded by systemd-modules-load", *loadable])
                 .encode())
    return archive


def _write_manifest(target: Path, settings: DebianSettings, root: rootfs.Root) -> None:
    tiny_manifest = json.loads(target.read_text())
    manifest = {
        "guest": "debian",
        "arch": settings.arch,
        "kernel_release": pins.BY_ARCH[settings.arch].kernel_release,
        "boot_cmdline": installer.boot_cmdline(ARCHES[settings.arch]),
        "installer_packages": tiny_manifest["packages"],
        "suite": settings.suite,
        "mirror": settings.mirror,
        "sources": root.info["sources"],
        "releases": root.info["releases"],
        "requested": settings.all_packages,
        "packages": dict(root.info["installed"]),
        "root": {"sha256": root.info["sha256"],
                 "made_by": root.info.get("made_by") or root.info["mmdebstrap"]},
        # Every file the ISO and the boot get: the ISO task depends on this
        # manifest alone, so any change to them must show here.
        "files": {p.relative_to(target.parent).as_posix(): sha256_file(p)
                  for p in sorted(target.parent.rglob("*")) if p.is_file() and p != target},
    }
    target.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
