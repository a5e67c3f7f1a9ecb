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
        # The exchange folder keeps the guest's owners and modes in xattrs
        # (mapped-xattr), so a non-root build user owns what it creates;
        # inputs are read as the host has them.
        access = "security_model=none,readonly=on" if share.mode == "ro" \
            else "security_model=mapped-xattr"
        args += ["-fsdev", f"local,id=fs_{share.name},path=@share.{share.name}@,{access}",
                 "-device", f"virtio-9p-pci,fsdev=fs_{share.name},mount_tag={share.name}"]
    # --- [vm] channel = "agent" (issue 9): qemu-ga's virtio-serial port and
    # the hidden share that streams a command's output to the host.
    if cfg.vm.channel == "agent":
        from ..remote import agent
        args += agent.device_args("@agent-socket@") + agent.stream_share_args("@agent-stream@")
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
                         f"-o username=guest,password=,vers=3.0,ip=10.0.2.4,{s.mode},"
                         # Files show as root's; a non-root build user must still
                         # write and chmod in the exchange folder.
                         "file_mode=0777,dir_mode=0777,noperm")
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


class LinuxKind:
    """A Linux guest kind (tiny, debian) for the stages: its module builds
    the payload and answer files; this class holds what all share."""

    iso_volume = "REVIVE_INSTALL"

    def __init__(self, cfg: Config, module):
        self.cfg = cfg
        self.module = module
        self.name = cfg.guest_kind
        self.iso_boot = module.ISO_BOOT

    # -- media -------------------------------------------------------------
    def source_files(self) -> "list[Path]":
        return list(self.module.source_files())

    def payload_slice(self) -> dict:
        return {"kind": self.name, "guest": self.cfg.guest}

    def payload_needs_key(self) -> bool:
        return False

    def build_payload(self, paths, out: Path, log: Path) -> None:
        self.module.build_payload(paths.cache / "debs", out, log)

    def floppy_files(self, answers: dict) -> "dict[str, bytes]":
        return self.module.answer_files(answers)

    def floppy_slice(self) -> dict:
        return {}

    def install_slice(self) -> dict:
        return {}

    # -- install -----------------------------------------------------------
    def probe_kernel(self, paths) -> Path:
        return paths.payload / "boot" / "vmlinuz"

    def check_install_inputs(self, paths, log: Path) -> None:
        pass

    def install_inputs(self, paths) -> "list[Path]":
        return [paths.iso, paths.floppy, paths.payload_manifest]

    def install_args(self, paths, disk: Path, accel: str, cpu: str) -> "list[str]":
        return install_args(iso=paths.iso, floppy=paths.floppy, disk=disk,
                            memory_mb=self.cfg.vm.memory_mb, accel=accel, cpu=cpu)

    def install_report(self, console: str) -> dict:
        failed = next((l.split(INSTALL_FAILED, 1)[1].strip()
                       for l in console.splitlines() if INSTALL_FAILED in l), None)
        steps = [l for l in console.splitlines() if l.startswith("revive:")]
        return {"done": INSTALL_OK in console, "failed": failed,
                "host_key": parse_host_key(console), "step": steps[-1] if steps else None}

    def during_install(self, vm, elapsed: float) -> None:
        pass

    # -- snapshot and builds -----------------------------------------------
    def ssh_user(self) -> str:
        return "root"

    def device_template(self, *, machine: str, accel: str, cpu: str, save_method: str) -> "list[str]":
        return device_template(self.cfg, machine=machine, accel=accel, cpu=cpu,
                               save_method=save_method, cmdline=self.module.boot_cmdline())

    def machine_alias(self) -> str:
        return "pc"

    def after_install(self, paths, disk: Path) -> None:
        pass

    def vm_values(self, paths, work: Path) -> "dict[str, str]":
        return {}

    def prepare_shares(self, shares: "list[Share]") -> str:
        """At the snapshot: check every share mounts, then leave none mounted
        (migration is refused while a 9p share is mounted)."""
        return (f"{mount_command(shares)} && {unmount_command(shares)} && sync && "
                "echo 3 > /proc/sys/vm/drop_caches")

    def after_revive(self, shares: "list[Share]", now: float) -> str:
        # A revived guest's clock is where the snapshot left it.
        # busybox's date takes whole seconds only, GNU date fractions too.
        return (f"{{ date -s @{now:.3f} || date -s @{round(now)}; }} >/dev/null 2>&1; "
                f"{mount_command(shares)}")

    def command_line(self, command: str, env: "dict[str, str]", user: str, shares=()) -> str:
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        prefix = f"export {exports}; " if exports else ""
        if user != "root":
            return f"{prefix}exec su -s /bin/sh {shlex.quote(user)} -c {shlex.quote(command)}"
        return prefix + command
