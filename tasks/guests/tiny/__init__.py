"""The "tiny" guest: a Debian kernel, busybox and dropbear, assembled on the
host from pinned bookworm packages, without root.

Install: isolinux on the ISO boots the Debian kernel with ``install.img``,
whose /init (``installer-init``) reads the answer floppy, writes the system
archive (``system.cpio``) onto one ext2 partition of the virtio disk, makes
the SSH host key in the guest, prints ``REVIVE-HOSTKEY …`` and
``REVIVE-INSTALL-OK`` (or ``REVIVE-INSTALL-FAILED <what>``) on the serial
console and powers off.

Boot: the disk has no bootloader. QEMU gets ``boot/vmlinuz``,
``boot/initrd.img`` (``boot-init``: disk drivers, then switch_root) and
``boot_cmdline()``; the system's ``etc/init.d/rcS`` starts dropbear and
prints ``REVIVE-READY``.
"""

import json
import os
import shutil
import tempfile
from pathlib import Path

from tasks.core.errors import UserError
from tasks.formats.cpio import Archive
from tasks.guests import debs

from . import kmod, pins
from .elf import interpreter, needed

HERE = Path(__file__).resolve().parent

ISO_BOOT = {"image": "isolinux/isolinux.bin", "catalog": "isolinux/boot.cat"}

# Kernel modules by the names a person would look for; their dependencies
# (and which of them are built into the kernel) come from the modules'
# own metadata.
INSTALLER_MODULES = [
    "floppy", "vfat", "nls_cp437", "nls_ascii",          # the answer floppy
    "ata_piix", "sr_mod", "isofs",                       # the install CD
    "virtio_pci", "virtio_blk", "ext4",                  # the target disk
]
BOOT_MODULES = ["virtio_pci", "virtio_blk", "ext4"]
SYSTEM_MODULES = [
    "virtio_net", "af_packet",                           # SSH
    "9p", "9pnet_virtio",                                # 9p shares
    "cifs", "nls_utf8",                                  # SMB shares
    # SMB 3 signing/encryption builds gcm(aes) and ccm(aes) at mount time;
    # the templates' own parts are not declared anywhere in modinfo.
    "ctr", "ghash_generic",
    "virtio_console",                                    # qemu-ga's virtio-serial port
]

# The system's programs, whose shared libraries are found like ldd would.
SYSTEM_PROGRAMS = ["usr/sbin/dropbear", "usr/bin/dropbearkey", "usr/sbin/qemu-ga"]
LIBRARY_DIRS = ["lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib", "usr/lib"]
ISOLINUX_BIN = "usr/lib/ISOLINUX/isolinux.bin"
LDLINUX_C32 = "usr/lib/syslinux/modules/bios/ldlinux.c32"

# Folders of the installed system that no package provides.
SYSTEM_DIRS = {"proc": 0o555, "sys": 0o555, "dev": 0o755, "tmp": 0o1777,
               "run": 0o755, "root": 0o700, "home": 0o755, "mnt": 0o755,
               "var/log": 0o755, "etc/dropbear": 0o700, "etc/revive": 0o755}


def source_files() -> "list[Path]":
    """The repository files that shape the payload (file_dep of its task)."""
    own = [p for p in HERE.rglob("*")
           if p.is_file() and "__pycache__" not in p.parts]
    return sorted(own) + [Path(debs.__file__).resolve(),
                          HERE.parent.parent / "formats" / "cpio.py"]


def boot_cmdline() -> str:
    return "console=ttyS0 root=/dev/vda1 rw quiet"


# --- the payload ----------------------------------------------------------

