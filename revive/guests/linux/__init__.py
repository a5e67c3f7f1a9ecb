"""What Linux guests (tiny, debian) share: the installer and kernel
(``installer``, ``pins``, ``kmod``, ``elf``), the answer floppy
(``answers``), the device model of install and of the installed system, the
console markers, and share mounting.

The installed system is booted with the payload's own kernel and initramfs
(QEMU ``-kernel``/``-initrd``): the disk needs no bootloader, and the kernel
that revive boots is the one pinned in the payload.
"""

import os
import shlex
from pathlib import Path

from ...channel import agent
from ...qemu.devices import ARCHES, Arch, DeviceModel, Disk, Kernel, Nic, NinePShare, SerialPort
from ..base import GuestKind
from . import answers, installer

INSTALL_OK = "REVIVE-INSTALL-OK"
INSTALL_FAILED = "REVIVE-INSTALL-FAILED"
HOSTKEY = "REVIVE-HOSTKEY "
# The installed system's kernel and initramfs, relative to artifacts/: every
# boot and revive reads them.
BOOT_KERNEL = "payload/boot/vmlinuz"
BOOT_INITRD = "payload/boot/initrd.img"
# The installer runs from RAM; the memory the guest gets later is [vm] memory.
INSTALL_MEMORY_MB = 1024


def tree_slots(shares) -> "dict[str, int]":
    """The read-only 9p shares, each with the empty CD drive (at SCSI target
    N of the virtio-scsi controller) that its ext2 image goes into when its
    folder is big (revive.core.treeimage)."""
    readonly = [s.name for s in shares if s.mode == "ro" and s.transport == "9p"]
    return {name: n for n, name in enumerate(readonly)}


def tree_device(n: int) -> str:
    """Shell: set $__rv_dev to the block device of tree drive ``n`` (sr0,
    ...), found through the virtio-scsi controller's own SCSI host (a
    board's IDE or SATA hosts have targets 0:N too), or to nothing. A glob
    and builtins: no process (each pays TCG's translation after a revive)."""
    return ("__rv_dev=; for __rv_b in /sys/bus/virtio/drivers/virtio_scsi/virtio*/host*/"
            f"target*/*:0:{n}:0/block/*; do [ -e \"$__rv_b\" ] && __rv_dev=${{__rv_b##*/}}; done")


def _tree_present(name: str, n: int) -> str:
    return (f"{{ {tree_device(n)}; [ -n \"$__rv_dev\" ]; }} || {{ echo \"revive: share {name}: "
            f"no CD drive at SCSI target {n} of the virtio-scsi controller (kernel modules "
            f"virtio_scsi and sr_mod loaded?)\"; false; }}")


def mount_command(shares, trees: "dict[str, int] | None" = None,
                  program=lambda name: name) -> str:
    """Mount every share (9p by tag; SMB from QEMU's built-in server; a
    share named in ``trees`` from the ext2 image in its CD drive), with
    ``program(name)`` as the guest's mount and mkdir."""
    mount, mkdir = program("mount"), program("mkdir")
    steps = []
    trees = trees or {}
    for s in shares:
        guest = shlex.quote(s.guest)
        if s.name in trees:
            n = trees[s.name]
            steps.append(f"{_tree_present(s.name, n)} && {{ [ -d {guest} ] || mkdir -p {guest}; }} "
                         f"&& mount -t ext2 -o ro,nodev,nosuid /dev/\"$__rv_dev\" {guest}")
        elif s.transport == "9p":
            steps.append(f"{{ [ -d {guest} ] || {mkdir} -p {guest}; }} && {mount} -t 9p -o trans=virtio,version=9p2000.L,"
                         f"msize=262144,{s.mode} {s.name} {guest}")
        else:
            # QEMU's smbd serves one folder as \\10.0.2.4\qemu; each share is
            # a subfolder. No mount.cifs helper: the kernel wants username=
            # (an empty password makes it a guest logon) and the address.
            steps.append(f"{{ [ -d {guest} ] || {mkdir} -p {guest}; }} && {mount} -t cifs //10.0.2.4/qemu/{s.name} {guest} "
                         f"-o username=guest,password=,vers=3.0,ip=10.0.2.4,{s.mode},"
                         # Files show as root's; a non-root build user must still
                         # write and chmod in the exchange folder.
                         "file_mode=0777,dir_mode=0777,noperm")
    return " && ".join(steps) or "true"


