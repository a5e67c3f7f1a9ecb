"""`doit shell` and `doit shell:NAME`: a login shell in a throwaway copy of
the snapshot (with build NAME's shares mounted), in the current terminal,
as the build user. Leaving the shell kills the copy; nothing is kept.

``--kept STATE`` opens a failed build's kept state instead (see
tasks/machine/keep.py): the guest resumes as the command left it.
"""

import os
import time
from pathlib import Path
from types import SimpleNamespace

from . import guests
from .build import _guest_shares, input_files, share_folders
from .common import Paths, Stopwatch, action, say, settings
from .core.files import remove
from .core.proc import run
from .machine import keep
from .machine import snapshot as snap
from .machine.qemu import launch_with_port
from .remote import ssh, terminal

KEPT_PARAM = {"name": "kept", "long": "kept", "type": str, "default": "",
              "help": "a kept state of a failed build to resume (a folder name "
                      "under artifacts/kept/ or its path)"}


def _default_build(cfg):
    """No build named: each read-only share shows its default host folder."""
    return SimpleNamespace(name="shell", env={},
                           shares={n: s.host for n, s in cfg.shares.items()
                                   if s.mode == "ro" and s.host is not None})


@action
def open_shell(cfg, paths: Paths, build, kept: str = "") -> None:
    meta = snap.read_meta(paths.snapshot)
    snap.check(paths.snapshot, meta)
    state, state_meta = paths.snapshot, meta
    if kept:
        state = keep.resolve(paths.artifacts, kept, meta)
        state_meta = snap.read_meta(state)
        snap.check(state, state_meta)
        if build is None:
            build = cfg.builds.get(state_meta["kept"]["build"])
    build = build or _default_build(cfg)
    kind = guests.kind_for(cfg)
    work = paths.work / f"shell-{os.getpid()}"
    remove(work)
    work.mkdir(parents=True)
    try:
        shares = share_folders(cfg, build, work)
        machine, session = _revive(paths, meta, state, state_meta, work=work, shares=shares,
                                   extra=kind.vm_values(paths, work),
                                   timeout=cfg.timeouts.revive)
        try:
            guest_shares = _guest_shares(meta)
            session.check(kind.after_revive(guest_shares, time.time()),
                          timeout=60, what="mounting the shares in the guest")
            user = meta.get("user", "root")
            what = f"kept state {state.name}" if kept else "a copy of the snapshot"
            say(f"shell as {user} in {what}"
                + (f" with build {build.name}'s shares" if build.name != "shell" else "")
                + "; leave with exit: the copy is then thrown away")
            command = kind.command_line(terminal.login_command(), build.env, user,
                                        guest_shares)
            terminal.interactive(session.client.get_transport(), command)
        finally:
            session.close()
            machine.kill()
    finally:
        remove(work)
    say("shell ended; the copy is gone")


def _revive(paths: Paths, meta: dict, state: Path, state_meta: dict, *, work: Path,
            shares: "dict[str, Path]", extra: dict, timeout: float):
    """A copy of ``state`` (the snapshot or a kept state laid out like one)
    on its own overlay; returns (machine, session)."""
    overlay = work / "disk.qcow2"
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2",
         "-b", state / snap.DISK, overlay],
        log=paths.logs / "shell-qemu-img.log", what="qemu-img create")
    values = {"artifacts": str(paths.artifacts), "disk": str(overlay),
              "ram": str(paths.snapshot / snap.RAM), "ram-share": "off",
              "smb": str(work / "smb"), **extra,
              **{f"share.{n}": str(p) for n, p in shares.items()}}
    template = meta["argv"] + ["-incoming", "defer", "-S"]
    machine, port = launch_with_port(lambda port: snap.fill(template, {**values, "port": port}),
                                     name="shell", logdir=paths.logs)
    try:
        snap.incoming(machine, state, state_meta["save_method"], timeout)
        session = ssh.connect(port, user=meta.get("ssh_user", "root"), key_file=paths.key,
                              host_key=meta["host_key"], timeout=timeout,
                              alive=machine.dead, log=str(machine.qemu_log))
    except BaseException:
        machine.kill()
        raise
    return machine, session


def task_shell():
    """A login shell in a throwaway copy of the snapshot (shell:NAME: with build NAME's shares)."""
    cfg = settings()
    paths = Paths(cfg)
    common = {"params": [KEPT_PARAM], "uptodate": [False], "verbosity": 2}
    yield {"basename": "shell", "actions": [(open_shell, [cfg, paths, None])],
           "file_dep": [paths.snapshot_meta], "doc": task_shell.__doc__, **common}
    for build in cfg.builds.values():
        yield {"basename": f"shell:{build.name}",
               "actions": [(open_shell, [cfg, paths, build])],
               "file_dep": [paths.snapshot_meta, *input_files(paths, build)],
               "doc": f"a login shell in a copy with build {build.name}'s shares", **common}
