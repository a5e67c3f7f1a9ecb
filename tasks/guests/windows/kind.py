"""The Windows guest kind for the stages (see ``tasks.guests.linux.LinuxKind``
for the interface): the user's ISO, the payload CD, the answer file on the
floppy and at the payload CD's root, Cygwin's sshd, SMB shares."""

import json
import shlex
import shutil
from pathlib import Path

from ...core.errors import UserError
from ...core.files import sha256_file
from ...machine.snapshot import memory_args
from . import answers, cdboot, profile, setup_script
from .settings import check_iso, from_table

PRESS_ANY_KEY_FOR = 40.0     # seconds of Enter presses for the UEFI CD prompt
HERE = Path(__file__).resolve().parent


class WindowsKind:
    iso_boot = None              # the payload CD is data; Windows boots its own ISO
    iso_volume = "REVIVE_PAYLOAD"

    def __init__(self, cfg):
        self.cfg = cfg
        self.name = "windows"
        self.s = from_table(cfg.guest, cfg.root)
        for share in cfg.shares.values():
            if share.transport != "smb":
                raise UserError(f"config.toml: [shares.{share.name}] transport: Windows "
                                "guests reach shares over SMB; set transport = \"smb\"")
        setup_script.check_shares_supported(self.s, cfg.shares.values())
        self._last_key = -1.0
        self._press_keys = self.s.firmware == "uefi"

    # -- media -------------------------------------------------------------
    def source_files(self) -> "list[Path]":
        return sorted(p for p in HERE.rglob("*") if p.is_file() and "__pycache__" not in p.parts)

    def _answers_slice(self) -> dict:
        # The user's ISO is the install stage's input, not the media's.
        return {k: v for k, v in self.s.slice().items() if k != "iso_sha256"}

    def payload_slice(self) -> dict:
        return {"kind": self.name, "settings": self._answers_slice()}

    def payload_needs_key(self) -> bool:
        return True

    def build_payload(self, paths, out: Path, log: Path) -> None:
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

    def floppy_files(self, answers_: dict) -> "dict[str, bytes]":
        return answers.floppy_files(self.s)

    def floppy_slice(self) -> dict:
        return {"settings": self._answers_slice()}

    def install_slice(self) -> dict:
        return {"iso_sha256": self.s.iso_sha256}

    # -- install -----------------------------------------------------------
    def probe_kernel(self, paths) -> Path:
        """Windows brings no Linux kernel; the KVM probe boots tiny's."""
        from .. import tiny
        return tiny.probe_kernel(paths.cache / "debs", paths.logs / "payload.log")

    def check_install_inputs(self, paths, log: Path) -> None:
        check_iso(self.s, log=log, cache=paths.cache / "iso-sha256.json")

    def install_inputs(self, paths) -> "list[Path]":
        return [paths.iso, paths.floppy, paths.payload_manifest]

    def ovmf_vars(self, paths) -> Path:
        """UEFI variables written by Setup, kept beside the base image."""
        return paths.artifacts / "base-ovmf-vars.fd"

    def install_args(self, paths, disk: Path, accel: str, cpu: str) -> "list[str]":
        vars_ = None
        if self.s.firmware == "uefi":
            vars_ = profile.copy_ovmf_vars(disk.with_name(disk.name + ".vars.fd"))
        cd = cdboot.install_cd(self.s, paths.work / "windows-install-cd.qcow2",
                               paths.logs / "install.log")
        self._press_keys = not cd.prompt_free
        argv = profile.machine_argv(
            self.s, disk=disk, install_iso=cd.path, install_iso_format=cd.format,
            payload_iso=paths.iso,
            floppy=paths.floppy if self.s.firmware == "bios" else None,
            ovmf_vars=vars_, memory=f"{self.cfg.vm.memory_mb}M", cpus=self.cfg.vm.cpus)
        return ["-accel", accel, "-cpu", cpu, *argv]

    def after_install(self, paths, disk: Path) -> None:
        (paths.work / "windows-install-cd.qcow2").unlink(missing_ok=True)
        if self.s.firmware == "uefi":
            shutil.move(disk.with_name(disk.name + ".vars.fd"), self.ovmf_vars(paths))

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

    def device_template(self, *, machine: str, accel: str, cpu: str, save_method: str) -> "list[str]":
        argv = profile.machine_argv(
            self.s, disk=Path("@disk@"), smb_dir=Path("@smb@"),
            ovmf_vars=Path("@ovmf-vars@") if self.s.firmware == "uefi" else None,
            memory=f"{self.cfg.vm.memory_mb}M", cpus=self.cfg.vm.cpus)
        out = []
        args = iter(argv)
        for arg in args:
            if arg == "-machine":
                next(args)
                opt = f"{machine},accel={accel}"
                if save_method == "file":
                    opt += ",memory-backend=ram0"
                out += ["-machine", opt, "-cpu", cpu]
            elif arg == "-m":
                next(args)
                out += memory_args(save_method, self.cfg.vm.memory_mb, "@ram@", "@ram-share@")
            elif arg.startswith("user,id=net0"):
                out.append(arg + ",hostfwd=tcp:127.0.0.1:@port@-:22")
            else:
                out.append(arg)
        return out

    def vm_values(self, paths, work: Path) -> "dict[str, str]":
        if self.s.firmware != "uefi":
            return {}
        # The firmware's variables travel with the machine state; each VM
        # still needs a writable file of the same size behind its pflash.
        return {"ovmf-vars": str(shutil.copyfile(self.ovmf_vars(paths), work / "ovmf-vars.fd"))}

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
