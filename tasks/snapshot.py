"""Stage 3, snapshot: boot the installed disk once more (through an overlay,
so base.qcow2 is never written), wait for SSH, prepare the shares, stop the
machine and save its memory and device state → artifacts/snapshot/."""

import json

from .common import Paths, action, base_damage, say, settings, stage_inputs, uptodate
from revive.core.errors import UserError
from revive.core.files import atomic_path, remove
from revive.core.progress import StatusLine
from revive.core.proc import run
from revive.inputs import plain
from revive.machine import accel, qemu
from revive.machine import snapshot as snap
from revive.machine.qemu import launch_with_port
from revive.machine.revive import Stopwatch
from revive.remote import agent, ssh


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
    accel_name, why = accel.choose(inputs["vm.accel"], lambda: kind.probe_kernel(paths),
                                   paths.accel_cache)
    say(f"accelerator: {accel_name} ({why})")
    timeout = inputs.limits["timeouts.boot"]
    watch = Stopwatch()
    work = paths.work / "snapshot"
    remove(work)
    work.mkdir(parents=True)
    features = qemu.features(paths.logs)
    machine_name = features[kind.machine_alias()]
    method = snap.choose_method(inputs["vm.save"], features["capabilities"])
    cpu = kind.cpu_model(accel_name)
    # The template keeps @tokens@ for what each revive fills in.
    devices = kind.installed_devices(inputs).with_(
        machine=machine_name, accel=accel_name, cpu=cpu,
        ram_file="@ram@" if method == "file" else None, ram_share="@ram-share@")
    template = devices.render()
    shares = list(inputs["shares"].values())
    with atomic_path(paths.snapshot) as folder:
        folder.mkdir()
        run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2",
             "-b", "../base.qcow2", folder / snap.DISK],
            log=work / "qemu-img.log", what="qemu-img create")
        values = {"artifacts": str(paths.artifacts), "disk": str(folder / snap.DISK),
                  "ram": str(folder / snap.RAM), "ram-share": "on",
                  **empty_share_dirs(shares, work), **kind.vm_values(paths.artifacts, work, shares),
                  **(agent.argv_values(work) if inputs["vm.channel"] == "agent" else {})}
        machine, port = launch_with_port(
            lambda port: snap.fill(template, {**values, "port": port}),
            name="snapshot", logdir=paths.logs)
        with machine, StatusLine("snapshot", console=machine.serial_log):
            with watch.phase("boot_to_ssh"):
                try:
                    session = ssh.connect(port, user=kind.ssh_user(), key_file=paths.key,
                                          host_key=base["host_key"], timeout=timeout,
                                          alive=machine.dead, log=str(machine.qemu_log))
                except UserError as err:
                    raise machine.error_with_screen(err) from None
            with session, watch.phase("prepare_shares"):
                session.check(kind.prepare_shares(shares),
                              timeout=120, what="preparing the shares in the guest")
            # [vm] channel = "agent": the agent must answer before the save,
            # and stays connected through it, so a revived guest never sees
            # its host side close (qemu-ga then sleeps 0.5 s between reads).
            guest_agent = _agent_ready(inputs, machine, work, watch, timeout)
            try:
                with watch.phase("save"):
                    snap.save(machine, folder, method, timeout=timeout)
            finally:
                if guest_agent is not None:
                    guest_agent.close()
        meta = {"qemu": qemu.version(), "machine": machine_name, "cpu": cpu,
                "accelerator": accel_name, "memory_mb": inputs["vm.memory"],
                "cpus": inputs["vm.cpus"], "argv": template, "save_method": method,
                "guest": inputs.kind, "guest_settings": plain(inputs.guest),
                "host_key": base["host_key"], "ssh_user": kind.ssh_user(),
                "user": kind.build_user(inputs),
                "shares": {s.name: {"guest": s.guest, "mode": s.mode, "transport": s.transport}
                           for s in shares},
                "timings": watch.phases, "channel": agent.meta(inputs["vm.channel"]),
                **({"expires": base["expires"]} if base.get("expires") else {})}
        (folder / snap.DISK).chmod(0o444)
        snap.write_meta(folder, meta)
    remove(work)
    say(f"snapshot saved in {paths.snapshot} ({method}; boot→SSH "
        f"{watch.phases['boot_to_ssh']} s, save {watch.phases['save']} s)")


class snapshot_intact:
    """doit up-to-date check: a snapshot whose files no longer match their
    sha256 in meta.json is out of date, so `doit snapshot` (or any build)
    makes a new one. Cheap: files are hashed only when their stamp changed."""

    def __init__(self, paths: Paths):
        self.paths = paths
        self.problem: "str | None" = None

    def __call__(self):
        try:
            meta = snap.read_meta(self.paths.snapshot)
        except UserError:
            return None         # no snapshot: doit runs the stage anyway
        self.problem = snap.damage(self.paths.snapshot, meta)
        return self.problem is None

    def __str__(self) -> str:
        return self.problem or "the snapshot's files match meta.json"

    __repr__ = __str__


def _agent_ready(inputs, machine, work, watch, timeout):
    if inputs["vm.channel"] != "agent":
        return None
    with watch.phase("agent_sync"):
        try:
            return agent.connect(agent.socket_path(work / "agent"), timeout=timeout,
                                 alive=machine.dead, log=str(machine.serial_log),
                                 setting="[timeouts] boot")
        except UserError as err:
            machine.error(str(err))     # the serial tail into the QEMU log
            raise


def task_snapshot():
    """Boot the installed guest, prepare the shares, save memory and device state."""
    cfg = settings()
    paths = Paths(cfg)
    inputs = stage_inputs(cfg, "snapshot")
    return {"actions": [(take_snapshot, [inputs, paths])],
            "file_dep": [paths.base_meta, paths.payload_manifest, paths.public_key],
            "targets": [paths.snapshot_meta],
            "uptodate": [uptodate(inputs), snapshot_intact(paths)]}