def clock_command(now: float, date: str = "date") -> str:
    """Set the guest clock to ``now`` (UTC) with the guest's ``date``.
    busybox and GNU date both take whole seconds after '@' (neither takes
    a fraction); rounding keeps the guest within half a second. A failure
    ends the step with a message."""
    return (f"{date} -u -s @{round(now)} >/dev/null || "
            "{ echo 'revive: setting the guest clock failed'; exit 1; }")


def entropy_command(seed: bytes) -> str:
    """Mix host randomness into the guest's pool (the fallback beside
    vmgenid): printf with octal escapes works in busybox sh and dash."""
    data = "".join(f"\\{b:03o}" for b in seed)
    return (f"printf '{data}' > /dev/urandom || "
            "{ echo 'revive: writing host entropy to /dev/urandom failed'; exit 1; }")


def unmount_command(shares, umount: str = "umount") -> str:
    """Unmount every share; fails when one stays mounted."""
    return " && ".join(f"{umount} {shlex.quote(s.guest)}" for s in shares) or "true"


def parse_host_key(console: str) -> "str | None":
    for line in console.splitlines():
        if HOSTKEY in line:
            fields = line.split(HOSTKEY, 1)[1].split()
            if len(fields) >= 2:
                return f"{fields[0]} {fields[1]}"
    return None


