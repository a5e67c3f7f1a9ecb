"""The QEMU device model of one machine, as an object; the only place that
renders it to argv.

Guest kinds fill a ``DeviceModel`` (machine type, CPU, memory, firmware,
kernel, disks, CD-ROMs, floppy, NIC, shares, the guest channel); stages add
what they own (the accelerator, how RAM is backed for the save method) and
``render()`` turns it into QEMU arguments. Values may be ``@token@``
placeholders (``qemu.saved.fill``): the snapshot stores the rendered
template and each revive fills in its own paths and port. Nobody parses argv
back; a change is made on the object and rendered again.

The serial console, QMP and ``-display`` belong to ``qemu.process.Qemu``.

``ARCHES`` is the one table of what differs between guest architectures
(QEMU binary, board, CPU, console, buses and the virtio transport, how the
installer boots, the kernel flavour and the Debian suite its packages come
from): nothing else branches on the architecture, it reads a row of this
table.

Every virtio disk carries its drive id (disk0, cd0, floppy0) as its serial
number: the guest finds it by that name (/sys/block/vdX/serial) whatever
order the board enumerates its devices in.
"""

import re
from dataclasses import dataclass, replace
from typing import Optional

from .smb1 import PORTS as SMB1_PORTS, SERVER as SMB1_SERVER


@dataclass(frozen=True)
class Arch:
    name: str                 # Debian's name: amd64, arm64, riscv64, armhf, ppc64el, s390x
    uname: str                # what `uname -m` says in the guest
    qemu: str                 # the system emulator
    qemu_package: str         # the Debian package that has it
    machine: str              # board alias; a versioned name is recorded when QEMU has one
    tcg_cpu: str              # the CPU model under TCG
    console: str              # the kernel's serial console device
    kernel_flavour: str       # linux-image-RELEASE-FLAVOUR
    suite: str                # the Debian release its pinned packages come from
    triplet: str              # multiarch library folder (lib/TRIPLET)
    # Install media: "ide" puts the ISO on the IDE CD-ROM and the answers on
    # the ISA floppy, booted by the firmware from the CD (isolinux, x86
    # only); "virtio" boots the installer's kernel directly and gives both
    # images as read-only virtio disks after the target disk.
    media_bus: str
    media_modules: "tuple[str, ...]"   # kernel modules the installer needs for them
    vmgenid: bool             # the board has ACPI for a VM generation ID device
    kernel_image: str = "vmlinuz"   # boot/NAME-RELEASE in the kernel package
    # How virtio devices attach: "pci" (virtio-blk-pci) or "ccw" (s390x's
    # channel I/O: virtio-blk-ccw), and the kernel modules of that transport.
    virtio: str = "pci"
    virtio_modules: "tuple[str, ...]" = ("virtio_pci",)
    # A CPU register whose timer QEMU 7.2 does not migrate: written back
    # with its own value after each revive, before the guest runs
    # (qemu.gdbstub). "" when the board's timers survive a save.
    timer_csr: str = ""
    # The first QEMU release whose revived copies of this board still get
    # timer interrupts; before it the loaded state's timer never fires and
    # nothing revive can write re-arms it. "" when every release does.
    timers_fixed_in: str = ""

    def lost_timers(self, qemu: str) -> "str | None":
        """Why a command in a copy this ``qemu`` revived may never end, for
        the message of a build past its deadline; None when it has timers."""
        have = re.match(r"(\d+)\.(\d+)", qemu or "")
        fixed = re.match(r"(\d+)\.(\d+)", self.timers_fixed_in)
        if not (have and fixed) or tuple(map(int, have.groups())) >= tuple(map(int, fixed.groups())):
            return None
        return (f"a revived {self.name} copy can lose its timer interrupts under QEMU {qemu} "
                f"(fixed in {self.timers_fixed_in}), and a sleep or a wait with a timeout "
                "in the guest then never ends; docs/architectures.md")

    def device(self, kind: str) -> str:
        """The QEMU device of a virtio ``kind`` (blk, net, 9p, serial)."""
        return f"virtio-{kind}-{self.virtio}"

    @property
    def media_devices(self) -> "tuple[str, str]":
        """The (CD, answers) block devices as the installer sees them: a
        path, or serial:ID for a virtio disk (its drive id)."""
        return ("/dev/sr0", "/dev/fd0") if self.media_bus == "ide" \
            else ("serial:cd0", "serial:floppy0")


