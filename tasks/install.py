"""Stage 2, install: boot the installer with the ISO, the answer floppy and a
blank disk; the guest installs itself and powers off → artifacts/base.qcow2.

base.json records the guest's SSH host key (printed by the installer on the
serial console) and the disk's sha256, computed once here so that later
stages depend on this small file, not on re-hashing the image.
"""

import json
import time

from . import guests
from .common import Paths, action, say, settings
from .core.errors import UserError
from .core.files import atomic_path, sha256_file, write_atomic
from .core.proc import run
from .guests import linux
from .machine import accel, qemu
from .machine.qemu import Machine, tail

PROGRESS_EVERY = 15.0


def _progress_printer():
    last = [time.monotonic(), 0]

    def show(console: str) -> None:
        now = time.monotonic()
        if now - last[0] >= PROGRESS_EVERY:
            last[0] = now
            lines = [l for l in console.splitlines() if l.startswith("revive:")]
            say(f"install running: {lines[-1] if lines else 'booting the installer'}")
    return show


def choose_accel(cfg, paths: Paths) -> "tuple[str, str]":
    kernel = paths.payload / "boot" / "vmlinuz"
    return accel.choose(cfg.vm.accel, kernel, paths.accel_cache)


def cpu_for(accel_name: str) -> str:
    return "host" if accel_name == "kvm" else "qemu64"


@action
def install(cfg, paths: Paths) -> None:
    paths.logs.mkdir(parents=True, exist_ok=True)
    accel_name, why = choose_accel(cfg, paths)
    say(f"accelerator: {accel_name} ({why})")
    log = paths.logs / "install-qemu-img.log"
    start = time.monotonic()
    with atomic_path(paths.base) as disk:
        run(["qemu-img", "create", "-q", "-f", "qcow2", disk, f"{cfg.answers.disk_size_mb}M"],
            log=log, what="qemu-img create")
        args = linux.install_args(iso=paths.iso, floppy=paths.floppy, disk=disk,
                                  memory_mb=cfg.vm.memory_mb, accel=accel_name,
                                  cpu=cpu_for(accel_name))
        with Machine(args, name="install", logdir=paths.logs) as vm:
            vm.launch()
            console = _wait_installed(vm, cfg.timeouts.install, paths)
            vm.proc.wait(timeout=60)
        host_key = linux.parse_host_key(console)
        if not host_key:
            raise UserError("install: the installer printed no SSH host key "
                            f"({linux.HOSTKEY.strip()})", log=str(vm.serial_log))
        run(["qemu-img", "check", "-q", disk], log=log, what="qemu-img check")
        disk.chmod(0o444)
        meta = {"host_key": host_key, "sha256": sha256_file(disk),
                "qemu": qemu.version(), "seconds": round(time.monotonic() - start, 1)}
        write_atomic(paths.base_meta, json.dumps(meta, indent=2) + "\n")
    say(f"installed {paths.base} in {meta['seconds']} s")


def _wait_installed(vm: Machine, timeout: float, paths: Paths) -> str:
    show = _progress_printer()

    def finished(console: str) -> None:
        show(console)
        if linux.INSTALL_FAILED in console:
            line = next(l for l in console.splitlines() if linux.INSTALL_FAILED in l)
            raise vm.error(f"the installer failed: {line.split(linux.INSTALL_FAILED, 1)[1].strip()}")
    try:
        return vm.wait_serial(linux.INSTALL_OK, timeout, "waiting for the install "
                              f"to finish ([timeouts] install = {timeout:.0f} s)",
                              progress=finished)
    except UserError:
        shot = vm.screendump(paths.logs / "install-screen.png")
        if shot:
            say(f"screen at the failure: {shot}")
        raise


def task_install():
    """Install the guest unattended onto a blank disk → artifacts/base.qcow2."""
    cfg = settings()
    paths = Paths(cfg)
    from .common import config_slice
    return {"actions": [(install, [cfg, paths])],
            "file_dep": [paths.iso, paths.floppy, paths.payload_manifest],
            "targets": [paths.base, paths.base_meta],
            "uptodate": [config_slice("install", {"kind": cfg.guest_kind})]}
