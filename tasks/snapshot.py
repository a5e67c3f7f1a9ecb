"""Stage 3, snapshot: boot the installed disk once more (through an overlay,
so base.qcow2 is never written), wait for SSH, prepare the shares, stop the
machine and save its memory and device state → artifacts/snapshot/."""

import json

from .common import Paths, action, base_damage, say, settings, stage_inputs, uptodate
from revive import qemu
from revive.channel import agent
from revive.core.errors import UserError
from revive.core.files import atomic_path, remove
from revive.core.progress import StatusLine
from revive.core.proc import run
from revive.inputs import plain
from revive.machine import Login, Machine
from revive.qemu import accel, saved


def empty_share_dirs(shares, work) -> "dict[str, str]":
    """Empty host folders for the snapshot run: the shares are only mounted
    to check them, then unmounted; each build brings its own folders."""
    values = {"smb": str(work / "smb")}
    for share in shares:
        folder = work / ("smb" if share.transport == "smb" else "9p") / share.name
        folder.mkdir(parents=True, exist_ok=True)
        values[f"share.{share.name}"] = str(folder)
    return values


@action
def take_snapshot(inputs, paths: Paths) -> None:
    kind = inputs.guest_kind()
    problem = base_damage(paths)
    if problem:
        raise UserError(f"{problem}; run `doit install` to reinstall")
    base = json.loads(paths.base_meta.read_text())
    arch = kind.arch()
    accel_name, why = accel.choose(inputs["vm.accel"], lambda: kind.probe_kernel(paths),
                                   paths.accel_cache, arch)
    say(f"accelerator: {accel_name} ({why})")
    work = paths.work / "snapshot"
    remove(work)
    work.mkdir(parents=True)
    try:
        _snapshot_in(inputs, paths, kind, base, arch, accel_name, work)
    finally:
        # Its logs are in artifacts/logs; nothing of a failed run waits here.
        remove(work)


def _snapshot_in(inputs, paths: Paths, kind, base: dict, arch, accel_name: str, work) -> None:
    """Boot, prepare and save into artifacts/snapshot."""
    features = qemu.features(paths.logs, arch.qemu)
    machine_name = features[kind.machine_alias()]
    method = saved.choose_method(inputs["vm.save"], features["capabilities"])
    cpu = kind.cpu_model(accel_name)
    # The template keeps @tokens@ for what each revive fills in.
    devices = kind.installed_devices(inputs).with_(
        machine=machine_name, accel=accel_name, cpu=cpu,
        ram_file="@ram@" if method == "file" else None, ram_share="@ram-share@")
    template = devices.render()
    shares = list(inputs["shares"].values())
    channel = inputs["vm.channel"]
    with atomic_path(paths.snapshot) as folder:
        folder.mkdir()
        saved.check_room(folder, inputs["vm.memory"])
        run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2",
             "-b", "../base.qcow2", folder / saved.DISK],
            log=work / "qemu-img.log", what="qemu-img create")
        values = {"artifacts": str(paths.artifacts), "disk": str(folder / saved.DISK),
                  "ram": str(folder / saved.RAM), "ram-share": "on",
                  **empty_share_dirs(shares, work), **kind.vm_values(paths.artifacts, work, shares),
                  **(agent.argv_values(work) if channel == "agent" else {})}
        machine = Machine.boot(kind, template, values, name="snapshot", logs=paths.logs,
                               work=work, timeout=inputs.limits["timeouts.boot"],
                               login=Login(kind.ssh_user(), paths.key, base["host_key"]),
                               shares=shares)
        with machine:
            machine.launch()
            with StatusLine("snapshot", console=machine.qemu.serial_log):
                machine.connect(phase="boot_to_ssh")
                with machine.watch.phase("prepare_shares"):
                    machine.check(kind.prepare_shares(shares), timeout=120,
                                  what="preparing the shares in the guest")
                machine.disconnect()
                runner = None
                if channel == "agent":
                    # The agent must answer before the save, and stays
                    # connected through it, so a revived guest never sees its
                    # host side close (qemu-ga then sleeps 0.5 s between reads).
                    machine.connect("agent", phase="agent_sync")
                    # So does the runner's socket (a closed host side would
                    # end its read).
                    with machine.watch.phase("arm_runner"):
                        run_socket = values["agent-socket"] + agent.RUNNER_SUFFIX
                        runner = agent.arm_runner(
                            machine.channel, run_socket,
                            timeout=inputs.limits["timeouts.boot"], alive=machine.dead,
                            log=str(machine.qemu.serial_log),
                            port_open=lambda: agent.port_opened(machine.qemu, run_socket))
                try:
                    machine.save(folder, method)
                finally:
                    if runner is not None:
                        runner.close()
        timings = machine.watch.phases
        meta = {"qemu": qemu.version(arch.qemu), "arch": arch.name,
                "machine": machine_name, "cpu": cpu,
                "accelerator": accel_name, "memory_mb": inputs["vm.memory"],
                "cpus": inputs["vm.cpus"], "argv": template, "save_method": method,
                "guest": inputs.kind, "guest_settings": plain(inputs.guest),
                "host_key": base["host_key"], "ssh_user": kind.ssh_user(),
                "user": kind.build_user(inputs),
                "shares": {s.name: {"guest": s.guest, "mode": s.mode, "transport": s.transport,
                                    **_tree_drive(devices, s.name)}
                           for s in shares},
                "timings": timings,
                "channel": agent.meta(channel, runner.pid if runner else None),
                **({"expires": base["expires"]} if base.get("expires") else {})}
        (folder / saved.DISK).chmod(0o444)
        saved.write_meta(folder, meta)
    say(f"snapshot saved in {paths.snapshot} ({method}; boot→SSH "
        f"{timings['boot_to_ssh']} s, save {timings['save']} s)")


def _tree_drive(devices, share: str) -> dict:
    """The CD drive a big folder of this share may come in as an image."""
    if share in devices.tree_drives:
        return {"tree_drive": devices.tree_drives.index(share)}
    return {}


class snapshot_intact:
    """doit up-to-date check: a snapshot whose files no longer match their
    sha256 in meta.json is out of date, so `doit snapshot` (or any build)
    makes a new one. Cheap: files are hashed only when their stamp changed."""

    def __init__(self, paths: Paths):
        self.paths = paths
        self.problem: "str | None" = None

    def __call__(self):
        try:
            meta = saved.read_meta(self.paths.snapshot)
        except UserError:
            return None         # no snapshot: doit runs the stage anyway
        self.problem = saved.damage(self.paths.snapshot, meta)
        return self.problem is None

    def __str__(self) -> str:
        return self.problem or "the snapshot's files match meta.json"

    __repr__ = __str__


def task_snapshot():
    """Boot the installed guest, prepare the shares, save memory and device state."""
    cfg = settings()
    paths = Paths(cfg)
    inputs = stage_inputs(cfg, "snapshot")
    return {"actions": [(take_snapshot, [inputs, paths])],
            "file_dep": [paths.base_meta, paths.payload_manifest, paths.public_key],
            "targets": [paths.snapshot_meta],
            "uptodate": [uptodate(inputs), snapshot_intact(paths)]}