ARCHES = {
    "amd64": Arch("amd64", "x86_64", "qemu-system-x86_64", "qemu-system-x86", "pc",
                  "qemu64", "ttyS0", "amd64", "bookworm", "x86_64-linux-gnu",
                  "ide", ("floppy", "ata_piix", "sr_mod"), vmgenid=True),
    # pauth-impdef: the default pointer-authentication algorithm costs TCG
    # 2.6-4x the boot time (shared/DESIGN.md).
    "arm64": Arch("arm64", "aarch64", "qemu-system-aarch64", "qemu-system-arm", "virt",
                  "max,pauth-impdef=on", "ttyAMA0", "arm64", "bookworm", "aarch64-linux-gnu",
                  "virtio", (), vmgenid=False),
    # bookworm has no riscv64; QEMU 7.2's virt board has no versioned name,
    # so its snapshot revives on the same QEMU version only (as all do).
    "riscv64": Arch("riscv64", "riscv64", "qemu-system-riscv64", "qemu-system-misc", "virt",
                    "rv64", "ttyS0", "riscv64", "trixie", "riscv64-linux-gnu",
                    "virtio", (), vmgenid=False, kernel_image="vmlinux", timer_csr="stimecmp"),
    # The LPAE kernel flavour, made for Cortex-A15-class CPUs such as this one.
    "armhf": Arch("armhf", "armv7l", "qemu-system-arm", "qemu-system-arm", "virt",
                  "cortex-a15", "ttyAMA0", "armmp-lpae", "bookworm", "arm-linux-gnueabihf",
                  "virtio", (), vmgenid=False),
    "ppc64el": Arch("ppc64el", "ppc64le", "qemu-system-ppc64", "qemu-system-ppc", "pseries",
                    "power9", "hvc0", "powerpc64le", "bookworm", "powerpc64le-linux-gnu",
                    "virtio", (), vmgenid=False, kernel_image="vmlinux",
                    timers_fixed_in="8.1"),     # 578912ad7312 "target/ppc: Migrate DECR SPR"
    # No PCI on this board by default: virtio over channel I/O, whose
    # driver is built into the kernel (CONFIG_S390_GUEST, no module).
    "s390x": Arch("s390x", "s390x", "qemu-system-s390x", "qemu-system-misc", "s390-ccw-virtio",
                  "qemu", "ttysclp0", "s390x", "bookworm", "s390x-linux-gnu",
                  "virtio", (), vmgenid=False, virtio="ccw", virtio_modules=()),
}


def arch(name: str) -> Arch:
    return ARCHES[name]


def opt(value) -> str:
    """A value inside a QEMU option list: commas are doubled."""
    return str(value).replace(",", ",,")


@dataclass(frozen=True)
class Disk:
    file: str
    format: str = "qcow2"
    bootindex: Optional[int] = None


@dataclass(frozen=True)
class Nic:
    model: str                        # virtio-net-pci, e1000e, rtl8139
    forward_ssh: Optional[str] = None  # host port (or @port@) forwarded to guest port 22
    smb: Optional[str] = None          # folder QEMU's smbd serves at \\10.0.2.4\qemu
    # XP/2003: the smbd command line slirp starts per connection to
    # 10.0.2.4:139/445, with the socket on its stdin (qemu/smb1.py)
    smb1: Optional[str] = None
    mac: Optional[str] = None


@dataclass(frozen=True)
class NinePShare:
    tag: str
    path: str
    readonly: bool


@dataclass(frozen=True)
class SerialPort:
    """A virtio-serial port on a unix socket QEMU listens on."""
    name: str                         # the port's name in the guest
    socket: str


@dataclass(frozen=True)
class Firmware:
    code: str                         # OVMF_CODE, read-only
    vars: str                         # this VM's writable copy of OVMF_VARS


@dataclass(frozen=True)
class Kernel:
    kernel: str
    initrd: str
    append: str


