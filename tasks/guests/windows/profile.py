"""The QEMU device model of a Windows guest, as an argv list (no binary).

Only devices Windows drives from its install media, so no driver disk:

- Vista and later: ``q35``, disk and CDs on AHCI, NIC e1000e, USB tablet on
  xHCI (absolute pointer).
- XP / Server 2003: ``pc``, disk and CDs on the PIIX IDE controller (XP has
  no AHCI driver), NIC rtl8139 (XP has no driver for QEMU's e1000, the
  82540EM; VirtualBox's manual says the same of that chip), USB tablet on
  the PIIX UHCI.

The disk is first in the boot order: while it is empty firmware falls
through to the install CD, and once Setup has written it Windows boots from
it without the CD's "press any key" prompt. UEFI uses Debian's ``ovmf``
(CODE read-only, a per-VM copy of VARS); the floppy exists only under BIOS
(OVMF has no floppy driver). User networking with ``restrict=on``; ``smb=``
makes QEMU serve one folder at \\\\10.0.2.4\\qemu. Checked with QEMU 7.2.
Serial port, display, QMP and the accelerator are the machine module's.
"""

import shutil
from pathlib import Path
from typing import Optional

from .settings import WindowsSettings

OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")


# The CPU under TCG, per Windows family. Windows 11 24H2 and Server 2025
# stop at boot without SSE4.2 and POPCNT, which QEMU's default qemu64 lacks.
# Nehalem-v1 is the oldest named model with both; QEMU 7.2's TCG runs every
# feature of it (`-cpu Nehalem-v1,check=on,enforce=on` starts without a
# warning, while SandyBridge and later ask for x2apic/tsc-deadline TCG lacks
# and Nehalem-v2 for spec-ctrl). The versioned name keeps a snapshot's CPU
# the same on a later QEMU. Every version from Vista on runs on it; XP and
# Server 2003 keep qemu64, the CPU they have always been installed on here.
# Under KVM the host's own CPU ("host"): nothing is emulated.
TCG_CPU = {"nt5": "qemu64", "nt6.0": "Nehalem-v1", "nt6.1": "Nehalem-v1",
           "nt6.2+": "Nehalem-v1"}


def cpu_model(s: WindowsSettings, accel: str) -> str:
    """The ``-cpu`` model for this Windows under this accelerator."""
    return "host" if accel == "kvm" else TCG_CPU[s.family]


def _opt(value) -> str:
    """A value inside a QEMU option list: commas are doubled."""
    return str(value).replace(",", ",,")


def copy_ovmf_vars(dest: Path, source: Path = OVMF_VARS) -> Path:
    """UEFI variables are written by the firmware: each VM gets its own copy."""
    shutil.copyfile(source, dest)
    return dest


def _drives(s: WindowsSettings, disk: Path, disk_format: str,
            cdroms: "list[tuple[Path, str]]") -> "list[str]":
    argv = ["-drive", f"if=none,id=disk0,format={disk_format},file={_opt(disk)}"]
    if s.legacy:
        slots = ["bus=ide.0,unit=0", "bus=ide.1,unit=0", "bus=ide.1,unit=1"]
    else:
        argv += ["-device", "ahci,id=ahci"]
        slots = ["bus=ahci.0", "bus=ahci.1", "bus=ahci.2"]
    argv += ["-device", f"ide-hd,drive=disk0,{slots[0]},bootindex=1"]
    for n, (iso, iso_format) in enumerate(cdroms):
        argv += ["-drive", f"if=none,id=cd{n},media=cdrom,readonly=on,"
                           f"format={iso_format},file={_opt(iso)}",
                 "-device", f"ide-cd,drive=cd{n},{slots[n + 1]},bootindex={n + 2}"]
    return argv


def _floppy(s: WindowsSettings, floppy: Path) -> "list[str]":
    if s.firmware == "uefi":
        raise ValueError("no floppy under UEFI: put autounattend.xml on the payload CD")
    drive = f"format=raw,readonly=on,file={_opt(floppy)}"
    if s.legacy:    # the pc machine has its floppy controller built in
        return ["-drive", f"if=floppy,{drive}"]
    return ["-device", "isa-fdc,id=fdc0",
            "-drive", f"if=none,id=floppy0,{drive}",
            "-device", "floppy,drive=floppy0,bus=fdc0.0"]


def _firmware(s: WindowsSettings, ovmf_vars: Optional[Path],
              ovmf_code: Path) -> "list[str]":
    if s.firmware != "uefi":
        return []
    if ovmf_vars is None:
        raise ValueError("UEFI needs this VM's copy of OVMF_VARS (copy_ovmf_vars)")
    return ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={_opt(ovmf_code)}",
            "-drive", f"if=pflash,format=raw,unit=1,file={_opt(ovmf_vars)}"]


def _network(s: WindowsSettings, smb_dir: Optional[Path],
             ssh_port: Optional[int]) -> "list[str]":
    netdev = "user,id=net0,restrict=on"
    if smb_dir is not None:
        netdev += f",smb={_opt(smb_dir)}"
    if ssh_port is not None:
        netdev += f",hostfwd=tcp:127.0.0.1:{int(ssh_port)}-:22"
    nic = "rtl8139" if s.legacy else "e1000e"
    return ["-netdev", netdev, "-device", f"{nic},netdev=net0"]


def _usb(s: WindowsSettings) -> "list[str]":
    if s.legacy:
        return ["-usb", "-device", "usb-tablet"]
    return ["-device", "qemu-xhci,id=xhci", "-device", "usb-tablet,bus=xhci.0"]


def machine_argv(s: WindowsSettings, *, disk: Path, disk_format: str = "qcow2",
                 install_iso: Optional[Path] = None,
                 install_iso_format: str = "raw",
                 payload_iso: Optional[Path] = None,
                 floppy: Optional[Path] = None,
                 ovmf_vars: Optional[Path] = None,
                 smb_dir: Optional[Path] = None,
                 ssh_port: Optional[int] = None,
                 memory: str = "4G", cpus: int = 2,
                 ovmf_code: Path = OVMF_CODE) -> "list[str]":
    """QEMU arguments for this guest. The install stage passes the ISOs (and
    the floppy for XP); snapshot and builds pass only the disk. The install
    ISO may be a qcow2 overlay (cdboot.py: the UEFI boot image without the
    key prompt)."""
    cdroms = [(p, f) for p, f in ((install_iso, install_iso_format), (payload_iso, "raw"))
              if p is not None]
    argv = ["-machine", "pc" if s.legacy else "q35", "-m", str(memory),
            "-smp", str(int(cpus))]
    argv += _firmware(s, ovmf_vars, ovmf_code)
    argv += _drives(s, disk, disk_format, cdroms)
    if floppy is not None:
        argv += _floppy(s, floppy)
    argv += _network(s, smb_dir, ssh_port)
    argv += _usb(s)
    argv += ["-rtc", f"base={s.rtc},clock=vm", "-vga", "std"]
    return argv
