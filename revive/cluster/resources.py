"""Dask resource names: a worker offers ``vm=N`` (VM slots) and one
``qemu-VERSION-ACCEL-ARCH=N`` per kind of snapshot it can revive; a build
asks for one slot of each. A snapshot only loads on the QEMU version and
accelerator that made it, so the scheduler never places it elsewhere."""

import platform

VM = "vm"


def arch() -> str:
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(platform.machine().lower(),
                                                        platform.machine().lower())


def revive_resource(qemu_version: str, accel: str, arch_name: str = "x86_64") -> str:
    return f"qemu-{qemu_version}-{accel}-{arch_name}"


def for_snapshot(meta: dict) -> "dict[str, int]":
    """What one build of this snapshot needs. The snapshot's argv is for
    qemu-system-x86_64 (the only system emulator revive starts)."""
    return {VM: 1, revive_resource(meta["qemu"], meta["accelerator"], "x86_64"): 1}


def offered(qemu_version: str, accels: "list[str]", vms: int) -> "dict[str, int]":
    """What a worker with ``vms`` slots offers. A KVM host can also revive
    TCG snapshots (the device model says tcg); a TCG-only host cannot run
    KVM ones."""
    out = {VM: vms}
    for accel in accels:
        out[revive_resource(qemu_version, accel, arch())] = vms
    return out


def describe(resources: "dict[str, float]") -> str:
    names = sorted(k for k in resources if k.startswith("qemu-"))
    return ", ".join(names) or "none"
