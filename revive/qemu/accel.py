"""Which accelerator to use: KVM when it really runs a guest, else TCG.

``/dev/kvm`` can open, create VMs, even run a BIOS boot sector, and still
never boot Linux (seen on our machines: 100% system time, no console output
for 40 s). So the probe boots a real kernel with no root file system and
waits, with a short deadline, for it to panic and reboot: that takes the
kernel through long mode, timers and interrupts. The verdict is cached per
host boot and QEMU version, so a hanging KVM costs one deadline per boot.
"""

import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path

from ..core.errors import UserError
from ..core.files import write_atomic
from . import process as qemu
from .devices import ARCHES, Arch

PROBE_TIMEOUT = 10.0
PANIC = "Kernel panic"


def kvm_usable(kernel: Path, timeout: float = PROBE_TIMEOUT) -> "tuple[bool, str]":
    """(usable, why): boots ``kernel`` under KVM until its no-root panic."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False, "/dev/kvm is missing or not accessible"
    with tempfile.TemporaryFile() as console:
        argv = [qemu.binary(), "-accel", "kvm", "-machine", "pc", "-m", "128",
                "-nodefaults", "-display", "none", "-no-reboot", "-serial", "stdio",
                "-kernel", str(kernel), "-append", "console=ttyS0 panic=-1"]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=console,
                                stderr=subprocess.STDOUT, preexec_fn=qemu._die_with_parent)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False, f"a KVM guest made no progress within {timeout:.0f} s"
        finally:
            proc.kill()
            proc.wait()
        console.seek(0)
        text = console.read().decode(errors="replace")
    if PANIC in text:
        return True, "KVM booted the probe kernel"
    last = text.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
    return False, f"QEMU could not use KVM: {last[0]}"


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def choose(requested: str, kernel, cache: Path, arch: "Arch | None" = None,
           host: "str | None" = None) -> "tuple[str, str]":
    """(accelerator, why) for ``[vm] accel`` = auto | kvm | tcg. ``kernel()``
    gives the probe kernel; it is called only when a probe must run. A guest
    of another architecture than the host (``uname -m``) always runs under
    TCG: KVM only runs the host's own instruction set."""
    if requested == "tcg":
        return "tcg", "config asks for tcg"
    arch = arch or ARCHES["amd64"]
    host = host or platform.machine()
    if arch.uname != host:
        why = f"the {arch.name} guest is emulated on this {host} host"
        if requested == "kvm":
            raise UserError(f"config.toml: [vm] accel = \"kvm\" but {why} (KVM runs "
                            "only the host's own architecture); set accel = \"auto\" or \"tcg\"")
        return "tcg", f"{why}: TCG"
    key = {"boot_id": _boot_id(), "qemu": qemu.version()}
    try:
        cached = json.loads(cache.read_text())
        ok, why = (cached["usable"], cached["why"]) if cached["key"] == key else (None, "")
    except (OSError, ValueError, KeyError):
        ok, why = None, ""
    if ok is None:
        ok, why = kvm_usable(kernel())
        write_atomic(cache, json.dumps({"key": key, "usable": ok, "why": why}))
    if ok:
        return "kvm", why
    if requested == "kvm":
        raise UserError(f"config.toml: [vm] accel = \"kvm\" but {why}; "
                        "set accel = \"auto\" or \"tcg\"")
    return "tcg", f"{why}; using TCG"


def default_cpu(accel: str, arch: "Arch | None" = None) -> str:
    """The CPU model a guest gets unless its kind knows better: the host's
    own under KVM; under TCG the architecture's (qemu64 on x86)."""
    return "host" if accel == "kvm" else (arch or ARCHES["amd64"]).tcg_cpu
