"""The Windows guest kind for the stages (the contract is
``revive.guests.base.GuestKind``): the user's ISO, the payload CD, the answer
file on the floppy and at the payload CD's root, Cygwin's sshd, SMB shares."""

import json
import shlex
import shutil
import time
from pathlib import Path

from ...core.files import sha256_file
from ...qemu import smb1
from ...qemu.devices import DeviceModel
from ..base import GuestKind
from ..linux import installer
from . import answers, cdboot, profile, setup_script
from .settings import KEYS, MACHINE, WindowsSettings, check_iso

PRESS_ANY_KEY_FOR = 40.0     # seconds of Enter presses for the UEFI CD prompt
HERE = Path(__file__).resolve().parent
# UEFI variables Setup wrote, beside the base image (relative to artifacts/).
OVMF_VARS = "base-ovmf-vars.fd"


class WindowsKind(GuestKind):
    name = "windows"
    Settings = WindowsSettings
    iso_boot = None              # the payload CD is data; Windows boots its own ISO
    iso_volume = "REVIVE_PAYLOAD"
    transports = ("smb",)        # Windows reaches shares over SMB only
    drive_letters = True
    channels = ("ssh",)
    channel_note = ("QEMU's guest agent needs a virtio-serial driver, which Windows "
                    "installed offline lacks")
    keys = KEYS

    # Sizes per version (settings.MACHINE). Without settings (the docs'
    # reference) the example's version, 11, for defaults, and the least any
    # version takes (XP's) for minimums.
    @classmethod
    def defaults(cls, settings) -> dict:
        version = settings.windows_version if settings is not None else "11"
        return {**super().defaults(settings), **MACHINE[version]["default"]}

    @classmethod
    def minimums(cls, settings) -> dict:
        version = settings.windows_version if settings is not None else "xp"
        return {**super().minimums(settings), **MACHINE[version]["least"]}

    def __init__(self, settings):
        super().__init__(settings)
        self.s = settings
        self._last_key = -1.0
        self._press_keys = settings is not None and settings.firmware == "uefi"

    # -- media -------------------------------------------------------------
    def source_files(self) -> "list[Path]":
        return sorted(p for p in HERE.rglob("*") if p.is_file() and "__pycache__" not in p.parts)

    def payload_needs_key(self) -> bool:
        return True

    def build_payload(self, inputs, paths, out: Path, log: Path) -> None:
        tree = out / "iso"
        setup_script.write_payload(self.s, paths.public_key.read_text(), tree)
        name, data = answers.answer_file(self.s)
        # Windows Setup finds the answer file on any removable drive; under
        # UEFI there is no floppy, so it sits at the payload CD's root too.
        (tree / name).write_bytes(data)
        files = {str(p.relative_to(tree)): sha256_file(p)
                 for p in sorted(tree.rglob("*")) if p.is_file()}
        (out / "manifest.json").write_text(json.dumps(
            {"kind": self.name, "files": files}, indent=1, sort_keys=True) + "\n")

    def floppy_files(self, inputs, public_key: str) -> "dict[str, bytes]":
        return answers.floppy_files(self.s)

    # -- install -----------------------------------------------------------
    def probe_kernel(self, paths) -> Path:
        """Windows brings no Linux kernel; the KVM probe boots the Linux guests'."""
        return installer.probe_kernel(paths.cache / "debs", paths.logs / "payload.log")

    def check_install_inputs(self, inputs, paths, log: Path) -> None:
        check_iso(self.s, log=log, cache=paths.cache / "iso-sha256.json")

    def ovmf_vars(self, artifacts: Path) -> Path:
        """UEFI variables written by Setup, kept beside the base image."""
        return artifacts / OVMF_VARS

    def install_devices(self, inputs, paths, disk: Path) -> DeviceModel:
        vars_ = None
        if self.s.firmware == "uefi":
            vars_ = profile.copy_ovmf_vars(disk.with_name(disk.name + ".vars.fd"))
        cd = cdboot.install_cd(self.s, paths.work / "windows-install-cd.qcow2",
                               paths.logs / "install.log")
        self._press_keys = not cd.prompt_free
        return profile.device_model(
            self.s, disk=disk, install_iso=cd.path, install_iso_format=cd.format,
            payload_iso=paths.iso,
            floppy=paths.floppy if self.s.firmware == "bios" else None,
            ovmf_vars=vars_, memory_mb=inputs["vm.memory"], cpus=inputs["vm.cpus"])

    def after_install(self, paths, disk: Path) -> None:
        (paths.work / "windows-install-cd.qcow2").unlink(missing_ok=True)
        if self.s.firmware == "uefi":
            shutil.move(disk.with_name(disk.name + ".vars.fd"), self.ovmf_vars(paths.artifacts))

    def install_report(self, console: str) -> dict:
        report = setup_script.read_report(console)
        key = " ".join(report.host_key.split()[:2]) if report.host_key else None
        facts = {}
        if report.evaluation and report.done:
            # When Windows starts shutting itself down: the install's clock
            # plus the grace it reported (the guest is revived at host time).
            facts["expires"] = int(time.time()) + 60 * report.grace_minutes
        return {"done": report.done, "failed": report.failed, "host_key": key,
                "step": report.last_step, "facts": facts}

    def during_install(self, vm, elapsed: float) -> None:
        # Only when cdboot could not give the CD a boot image without the
        # prompt: OVMF shows "Press any key to boot from CD or DVD" briefly.
        if self._press_keys and elapsed < PRESS_ANY_KEY_FOR \
                and elapsed - self._last_key >= 1.0:
            self._last_key = elapsed
            try:
                vm.qmp.cmd("send-key", keys=[{"type": "qcode", "data": "ret"}])
            except Exception:
                pass

    # -- snapshot and builds -----------------------------------------------
    def cpu_model(self, accel: str) -> str:
        return profile.cpu_model(self.s, accel)

    def machine_alias(self) -> str:
        return "pc" if self.s.legacy else "q35"

    def ssh_user(self) -> str:
        return self.s.admin_user

    def build_user(self, inputs) -> str:
        return self.s.admin_user

    def installed_devices(self, inputs) -> DeviceModel:
        # XP/2003 speak only SMB1: their own smbd (vm_values writes its
        # configuration per VM) instead of QEMU's smb=.
        legacy = self.s.legacy
        return profile.device_model(
            self.s, disk=Path("@disk@"), smb_dir=None if legacy else Path("@smb@"),
            smb1=smb1.command("@smbd@", "@smb1@") if legacy else None, ssh_port="@port@",
            ovmf_vars=Path("@ovmf-vars@") if self.s.firmware == "uefi" else None,
            memory_mb=inputs["vm.memory"], cpus=inputs["vm.cpus"])

    def vm_values(self, artifacts: Path, work: Path, shares=()) -> "dict[str, str]":
        values = {}
        if self.s.legacy:
            # This VM's smbd: each share is the folder Machine.revive made
            # under work/smb, read-only where the share is ro.
            state = smb1.write_config(work / "smb1", {
                s.name: (work / "smb" / s.name, s.mode == "ro") for s in shares})
            values.update(smbd=smb1.smbd_binary(), smb1=str(state))
            smb1.command(values["smbd"], values["smb1"])       # paths it can pass
        if self.s.firmware == "uefi":
            # The firmware's variables travel with the machine state; each VM
            # still needs a writable file of the same size behind its pflash.
            values["ovmf-vars"] = str(shutil.copyfile(self.ovmf_vars(artifacts),
                                                      work / "ovmf-vars.fd"))
        return values

    def revive_files(self) -> "tuple[str, ...]":
        return (OVMF_VARS,) if self.s.firmware == "uefi" else ()

    def _share_table(self, shares) -> dict:
        return {s.name: {"guest": s.guest, "mode": s.mode} for s in shares}

    def _share_commands(self, shares) -> "list[str]":
        # QEMU's smb= serves one share, "qemu", holding a folder per share;
        # XP/2003's own smbd serves each share by its name.
        root = rf"\\{smb1.SERVER}" if self.s.legacy else setup_script.SMB_ROOT
        return setup_script.share_commands(self._share_table(shares), self.s.ssh,
                                           smb_root=root)

    def prepare_shares(self, shares) -> str:
        return " && ".join(self._share_commands(shares)) or "true"

    def after_revive(self, shares, now: float, trees=None) -> str:
        return setup_script.set_clock_command(now, self.s.ssh)

    def command_line(self, command: str, env: "dict[str, str]", user: str, shares=()) -> str:
        # Drive mappings belong to one logon session and every SSH connection
        # is a new one: map in the session that runs the build.
        mapping = self._share_commands(shares)
        exports = " ".join(f"export {k}={shlex.quote(v)};" for k, v in env.items())
        return " && ".join([*mapping, f"{{ {exports} {command} ; }}"]) if mapping \
            else f"{exports} {command}"
