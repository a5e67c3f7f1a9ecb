"""Stage 2, install: boot the installer with the ISO, the answer floppy and a
blank disk; the guest installs itself and powers off → artifacts/base.qcow2.

base.json records the guest's SSH host key (printed by the installer on the
serial console) and the disk's sha256, computed once here so that later
stages depend on this small file, not on re-hashing the image.
"""

import json
import time

from .common import (Paths, action, base_intact, base_record, say, settings, stage_inputs,
                     uptodate)
from revive.core.errors import UserError
from revive.core.files import atomic_path, remember_sha256, sha256_file, write_atomic
from revive.core.progress import StatusLine
from revive.core.proc import run
from revive.core.wait import wait_for
from revive import qemu
from revive.qemu import Qemu, accel, tail
from revive.machine import expiry_text

PROGRESS_EVERY = 15.0


@action
def install(inputs, paths: Paths) -> None:
    kind = inputs.guest_kind()
    paths.logs.mkdir(parents=True, exist_ok=True)
    log = paths.logs / "install.log"
    kind.check_install_inputs(inputs, paths, log)
    accel_name, why = accel.choose(inputs.limits["vm.accel"],
                                   lambda: kind.probe_kernel(paths), paths.accel_cache,
                                   kind.arch())
    say(f"accelerator: {accel_name} ({why})")
    start = time.monotonic()
    with atomic_path(paths.base) as disk:
        run(["qemu-img", "create", "-q", "-f", "qcow2", disk, f"{inputs['answers.disk_size']}M"],
            log=log, what="qemu-img create")
        devices = kind.install_devices(inputs, paths, disk).with_(
            accel=accel_name, cpu=kind.cpu_model(accel_name))
        with Qemu(devices.render(), name="install", logdir=paths.logs,
                  binary=devices.binary) as vm:
            vm.launch()
            report = _wait_installed(vm, kind, inputs.limits["timeouts.install"])
            # The guest powers itself off once it printed its report.
            wait_for(lambda: vm.proc.poll() is not None, timeout=300,
                     what="waiting for the installed guest to power off", alive=vm.stopped,
                     log=str(vm.qemu_log))
        if not report["host_key"]:
            raise UserError("install: the guest printed no SSH host key "
                            "(REVIVE-HOSTKEY line)", log=str(vm.serial_log))
        run(["qemu-img", "check", "-q", disk], log=log, what="qemu-img check")
        kind.after_install(paths, disk)
        disk.chmod(0o444)
        meta = {"host_key": report["host_key"], "sha256": sha256_file(disk),
                "qemu": qemu.version(devices.binary), "accelerator": accel_name,
                "seconds": round(time.monotonic() - start, 1),
                **report.get("facts", {})}
        write_atomic(paths.base_meta, json.dumps(meta, indent=2) + "\n")
    # The rename changed the image's ctime: remember its stamp as it is now.
    remember_sha256(paths.base, meta["sha256"], base_record(paths))
    say(f"installed {paths.base} in {meta['seconds']} s")
    if meta.get("expires"):
        say(f"this is an evaluation: it expires on {expiry_text(meta['expires'])}; "
            "builds on it are refused after that (reinstall then)")


def _wait_installed(vm: Qemu, kind, timeout: float) -> dict:
    """Wait for the guest's report on the serial console: done, or failed.
    Shows progress every PROGRESS_EVERY seconds rather than silence."""
    start = time.monotonic()
    step = [""]

    def finished():
        console = vm.serial_log.read_text(errors="replace") if vm.serial_log.exists() else ""
        report = kind.install_report(console)
        kind.during_install(vm, time.monotonic() - start)
        step[0] = report["step"] or ""
        if report["failed"]:
            raise vm.error(f"the installer failed: {report['failed']}")
        return report if report["done"] else None
    # The installer's own step when it reports one, else the console's last line.
    with StatusLine("install", console=vm.serial_log, detail=lambda: step[0],
                    plain_every=PROGRESS_EVERY):
        try:
            return wait_for(finished, timeout=timeout, alive=vm.dead, interval=0.2,
                            what=f"waiting for the install to finish ([timeouts] install = "
                                 f"{timeout:.0f} s)",
                            last_seen=lambda: tail(vm.serial_log, 1))
        except UserError as err:
            raise vm.error_with_screen(err) from None


def task_install():
    """Install the guest unattended onto a blank disk → artifacts/base.qcow2."""
    cfg = settings()
    paths = Paths(cfg)
    inputs = stage_inputs(cfg, "install")
    return {"actions": [(install, [inputs, paths])],
            "file_dep": inputs.guest_kind().install_files(paths),
            "targets": [paths.base, paths.base_meta],
            "uptodate": [uptodate(inputs), base_intact(paths)]}
