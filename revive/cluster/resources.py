"""Dask resource names: a worker offers ``vm=N`` (VM slots) and one
``qemu-VERSION-ACCEL-ARCH=N`` per kind of snapshot it can revive; a build
asks for one slot of each. A snapshot only loads on the QEMU version and
accelerator that made it, and on an emulator of its guest's architecture
(ARCH as ``uname -m`` says it: x86_64, aarch64, riscv64), so the scheduler
never places it elsewhere."""

import platform
import shutil

from ..qemu.devices import ARCHES

VM = "vm"


def arch() -> str:
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(platform.machine().lower(),
                                                        platform.machine().lower())


def revive_resource(qemu_version: str, accel: str, arch_name: str = "x86_64") -> str:
    return f"qemu-{qemu_version}-{accel}-{arch_name}"


def for_snapshot(meta: dict) -> "dict[str, int]":
    """What one build of this snapshot needs: its guest's architecture, from
    meta.json (snapshots made before it was recorded are amd64)."""
    guest = ARCHES[meta.get("arch", "amd64")].uname
    return {VM: 1, revive_resource(meta["qemu"], meta["accelerator"], guest): 1}


def emulators(version) -> "dict[str, str]":
    """{guest arch: QEMU version} of every system emulator installed here;
    ``version(binary)`` asks one for its version."""
    return {a.uname: version(a.qemu) for a in ARCHES.values() if shutil.which(a.qemu)}


def offered(qemu_version: str, accels: "list[str]", vms: int,
            foreign: "dict[str, str] | None" = None) -> "dict[str, int]":
    """What a worker with ``vms`` slots offers. A KVM host can also revive
    TCG snapshots (the device model says tcg); a TCG-only host cannot run
    KVM ones. KVM runs only the host's own architecture; TCG also runs every
    other one whose emulator is installed (``foreign``: {arch: version})."""
    out = {VM: vms}
    for accel in accels:
        out[revive_resource(qemu_version, accel, arch())] = vms
    if "tcg" in accels:
        for guest, version in sorted((foreign or {}).items()):
            if guest != arch():
                out[revive_resource(version, "tcg", guest)] = vms
    return out


def describe(resources: "dict[str, float]") -> str:
    names = sorted(k for k in resources if k.startswith("qemu-"))
    return ", ".join(names) or "none"