def build_payload(cache: Path, out: Path, log: Path) -> None:
    """Fetch the pinned packages into ``cache`` and write the ISO tree
    (``out/iso``), the boot kernel and initramfs (``out/boot``) and
    ``out/manifest.json`` into the empty folder ``out``."""
    cache, out = Path(cache), Path(out)
    packages = debs.fetch(pins.ALL, cache, log, pinned_in="tasks/guests/tiny/pins.py")
    (out / "iso" / "isolinux").mkdir(parents=True)
    (out / "boot").mkdir()
    with tempfile.TemporaryDirectory(prefix="tiny-payload-", dir=cache) as tmp:
        work = Path(tmp)
        kernel = _unpack_kernel(packages, work / "kernel")
        modules = kmod.ModuleIndex(kernel / "lib/modules" / pins.KERNEL_RELEASE)
        userland = _unpack(packages, [pins.BUSYBOX, pins.DROPBEAR, *pins.LIBRARIES,
                                      pins.QEMU_GA, *pins.AGENT_LIBRARIES],
                           work / "userland")
        busybox = (userland / "bin/busybox").read_bytes()

        _initramfs(busybox, HERE / "installer-init", modules, INSTALLER_MODULES,
                   work / "installer-modules").write(out / "iso/install.img", compress=True)
        _initramfs(busybox, HERE / "boot-init", modules, BOOT_MODULES,
                   work / "boot-modules").write(out / "boot/initrd.img", compress=True)
        _system(userland, modules, work / "system-modules").write(out / "iso/system.cpio")

        vmlinuz = kernel / "boot" / f"vmlinuz-{pins.KERNEL_RELEASE}"
        shutil.copyfile(vmlinuz, out / "iso/vmlinuz")
        shutil.copyfile(vmlinuz, out / "boot/vmlinuz")
        _isolinux(packages, work / "isolinux", out / "iso/isolinux")
    _write_manifest(out / "manifest.json")


def _unpack(packages: "dict[str, Path]", which: "list[debs.Pin]", dest: Path,
            members=None) -> Path:
    for pin in which:
        debs.extract(packages[pin.package], dest, members)
    return dest


def _unpack_kernel(packages: "dict[str, Path]", dest: Path) -> Path:
    release = pins.KERNEL_RELEASE
    _unpack(packages, [pins.KERNEL], dest,
            members=[f"boot/vmlinuz-{release}", f"lib/modules/{release}"])
    if not (dest / "boot" / f"vmlinuz-{release}").exists():
        raise UserError(f"{pins.KERNEL.package} has no kernel {release}: make "
                        "KERNEL_RELEASE match KERNEL in tasks/guests/tiny/pins.py")
    return dest


def _modules(archive: Archive, index: kmod.ModuleIndex, wanted: "list[str]",
             staging: Path) -> None:
    """Add the modules ``wanted`` needs, a modules.dep for them, and
    /etc/modules: the wanted ones that are not built in, for the init
    scripts to modprobe in order."""
    try:
        kmod.install(index, wanted, pins.KERNEL_RELEASE, staging)
    except KeyError as err:
        raise UserError(f"{err.args[0]}: update the module lists in "
                        "tasks/guests/tiny/__init__.py for the pinned kernel") from None
    archive.add_tree(staging)
    loadable = [m.name for m in map(index.resolve, wanted) if m is not None]
    archive.file("etc/modules", "".join(f"{m}\n" for m in loadable).encode())


def _initramfs(busybox: bytes, init: Path, index: kmod.ModuleIndex,
               wanted: "list[str]", staging: Path) -> Archive:
    archive = Archive()
    # The kernel opens /dev/console for init before anything is mounted.
    archive.char_device("dev/console", 5, 1)
    archive.file("bin/busybox", busybox, 0o755)
    archive.symlink("bin/sh", "busybox")
    archive.file("init", init.read_bytes(), 0o755)
    _modules(archive, index, wanted, staging)
    return archive


def _system(userland: Path, index: kmod.ModuleIndex, staging: Path) -> Archive:
    """The installed system: busybox (its applet links are made at install
    time by ``busybox --install -s``), dropbear and its libraries, the etc/
    files beside this module, and the modules for disk, network and shares."""
    archive = Archive()
    for path, mode in SYSTEM_DIRS.items():
        archive.dir(path, mode)
    archive.char_device("dev/console", 5, 1)
    archive.char_device("dev/null", 1, 3, 0o666)
    archive.file("bin/busybox", (userland / "bin/busybox").read_bytes(), 0o755)
    archive.symlink("bin/sh", "busybox")
    archive.symlink("sbin/init", "../bin/busybox")
    for path in SYSTEM_PROGRAMS + shared_libraries(userland, SYSTEM_PROGRAMS):
        _copy_into(archive, userland, path)
    _add_repo_files(archive, HERE / "etc", "etc")
    _modules(archive, index, BOOT_MODULES + SYSTEM_MODULES, staging)
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


