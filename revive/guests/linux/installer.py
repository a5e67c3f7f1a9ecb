"""What every Linux guest's payload shares: the pinned kernel, the busybox
installer that boots from the ISO (``installer-init``), the boot initramfs
that mounts the installed disk (``boot-init``) and isolinux.

Install: isolinux on the ISO boots the kernel with ``install.img`` (other
architectures than amd64: QEMU boots them directly, the ISO and the answer
floppy given as virtio disks named on the kernel command line), whose
/init reads the answer floppy, writes the system archive(s) on the ISO onto
one ext2 partition of the virtio disk, makes the SSH host key in the guest,
prints ``REVIVE-HOSTKEY …`` and ``REVIVE-INSTALL-OK`` (or
``REVIVE-INSTALL-FAILED <what>``) on the serial console and powers off. A
guest kind changes its steps with an ``installer-hooks.sh`` on the ISO.

Boot: the disk has no bootloader. QEMU gets ``boot/vmlinuz``,
``boot/initrd.img`` and ``boot_cmdline(arch)``.
"""

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from revive.core.errors import UserError
from revive.formats.cpio import Archive
from revive.guests import debs
from revive.qemu.devices import ARCHES, Arch

from . import kmod, pins

HERE = Path(__file__).resolve().parent

ISO_BOOT = {"image": "isolinux/isolinux.bin", "catalog": "isolinux/boot.cat"}


def boot_cmdline(arch: Arch) -> str:
    return f"console={arch.console} root=/dev/vda1 rw quiet"


BOOT_CMDLINE = boot_cmdline(ARCHES["amd64"])


def install_cmdline(arch: Arch) -> str:
    """The installer's command line when QEMU boots it directly: where its
    media are (installer-init defaults to /dev/sr0 and /dev/fd0)."""
    cd, answers = arch.media_devices
    return f"console={arch.console} quiet revive.cd={cd} revive.answers={answers}"


# Kernel modules by the names a person would look for; their dependencies
# (and which of them are built into the kernel) come from the modules'
# own metadata. The drivers of the media's bus and of the virtio transport
# come from the arch's row.
INSTALLER_MODULES = [
    "vfat", "nls_cp437", "nls_ascii",                    # the answer floppy
    "isofs",                                             # the install CD
    "virtio_pci", "virtio_blk", "ext4",                  # the target disk
]
BOOT_MODULES = ["virtio_pci", "virtio_blk", "ext4"]


def for_arch(modules: "list[str]", arch: Arch) -> "list[str]":
    """``modules`` with the arch's virtio transport modules in virtio_pci's
    place (none on s390x: its virtio_ccw is built in)."""
    out: "list[str]" = []
    for m in modules:
        out += arch.virtio_modules if m == "virtio_pci" else [m]
    return out

ISOLINUX_BIN = "usr/lib/ISOLINUX/isolinux.bin"
LDLINUX_C32 = "usr/lib/syslinux/modules/bios/ldlinux.c32"


def source_files() -> "list[Path]":
    """The repository files that shape every Linux payload."""
    # Not the kind's own module (device model, commands) nor the answer
    # floppy's writer: they shape later stages, not the payload.
    own = [p for p in HERE.rglob("*") if p.is_file() and "__pycache__" not in p.parts
           and p.name not in ("__init__.py", "answers.py")]
    return sorted(own) + [Path(debs.__file__).resolve(),
                          HERE.parent.parent / "formats" / "cpio.py"]


@dataclass
class Installer:
    packages: "dict[str, Path]"     # every fetched package by name
    modules: kmod.ModuleIndex       # the pinned kernel's modules, unpacked
    busybox: bytes
    release: str                    # the kernel's release (lib/modules/RELEASE)


def build(packages: "dict[str, Path]", out: Path, work: Path,
          arch: Arch = ARCHES["amd64"]) -> Installer:
    """Write the installer (``out/iso``: vmlinuz, install.img, isolinux/ on
    amd64) and the boot kernel and initramfs (``out/boot``) from ``packages``
    (fetched with at least ``pins.BY_ARCH[arch.name].all``); ``work`` is
    scratch space the caller removes."""
    own = pins.BY_ARCH[arch.name]
    (out / "iso").mkdir(parents=True, exist_ok=True)
    (out / "boot").mkdir(exist_ok=True)
    kernel = unpack_kernel(packages, work / "kernel", own, arch.kernel_image)
    modules = kmod.ModuleIndex(kernel / "lib/modules" / own.kernel_release)
    busybox = busybox_binary(unpack(packages, [own.busybox], work / "busybox"))
    installer = Installer(packages, modules, busybox, own.kernel_release)
    initramfs(busybox, HERE / "installer-init", installer,
              for_arch(INSTALLER_MODULES, arch) + list(arch.media_modules),
              work / "installer-modules").write(out / "iso/install.img", compress=True)
    initramfs(busybox, HERE / "boot-init", installer, for_arch(BOOT_MODULES, arch),
              work / "boot-modules").write(out / "boot/initrd.img", compress=True)
    vmlinuz = kernel / "boot" / f"{arch.kernel_image}-{own.kernel_release}"
    shutil.copyfile(vmlinuz, out / "iso/vmlinuz")
    shutil.copyfile(vmlinuz, out / "boot/vmlinuz")
    if own.boot_loader:
        (out / "iso" / "isolinux").mkdir(exist_ok=True)
        _isolinux(packages, work / "isolinux", out / "iso/isolinux")
    return installer


