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
"""

from dataclasses import dataclass, replace
from typing import Optional

from .smb1 import PORTS as SMB1_PORTS, SERVER as SMB1_SERVER


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
    # 10.0.2.4:139/445, with the socket on its stdin (machine/smb1.py)
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
    serial_ports: "tuple[SerialPort, ...]" = ()
    usb_tablet: Optional[str] = None  # "uhci" (pc) | "xhci" (q35)
    rtc: Optional[str] = None
    vga: Optional[str] = None
    boot_cd: bool = False             # boot the first CD-ROM (BIOS -boot d)
    no_reboot: bool = False
    vmgenid: bool = False

    def with_(self, **changes) -> "DeviceModel":
        return replace(self, **changes)

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
        for share in self.shares:
            # Inputs are read as the host has them; the exchange folder keeps
            # the guest's owners and modes in xattrs (mapped-xattr), so a
            # non-root build user owns what it creates.
            access = "security_model=none,readonly=on" if share.readonly \
                else "security_model=mapped-xattr"
            argv += ["-fsdev", f"local,id=fs_{share.tag},path={opt(share.path)},{access}",
                     "-device", f"virtio-9p-pci,fsdev=fs_{share.tag},mount_tag={share.tag}"]
        if self.serial_ports:
            argv += ["-device", "virtio-serial-pci,id=vserial0"]
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
            for n, disk in enumerate(self.disks):
                argv += ["-drive", f"if=none,id=disk{n},format={disk.format},file={opt(disk.file)}",
                         "-device", f"virtio-blk-pci,drive=disk{n}"
                         + (f",bootindex={disk.bootindex}" if disk.bootindex else "")]
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