class LinuxKind(GuestKind):
    """A Linux guest kind: a subclass brings its payload; this class holds
    what all share."""

    # A statically linked busybox in the installed system whose applets run
    # the steps around a command (``program``), or None: the programs on
    # the guest's PATH. After a revive every program the guest starts pays
    # TCG's translation again, a dynamically linked one for its loader and
    # libraries too.
    busybox: "str | None" = None

    def program(self, name: str) -> str:
        return f"{self.busybox} {name}" if self.busybox else name

    @property
    def iso_boot(self):
        # isolinux only where the firmware boots the ISO (x86).
        return installer.ISO_BOOT if self.arch().media_bus == "ide" else None

    def arch(self) -> Arch:
        # A kind without a [guest] arch key is amd64.
        return ARCHES[getattr(self.settings, "arch", None) or "amd64"]

    # -- media -------------------------------------------------------------
    def floppy_files(self, inputs, public_key: str) -> "dict[str, bytes]":
        return answers.answer_files({
            "hostname": inputs["answers.hostname"], "user": inputs["answers.user"],
            # The install's target disk, by its virtio serial (its drive id).
            "disk": {"device": "serial:disk0", "filesystem": "ext2"},
            "ssh_public_key": public_key})

    # -- install -----------------------------------------------------------
    def probe_kernel(self, paths) -> Path:
        return paths.payload / "boot" / "vmlinuz"

    def install_devices(self, inputs, paths, disk: Path) -> DeviceModel:
        arch = self.arch()
        devices = DeviceModel(arch=arch.name, machine=arch.machine,
                              memory_mb=INSTALL_MEMORY_MB, no_reboot=True,
                              cdroms=(Disk(str(paths.iso), "raw"),), floppy=str(paths.floppy),
                              disks=(Disk(str(disk)),))
        if arch.media_bus == "ide":
            return devices.with_(boot_cd=True)     # isolinux on the ISO
        # No isolinux here: QEMU boots the installer the ISO carries.
        iso = paths.payload / "iso"
        return devices.with_(kernel=Kernel(str(iso / "vmlinuz"), str(iso / "install.img"),
                                           installer.install_cmdline(arch)))

    def install_report(self, console: str) -> dict:
        failed = next((l.split(INSTALL_FAILED, 1)[1].strip()
                       for l in console.splitlines() if INSTALL_FAILED in l), None)
        steps = [l for l in console.splitlines() if l.startswith("revive:")]
        return {"done": INSTALL_OK in console, "failed": failed,
                "host_key": parse_host_key(console), "step": steps[-1] if steps else None}

    # -- snapshot and builds -----------------------------------------------
    def installed_devices(self, inputs) -> DeviceModel:
        shares = inputs["shares"].values()
        smb = "@smb@" if any(s.transport == "smb" for s in shares) else None
        arch = self.arch()
        return DeviceModel(
            arch=arch.name, machine=arch.machine, memory_mb=inputs["vm.memory"],
            cpus=inputs["vm.cpus"],
            kernel=Kernel(f"@artifacts@/{BOOT_KERNEL}", f"@artifacts@/{BOOT_INITRD}",
                          installer.boot_cmdline(arch)),
            disks=(Disk("@disk@"),), vmgenid=arch.vmgenid,
            nic=Nic(arch.device("net"), forward_ssh="@port@", smb=smb, mac="52:54:00:12:34:56"),
            shares=tuple(NinePShare(s.name, f"@share.{s.name}@", readonly=s.mode == "ro")
                         for s in shares if s.transport == "9p") + self._agent_share(inputs),
            tree_drives=tuple(tree_slots(shares)), serial_ports=self._agent_port(inputs))

    def revive_files(self) -> "tuple[str, ...]":
        return (BOOT_KERNEL, BOOT_INITRD)

    # [vm] channel = "agent" (issue 9): qemu-ga's virtio-serial port, the
    # resident runner's (a revived copy's first command), and the hidden
    # read-write share a command's output streams through.
    def _agent_port(self, inputs) -> "tuple[SerialPort, ...]":
        if inputs["vm.channel"] != "agent":
            return ()
        return (SerialPort(agent.PORT_NAME, "@agent-socket@"),
                SerialPort(agent.RUNNER_PORT, agent.RUNNER_SOCKET))

    def _agent_share(self, inputs) -> "tuple[NinePShare, ...]":
        if inputs["vm.channel"] != "agent":
            return ()
        return (NinePShare(agent.STREAM_TAG, "@agent-stream@", readonly=False),)

    def prepare_shares(self, shares) -> str:
        # The tree drives are empty now; each must be there for its image.
        present = [_tree_present(name, n) for name, n in tree_slots(shares).items()]
        # The page cache is dropped (a smaller snapshot), but for the busybox
        # that runs the steps after a revive: read back, a revived copy does
        # not wait for its pages from the disk image.
        warm = f" && cat {self.busybox} >/dev/null" if self.busybox else ""
        return (" && ".join([*present, mount_command(shares, program=self.program),
                             unmount_command(shares, self.program("umount"))])
                + " && sync && echo 3 > /proc/sys/vm/drop_caches" + warm)

    def after_revive(self, shares, now: float, trees: "dict[str, int] | None" = None) -> str:
        # A revived guest's clock is where the snapshot left it, and its
        # random state is the snapshot's (vmgenid reseeds; host entropy too).
        return (f"{clock_command(now, self.program('date'))}; "
                f"{entropy_command(os.urandom(64))}; "
                f"{mount_command(shares, trees, self.program)}")

    def before_keep(self, shares) -> str:
        return f"sync && {unmount_command(shares, self.program('umount'))}"

    def command_line(self, command: str, env: "dict[str, str]", user: str, shares=()) -> str:
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        prefix = f"export {exports}; " if exports else ""
        if user != "root":
            return f"{prefix}exec su -s /bin/sh {shlex.quote(user)} -c {shlex.quote(command)}"
        return prefix + command