def busybox_binary(root: Path) -> bytes:
    # bookworm ships bin/busybox; trixie's merged /usr has usr/bin/busybox.
    for path in ("bin/busybox", "usr/bin/busybox"):
        if (root / path).is_file():
            return (root / path).read_bytes()
    raise UserError("the pinned busybox-static package has no busybox binary")


def unpack(packages: "dict[str, Path]", which: "list[debs.Pin]", dest: Path,
           members=None) -> Path:
    for pin in which:
        debs.extract(packages[pin.package], dest, members)
    return dest


def unpack_kernel(packages: "dict[str, Path]", dest: Path,
                  own: "pins.LinuxPins" = pins.BY_ARCH["amd64"],
                  image: str = "vmlinuz") -> Path:
    release = own.kernel_release
    unpack(packages, [own.kernel], dest,
           members=[f"boot/{image}-{release}", f"lib/modules/{release}",
                    f"usr/lib/modules/{release}"])
    if (dest / "usr/lib/modules").is_dir() and not (dest / "lib/modules").exists():
        # trixie's merged /usr: the modules live under usr/lib.
        (dest / "lib").mkdir(exist_ok=True)
        os.symlink("../usr/lib/modules", dest / "lib/modules")
    if not (dest / "boot" / f"{image}-{release}").exists():
        raise UserError(f"{own.kernel.package} has no kernel {release}: make the "
                        "release match the kernel package in revive/guests/linux/pins.py")
    return dest


def add_modules(archive: Archive, index: kmod.ModuleIndex, wanted: "list[str]",
                staging: Path, listing: str = "etc/modules",
                release: str = pins.KERNEL_RELEASE) -> None:
    """Add the modules ``wanted`` needs and a modules.dep for them, and at
    ``listing`` the wanted ones that are not built in, in load order."""
    try:
        kmod.install(index, wanted, release, staging)
    except KeyError as err:
        raise UserError(f"{err.args[0]}: update the guest kind's module lists "
                        "for the pinned kernel (revive/guests/linux/pins.py)") from None
    archive.add_tree(staging)
    loadable = [m.name for m in map(index.resolve, wanted) if m is not None]
    archive.file(listing, "".join(f"{m}\n" for m in loadable).encode())


def initramfs(busybox: bytes, init: Path, installer: Installer,
              wanted: "list[str]", staging: Path) -> Archive:
    archive = Archive()
    # The kernel opens /dev/console for init before anything is mounted.
    archive.char_device("dev/console", 5, 1)
    archive.file("bin/busybox", busybox, 0o755)
    archive.symlink("bin/sh", "busybox")
    archive.file("init", init.read_bytes(), 0o755)
    add_modules(archive, installer.modules, wanted, staging, release=installer.release)
    return archive


def _isolinux(packages: "dict[str, Path]", staging: Path, dest: Path) -> None:
    unpack(packages, [pins.ISOLINUX, pins.SYSLINUX_COMMON], staging,
           members=[ISOLINUX_BIN, LDLINUX_C32])
    shutil.copyfile(staging / ISOLINUX_BIN, dest / "isolinux.bin")
    shutil.copyfile(staging / LDLINUX_C32, dest / "ldlinux.c32")
    shutil.copyfile(HERE / "isolinux.cfg", dest / "isolinux.cfg")


def probe_kernel(cache: Path, log: Path) -> Path:
    """The pinned kernel alone, for the KVM probe of guests that bring no
    Linux kernel of their own (Windows); fetched and unpacked once."""
    target = cache / f"vmlinuz-{pins.KERNEL_RELEASE}"
    if not target.exists():
        packages = debs.fetch([pins.KERNEL], cache, log)
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            debs.extract(packages[pins.KERNEL.package], Path(tmp),
                         [f"boot/vmlinuz-{pins.KERNEL_RELEASE}"])
            os.replace(Path(tmp) / "boot" / f"vmlinuz-{pins.KERNEL_RELEASE}", target)
    return target
