"""The Windows guest kind for the stages (the contract is
``revive.guests.base.GuestKind``): the user's ISO, the payload CD, the answer
file on the floppy and at the payload CD's root, Cygwin's sshd, SMB shares."""

import json
import shlex
import shutil
from pathlib import Path

from ...core.files import sha256_file
from ...machine.devices import DeviceModel
from ..base import GuestKind
from ..linux import installer
from . import answers, cdboot, profile, setup_script
from .settings import KEYS, WindowsSettings, check_iso

PRESS_ANY_KEY_FOR = 40.0     # seconds of Enter presses for the UEFI CD prompt
HERE = Path(__file__).resolve().parent


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

    @classmethod
    def defaults(cls, settings) -> dict:
        return {**super().defaults(settings), "answers.disk_size": "64G", "vm.memory": "4G",
                "vm.cpus": 2}

    @classmethod
    def minimums(cls, settings) -> dict:
        return {**super().minimums(settings), "answers.disk_size": "20G"}

    def __init__(self, settings):
        super().__init__(settings)
        self.s = settings
        self._last_key = -1.0
        self._press_keys = settings is not None and settings.firmware == "uefi"

    @classmethod
    def check_shares(cls, settings, shares) -> None:
        setup_script.check_shares_supported(settings, shares)

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
        return artifacts / "base-ovmf-vars.fd"

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
        return {"done": report.done, "failed": report.failed, "host_key": key,
                "step": report.last_step}

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
        return profile.device_model(
            self.s, disk=Path("@disk@"), smb_dir=Path("@smb@"), ssh_port="@port@",
            ovmf_vars=Path("@ovmf-vars@") if self.s.firmware == "uefi" else None,
            memory_mb=inputs["vm.memory"], cpus=inputs["vm.cpus"])

    def vm_values(self, artifacts: Path, work: Path) -> "dict[str, str]":
        if self.s.firmware != "uefi":
            return {}
        # The firmware's variables travel with the machine state; each VM
        # still needs a writable file of the same size behind its pflash.
        return {"ovmf-vars": str(shutil.copyfile(self.ovmf_vars(artifacts),
                                                 work / "ovmf-vars.fd"))}

    def _share_table(self, shares) -> dict:
        return {s.name: {"guest": s.guest, "mode": s.mode} for s in shares}

    def prepare_shares(self, shares) -> str:
        return " && ".join(setup_script.share_commands(self._share_table(shares), self.s.ssh)) or "true"

    def after_revive(self, shares, now: float) -> str:
        return setup_script.set_clock_command(now, self.s.ssh)

    def command_line(self, command: str, env: "dict[str, str]", user: str, shares=()) -> str:
        # Drive mappings belong to one logon session and every SSH connection
        # is a new one: map in the session that runs the build.
        mapping = setup_script.share_commands(self._share_table(shares), self.s.ssh)
        exports = " ".join(f"export {k}={shlex.quote(v)};" for k, v in env.items())
        return " && ".join([*mapping, f"{{ {exports} {command} ; }}"]) if mapping \
            else f"{exports} {command}"
