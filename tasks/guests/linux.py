"""What Linux guests (tiny, debian) share: the QEMU device model for install
and for the installed system, the console markers, and share mounting.

The installed system is booted with the payload's own kernel and initramfs
(QEMU ``-kernel``/``-initrd``): the disk needs no bootloader, and the kernel
that revive boots is the one pinned in the payload.
"""

import shlex
from pathlib import Path

from ..config import Config, Share

INSTALL_OK = "REVIVE-INSTALL-OK"
INSTALL_FAILED = "REVIVE-INSTALL-FAILED"
HOSTKEY = "REVIVE-HOSTKEY "
READY = "REVIVE-READY"
GUEST_ADDR = "10.0.2.15"


def install_args(*, iso: Path, floppy: Path, disk: Path, memory_mb: int,
                 accel: str, cpu: str) -> "list[str]":
    return ["-accel", accel, "-machine", "pc", "-cpu", cpu, "-m", f"{max(memory_mb, 256)}M",
            "-no-reboot", "-boot", "d", "-nic", "none",
            "-drive", f"if=ide,index=2,media=cdrom,readonly=on,file={iso}",
            "-drive", f"if=floppy,format=raw,file={floppy}",
            "-drive", f"if=virtio,format=qcow2,file={disk}"]


def device_template(cfg: Config, *, machine: str, accel: str, cpu: str,
                    save_method: str, cmdline: str) -> "list[str]":
    """The installed system's device model with ``@token@`` placeholders for
    what differs between the snapshot run and each revive."""
    from ..machine.snapshot import memory_args
    machine_opt = f"{machine},accel={accel}"
    if save_method == "file":
        machine_opt += ",memory-backend=ram0"
    netdev = "user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:@port@-:22"
    if any(s.transport == "smb" for s in cfg.shares.values()):
        netdev += ",smb=@smb@"
    args = ["-machine", machine_opt, "-cpu", cpu, "-smp", str(cfg.vm.cpus),
            *memory_args(save_method, cfg.vm.memory_mb, "@ram@", "@ram-share@"),
            "-kernel", "@artifacts@/payload/boot/vmlinuz",
            "-initrd", "@artifacts@/payload/boot/initrd.img",
            "-append", cmdline,
            "-drive", "if=none,id=disk0,format=qcow2,file=@disk@",
            "-device", "virtio-blk-pci,drive=disk0",
            "-netdev", netdev,
            "-device", "virtio-net-pci,netdev=net0,mac=52:54:00:12:34:56"]
    for share in _ninep(cfg):
        ro = ",readonly=on" if share.mode == "ro" else ""
        args += ["-fsdev", f"local,id=fs_{share.name},path=@share.{share.name}@,"
                           f"security_model=none{ro}",
                 "-device", f"virtio-9p-pci,fsdev=fs_{share.name},mount_tag={share.name}"]
    return args


def _ninep(cfg: Config) -> "list[Share]":
    return [s for s in cfg.shares.values() if s.transport == "9p"]


def mount_command(shares: "list[Share]") -> str:
    """Mount every share (9p by tag; SMB from QEMU's built-in server)."""
    steps = []
    for s in shares:
        guest = shlex.quote(s.guest)
        if s.transport == "9p":
            steps.append(f"mkdir -p {guest} && mount -t 9p -o trans=virtio,version=9p2000.L,"
                         f"msize=262144,{s.mode} {s.name} {guest}")
        else:
            # QEMU's smbd serves one folder as \\10.0.2.4\qemu; each share is
            # a subfolder. No mount.cifs helper: the kernel wants username=
            # (an empty password makes it a guest logon) and the address.
            steps.append(f"mkdir -p {guest} && mount -t cifs //10.0.2.4/qemu/{s.name} {guest} "
                         f"-o username=guest,password=,vers=3.0,ip=10.0.2.4,{s.mode}")
    return " && ".join(steps) or "true"


def unmount_command(shares: "list[Share]") -> str:
    return " ; ".join(f"umount {shlex.quote(s.guest)}" for s in shares) or "true"


def parse_host_key(console: str) -> "str | None":
    for line in console.splitlines():
        if HOSTKEY in line:
            fields = line.split(HOSTKEY, 1)[1].split()
            if len(fields) >= 2:
                return f"{fields[0]} {fields[1]}"
    return None
