"""Stage 3, snapshot: boot the installed disk once more (through an overlay,
so base.qcow2 is never written), wait for SSH, prepare the shares, stop the
machine and save its memory and device state → artifacts/snapshot/."""

import json

from .common import Paths, Stopwatch, action, config_slice, say, settings
from .core.errors import UserError
from .core.files import atomic_path, remove
from .core.proc import run
from . import guests
from .install import choose_accel, cpu_for
from .machine import qemu
from .machine import snapshot as snap
from .machine.qemu import launch_with_port
from .remote import ssh


def snapshot_slice(cfg) -> dict:
    return {"kind": cfg.guest_kind, "qemu": qemu.version(),
            "vm": {"memory_mb": cfg.vm.memory_mb, "cpus": cfg.vm.cpus,
                   "accel": cfg.vm.accel, "save": cfg.vm.save, "channel": cfg.vm.channel},
            "shares": {n: {"guest": s.guest, "mode": s.mode, "transport": s.transport,
                           "host": str(s.host) if s.host else None}
                       for n, s in cfg.shares.items()}}


def resolved_machine(vm: qemu.Machine, alias: str = "pc") -> str:
    """The versioned machine type behind an alias (pc → pc-i440fx-7.2), so a
    later QEMU reviving this snapshot builds the same board."""
    for m in vm.cmd("query-machines"):
        if m.get("alias") == alias:
            return m["name"]
    return alias


def empty_share_dirs(cfg, work) -> "dict[str, str]":
    """Empty host folders for the snapshot run: the shares are only mounted
    to check them, then unmounted; each build brings its own folders."""
    values = {"smb": str(work / "smb")}
    for name, share in cfg.shares.items():
        folder = work / ("smb" if share.transport == "smb" else "9p") / name
        folder.mkdir(parents=True, exist_ok=True)
        values[f"share.{name}"] = str(folder)
    return values


@action
def take_snapshot(cfg, paths: Paths) -> None:
    kind = guests.kind_for(cfg)
    base = json.loads(paths.base_meta.read_text())
    accel_name, why = choose_accel(cfg, paths, kind)
    say(f"accelerator: {accel_name} ({why})")
    watch = Stopwatch()
    work = paths.work / "snapshot"
    remove(work)
    work.mkdir(parents=True)
    machine_name = _machine_facts(paths)[kind.machine_alias()]
    with atomic_path(paths.snapshot) as folder:
        folder.mkdir()
        run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2",
             "-b", "../base.qcow2", folder / snap.DISK],
            log=paths.logs / "snapshot-qemu-img.log", what="qemu-img create")
        method = snap.choose_method(cfg.vm.save, _machine_facts(paths)["capabilities"])
        template = kind.device_template(machine=machine_name, accel=accel_name,
                                        cpu=cpu_for(accel_name), save_method=method)
        values = {"artifacts": str(paths.artifacts), "disk": str(folder / snap.DISK),
                  "ram": str(folder / snap.RAM), "ram-share": "on",
                  **empty_share_dirs(cfg, work), **kind.vm_values(paths, work),
                  **agent_values(work)}
        machine, port = launch_with_port(
            lambda port: snap.fill(template, {**values, "port": port}),
            name="snapshot", logdir=paths.logs)
        with machine:
            with watch.phase("boot_to_ssh"):
                try:
                    session = ssh.connect(port, user=kind.ssh_user(), key_file=paths.key,
                                          host_key=base["host_key"], timeout=cfg.timeouts.boot,
                                          alive=machine.dead, log=str(machine.qemu_log))
                except UserError as err:
                    raise machine.error_with_screen(err) from None
            with session, watch.phase("prepare_shares"):
                session.check(kind.prepare_shares(list(cfg.shares.values())),
                              timeout=120, what="preparing the shares in the guest")
            # [vm] channel = "agent": the agent must answer before the save,
            # and stays connected through it, so a revived guest never sees
            # its host side close (qemu-ga then sleeps 0.5 s between reads).
            guest_agent = _agent_ready(cfg, machine, work, watch)
            try:
                with watch.phase("save"):
                    snap.save(machine, folder, method, timeout=cfg.timeouts.boot)
            finally:
                if guest_agent is not None:
                    guest_agent.close()
        meta = {"qemu": qemu.version(), "machine": machine_name, "cpu": cpu_for(accel_name),
                "accelerator": accel_name, "memory_mb": cfg.vm.memory_mb, "cpus": cfg.vm.cpus,
                "argv": template, "save_method": method, "guest": cfg.guest_kind,
                "host_key": base["host_key"], "ssh_user": kind.ssh_user(),
                "user": cfg.answers.user if cfg.guest_kind != "windows" else kind.ssh_user(),
                "shares": {n: {"guest": s.guest, "mode": s.mode, "transport": s.transport}
                           for n, s in cfg.shares.items()},
                "timings": watch.phases, "channel": _channel_meta(cfg)}
        (folder / snap.DISK).chmod(0o444)
        snap.write_meta(folder, meta)
    remove(work)
    say(f"snapshot saved in {paths.snapshot} ({method}; boot→SSH "
        f"{watch.phases['boot_to_ssh']} s, save {watch.phases['save']} s)")


# --- [vm] channel = "agent" (issue 9) ---------------------------------------

def agent_values(work) -> "dict[str, str]":
    """The argv values of the agent's socket and output share, in ``work``
    (private: whoever reaches the socket runs anything in the guest)."""
    from .remote import agent
    return {"agent-socket": agent.socket_path(agent.private_dir(work / "agent")),
            "agent-stream": str(agent.private_dir(work / "agent-stream"))}


def _agent_ready(cfg, machine, work, watch):
    if cfg.vm.channel != "agent":
        return None
    from .remote import agent
    with watch.phase("agent_sync"):
        try:
            return agent.connect(agent.socket_path(work / "agent"), timeout=cfg.timeouts.boot,
                                 alive=machine.dead, log=str(machine.serial_log),
                                 setting="[timeouts] boot")
        except UserError as err:
            machine.error(str(err))     # the serial tail into the QEMU log
            raise


def _channel_meta(cfg) -> dict:
    if cfg.vm.channel != "agent":
        return {"kind": "ssh"}
    from .remote import agent
    return {"kind": "agent", "chardev": agent.CHARDEV_ID, "port": agent.PORT_NAME,
            "stream_tag": agent.STREAM_TAG, "stream_guest": agent.STREAM_GUEST}


_facts: dict = {}


def _machine_facts(paths: Paths) -> dict:
    """The versioned machine types behind the aliases and the migration
    capabilities of this QEMU, asked of a short-lived QEMU (features are
    detected, not assumed)."""
    if not _facts:
        with qemu.Machine(["-machine", "none", "-S"], name="features",
                          logdir=paths.logs) as vm:
            vm.launch()
            for alias in ("pc", "q35"):
                _facts[alias] = resolved_machine(vm, alias)
            _facts["capabilities"] = snap.capabilities(vm)
    return _facts


def task_snapshot():
    """Boot the installed guest, prepare the shares, save memory and device state."""
    cfg = settings()
    paths = Paths(cfg)
    return {"actions": [(take_snapshot, [cfg, paths])],
            "file_dep": [paths.base_meta, paths.payload_manifest, paths.public_key],
            "targets": [paths.snapshot_meta],
            "uptodate": [config_slice("snapshot", snapshot_slice(cfg))]}