@dataclass(frozen=True)
class DeviceModel:
    arch: str = "amd64"               # a key of ARCHES: which QEMU binary runs it
    machine: str = "pc"
    storage: str = "virtio"           # virtio | ahci | ide: where disks and CDs hang
    memory_mb: int = 512
    cpus: int = 1
    cpu: str = "qemu64"
    accel: str = "tcg"
    ram_file: Optional[str] = None    # memory-backend-file (the "file" save method)
    ram_share: str = "on"
    firmware: Optional[Firmware] = None
    kernel: Optional[Kernel] = None
    disks: "tuple[Disk, ...]" = ()
    cdroms: "tuple[Disk, ...]" = ()
    floppy: Optional[str] = None
    floppy_controller: bool = False   # q35 has no built-in floppy controller
    nic: Optional[Nic] = None
    shares: "tuple[NinePShare, ...]" = ()
    # Empty CD drives on one virtio-scsi controller, one per read-only share
    # named, drive N at SCSI target N: a big share's ext2 image goes into its
    # drive at revive (QMP blockdev-change-medium), so the saved state must
    # have the drives already.
    tree_drives: "tuple[str, ...]" = ()
    serial_ports: "tuple[SerialPort, ...]" = ()
    usb_tablet: Optional[str] = None  # "uhci" (pc) | "xhci" (q35)
    rtc: Optional[str] = None
    vga: Optional[str] = None
    boot_cd: bool = False             # boot the first CD-ROM (BIOS -boot d)
    no_reboot: bool = False
    vmgenid: bool = False

    def with_(self, **changes) -> "DeviceModel":
        return replace(self, **changes)

    @property
    def binary(self) -> str:
        return ARCHES[self.arch].qemu

    def render(self) -> "list[str]":
        machine = f"{self.machine},accel={self.accel}"
        if self.ram_file is not None:
            machine += ",memory-backend=ram0"
        argv = ["-machine", machine, "-cpu", self.cpu, "-smp", str(self.cpus),
                "-m", f"{self.memory_mb}M"]
        if self.ram_file is not None:
            argv += ["-object", f"memory-backend-file,id=ram0,size={self.memory_mb}M,"
                                f"mem-path={opt(self.ram_file)},share={self.ram_share}"]
        if self.no_reboot:
            argv.append("-no-reboot")
        if self.boot_cd:
            argv += ["-boot", "d"]
        if self.firmware:
            argv += ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,"
                               f"file={opt(self.firmware.code)}",
                     "-drive", f"if=pflash,format=raw,unit=1,file={opt(self.firmware.vars)}"]
        if self.kernel:
            argv += ["-kernel", self.kernel.kernel, "-initrd", self.kernel.initrd,
                     "-append", self.kernel.append]
        argv += self._storage()
        argv += self._floppy()
        argv += self._network()
        arch = ARCHES[self.arch]
        for share in self.shares:
            # Inputs are read as the host has them; the exchange folder keeps
            # the guest's owners and modes in xattrs (mapped-xattr), so a
            # non-root build user owns what it creates.
            access = "security_model=none,readonly=on" if share.readonly \
                else "security_model=mapped-xattr"
            argv += ["-fsdev", f"local,id=fs_{share.tag},path={opt(share.path)},{access}",
                     "-device", f"{arch.device('9p')},fsdev=fs_{share.tag},mount_tag={share.tag}"]
        if self.tree_drives:
            argv += ["-device", f"{arch.device('scsi')},id=trees"]
            for n in range(len(self.tree_drives)):
                argv += ["-drive", f"if=none,id=tree{n},media=cdrom,readonly=on",
                         "-device", f"scsi-cd,bus=trees.0,channel=0,scsi-id={n},lun=0,"
                                    f"drive=tree{n},id={tree_drive(n)}"]
        if self.serial_ports:
            argv += ["-device", f"{arch.device('serial')},id=vserial0"]
            for n, port in enumerate(self.serial_ports):
                argv += ["-chardev", f"socket,id=ch{n},path={opt(port.socket)},server=on,wait=off",
                         "-device", f"virtserialport,bus=vserial0.0,chardev=ch{n},"
                                    f"id=port{n},name={port.name}"]
        if self.vmgenid:
            # A fresh VM generation ID at every QEMU start (guid=auto): after
            # revive QEMU writes it into guest memory and raises the ACPI
            # notification, and the kernel's vmgenid driver reseeds its RNG.
            argv += ["-device", "vmgenid,guid=auto"]
        if self.usb_tablet == "uhci":
            argv += ["-usb", "-device", "usb-tablet"]
        elif self.usb_tablet == "xhci":
            argv += ["-device", "qemu-xhci,id=xhci", "-device", "usb-tablet,bus=xhci.0"]
        if self.rtc:
            argv += ["-rtc", self.rtc]
        if self.vga:
            argv += ["-vga", self.vga]
        return argv

    def _storage(self) -> "list[str]":
        argv = []
        if self.storage == "virtio":
            blk = ARCHES[self.arch].device("blk")
            for n, disk in enumerate(self.disks):
                argv += ["-drive", f"if=none,id=disk{n},format={disk.format},file={opt(disk.file)}",
                         "-device", f"{blk},drive=disk{n},serial=disk{n}"
                         + (f",bootindex={disk.bootindex}" if disk.bootindex else "")]
            if ARCHES[self.arch].media_bus == "virtio":
                # No IDE on these boards: the media are read-only virtio
                # disks after the target disk, found by their serials.
                for n, cd in enumerate(self.cdroms):
                    argv += _virtio_readonly(blk, f"cd{n}", cd.format, cd.file)
                return argv
            # CD-ROMs on the PIIX IDE controller's secondary master.
            for n, cd in enumerate(self.cdroms):
                argv += ["-drive", f"if=ide,index={2 + n},media=cdrom,readonly=on,"
                                   f"format={cd.format},file={opt(cd.file)}"]
            return argv
        if self.storage == "ahci":
            argv += ["-device", "ahci,id=ahci"]
            slots = [f"bus=ahci.{n}" for n in range(6)]
        else:
            slots = ["bus=ide.0,unit=0", "bus=ide.0,unit=1", "bus=ide.1,unit=0",
                     "bus=ide.1,unit=1"]
            # The disk first, then the CDs on the secondary channel.
            slots = [slots[0], slots[2], slots[3], slots[1]]
        used = 0
        for n, disk in enumerate(self.disks):
            argv += ["-drive", f"if=none,id=disk{n},format={disk.format},file={opt(disk.file)}",
                     "-device", f"ide-hd,drive=disk{n},{slots[used]}"
                     + (f",bootindex={disk.bootindex}" if disk.bootindex else "")]
            used += 1
        for n, cd in enumerate(self.cdroms):
            argv += ["-drive", f"if=none,id=cd{n},media=cdrom,readonly=on,format={cd.format},"
                               f"file={opt(cd.file)}",
                     "-device", f"ide-cd,drive=cd{n},{slots[used]},bootindex={used + 1}"]
            used += 1
        return argv

    def _floppy(self) -> "list[str]":
        if self.floppy is None:
            return []
        if ARCHES[self.arch].media_bus == "virtio":
            return _virtio_readonly(ARCHES[self.arch].device("blk"), "floppy0", "raw",
                                    self.floppy)
        if self.firmware is not None:
            raise ValueError("no floppy under UEFI: OVMF has no floppy driver")
        if not self.floppy_controller:     # the pc machine has one built in
            return ["-drive", f"if=floppy,format=raw,readonly=on,file={opt(self.floppy)}"]
        return ["-device", "isa-fdc,id=fdc0",
                "-drive", f"if=none,id=floppy0,format=raw,readonly=on,file={opt(self.floppy)}",
                "-device", "floppy,drive=floppy0,bus=fdc0.0"]

    def _network(self) -> "list[str]":
        if self.nic is None:
            return ["-nic", "none"]
        # restrict=on: the guest reaches no host service and nothing beyond.
        netdev = "user,id=net0,restrict=on"
        if self.nic.smb is not None:
            netdev += f",smb={opt(self.nic.smb)}"
        if self.nic.smb1 is not None:
            # A guest forward is a connection the guest opens: restrict=on
            # lets it through and nothing else. One per port, as smb= does.
            for port in SMB1_PORTS:
                netdev += f",guestfwd=tcp:{SMB1_SERVER}:{port}-cmd:{opt(self.nic.smb1)}"
        if self.nic.forward_ssh is not None:
            netdev += f",hostfwd=tcp:127.0.0.1:{self.nic.forward_ssh}-:22"
        device = f"{self.nic.model},netdev=net0"
        if self.nic.mac:
            device += f",mac={self.nic.mac}"
        return ["-netdev", netdev, "-device", device]



def tree_drive(n: int) -> str:
    """The qdev id of tree drive ``n`` (QMP's blockdev-change-medium names it)."""
    return f"treecd{n}"


def _virtio_readonly(device: str, name: str, format: str, file: str) -> "list[str]":
    return ["-drive", f"if=none,id={name},format={format},readonly=on,file={opt(file)}",
            "-device", f"{device},drive={name},serial={name}"]
