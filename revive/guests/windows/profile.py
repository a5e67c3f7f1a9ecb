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
makes QEMU serve one folder at \\\\10.0.2.4\\qemu; XP and 2003 get their own
SMB1 smbd through a guest forward instead (``smb1``, qemu/smb1.py). Checked with QEMU 7.2.
Serial port, display and QMP are the machine module's; the accelerator,
CPU and RAM backing are set by the stages on the returned ``DeviceModel``.
"""

import shutil
from pathlib import Path
from typing import Optional

from ...qemu.devices import DeviceModel, Disk, Firmware, Nic
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


def copy_ovmf_vars(dest: Path, source: Path = OVMF_VARS) -> Path:
    """UEFI variables are written by the firmware: each VM gets its own copy."""
    shutil.copyfile(source, dest)
    return dest


def device_model(s: WindowsSettings, *, disk: Path, disk_format: str = "qcow2",
                 install_iso: Optional[Path] = None,
                 install_iso_format: str = "raw",
                 payload_iso: Optional[Path] = None,
                 floppy: Optional[Path] = None,
                 ovmf_vars: Optional[Path] = None,
                 smb_dir: Optional[Path] = None,
                 smb1: Optional[str] = None,
                 ssh_port: "int | str | None" = None,
                 memory_mb: int = 4096, cpus: int = 2,
                 ovmf_code: Path = OVMF_CODE) -> DeviceModel:
    """This guest's machine. The install stage passes the ISOs (and the
    floppy for XP); snapshot and builds pass only the disk. The install ISO
    may be a qcow2 overlay (cdboot.py: the UEFI boot image without the key
    prompt)."""
    if s.firmware == "uefi" and ovmf_vars is None:
        raise ValueError("UEFI needs this VM's copy of OVMF_VARS (copy_ovmf_vars)")
    if s.firmware == "uefi" and floppy is not None:
        raise ValueError("no floppy under UEFI: put autounattend.xml on the payload CD")
    return DeviceModel(
        machine="pc" if s.legacy else "q35",
        storage="ide" if s.legacy else "ahci",
        memory_mb=memory_mb, cpus=int(cpus),
        firmware=Firmware(str(ovmf_code), str(ovmf_vars)) if s.firmware == "uefi" else None,
        disks=(Disk(str(disk), disk_format, bootindex=1),),
        cdroms=tuple(Disk(str(p), f) for p, f in ((install_iso, install_iso_format),
                                                  (payload_iso, "raw")) if p is not None),
        floppy=str(floppy) if floppy is not None else None,
        floppy_controller=not s.legacy,
        nic=Nic("rtl8139" if s.legacy else "e1000e",
                smb=str(smb_dir) if smb_dir is not None else None, smb1=smb1,
                forward_ssh=str(ssh_port) if ssh_port is not None else None),
        usb_tablet="uhci" if s.legacy else "xhci",
        # Windows 8 / Server 2012 and later read the VM generation ID and
        # reseed their RNG when it changes (each revive gets a new one).
        vmgenid=s.family == "nt6.2+",
        rtc=f"base={s.rtc},clock=vm", vga="std")