def shared_libraries(root: Path, programs: "list[str]") -> "list[str]":
    """The library files (symlinks and what they point to) and the dynamic
    loader that ``programs`` load, as paths relative to ``root``."""
    found: "list[str]" = []
    queue = list(programs)
    while queue:
        real = _resolve(root, queue.pop())
        loader = interpreter(root / real)
        names = needed(root / real) + ([loader] if loader else [])
        for name in names:
            path = _find_library(root, name)
            for step in _symlink_chain(root, path):
                if step not in found:
                    found.append(step)
                    queue.append(step)
    return sorted(found)


def _find_library(root: Path, name: str) -> str:
    if name.startswith("/"):
        candidates = [name.lstrip("/")]
    else:
        candidates = [f"{d}/{name}" for d in LIBRARY_DIRS]
    for rel in candidates:
        if os.path.lexists(root / rel):
            return rel
    raise UserError(f"no package in tasks/guests/tiny/pins.py provides {name}: "
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


def _isolinux(packages: "dict[str, Path]", staging: Path, dest: Path) -> None:
    _unpack(packages, [pins.ISOLINUX, pins.SYSLINUX_COMMON], staging,
            members=[ISOLINUX_BIN, LDLINUX_C32])
    shutil.copyfile(staging / ISOLINUX_BIN, dest / "isolinux.bin")
    shutil.copyfile(staging / LDLINUX_C32, dest / "ldlinux.c32")
    shutil.copyfile(HERE / "isolinux.cfg", dest / "isolinux.cfg")


def _write_manifest(target: Path) -> None:
    manifest = {
        "guest": "tiny",
        "kernel_release": pins.KERNEL_RELEASE,
        "boot_cmdline": boot_cmdline(),
        "packages": [{"package": p.package, "version": p.version,
                      "arch": p.arch, "sha256": p.sha256} for p in pins.ALL],
    }
    target.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


# --- the answers ----------------------------------------------------------

def answer_files(answers: dict) -> "dict[str, bytes]":
    """The answer floppy's files (8.3 upper-case names).

    REVIVE.CFG holds ``KEY='value'`` lines that the installer sources: every
    value is single-quoted (a quote inside becomes ``'\\''``), so no value
    can run a command. The installer still checks each value before use.
    """
    key = answers["ssh_public_key"].strip()
    if "\n" in key or not key.startswith("ssh-"):
        raise UserError("answers: ssh_public_key must be one OpenSSH public "
                        "key line (ssh-ed25519 AAAA…)")
    settings = {
        "REVIVE_HOSTNAME": answers["hostname"],
        "REVIVE_USER": answers["user"],
        "REVIVE_DISK": answers["disk"]["device"],
        "REVIVE_FILESYSTEM": answers["disk"]["filesystem"],
    }
    return {
        "REVIVE.CFG": config_file(settings),
        "AUTHKEYS": (key + "\n").encode(),
        "SHARES": "".join(_share_line(s) for s in answers.get("shares", [])).encode(),
    }


def config_file(settings: "dict[str, str]") -> bytes:
    lines = ["# revive answers, sourced by the tiny guest's installer\n"]
    for name, value in settings.items():
        value = str(value)
        if "\0" in value:
            raise UserError(f"answers: {name} contains a NUL character")
        lines.append(f"{name}={shell_quote(value)}\n")
    return "".join(lines).encode()


def shell_quote(value: str) -> str:
    """Always single-quoted (unlike shlex.quote, which leaves safe words
    bare), so every line of the file has the same shape."""
    return "'" + value.replace("'", "'\\''") + "'"


def _share_line(share: dict) -> str:
    fields = [share["name"], share["guest"], share["mode"], share["transport"]]
    if any(not f or any(c.isspace() for c in f) for f in fields):
        raise UserError(f"answers: share {share['name']!r}: name and guest "
                        "path must be non-empty and contain no spaces")
    if share["mode"] not in ("ro", "rw") or share["transport"] not in ("9p", "smb"):
        raise UserError(f"answers: share {share['name']!r}: mode must be ro|rw "
                        "and transport 9p|smb")
    return " ".join(fields) + "\n"


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
