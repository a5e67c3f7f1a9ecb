"""Stage 4, build: per [builds.NAME], revive a throwaway copy of the
snapshot (its own disk overlay), mount the build's inputs read-only and a
fresh exchange folder read-write, run the command under its deadline, and
collect outputs, the combined log and the exit code into
artifacts/builds/NAME/. The copy is then killed and its overlay removed."""

import json
import os
import shutil
import time
from pathlib import Path

from .common import Paths, Stopwatch, action, config_slice, files_under, say, settings
from .core.errors import UserError
from .core.files import atomic_path, remove
from .core.proc import run
from . import guests
from .machine import snapshot as snap
from .machine.qemu import launch_with_port
from .remote import ssh


def build_slice(build) -> dict:
    return {"command": build.command, "outputs": list(build.outputs),
            "timeout": build.timeout, "env": build.env,
            "shares": {n: str(p) for n, p in build.shares.items()}}


def revive(paths: Paths, meta: dict, *, name: str, work: Path, shares: "dict[str, Path]",
           timeout: float, watch: Stopwatch, extra: "dict[str, str] | None" = None):
    """Start a copy of the snapshot; return (machine, session). The caller
    owns both and must close them (a context manager does)."""
    overlay = work / "disk.qcow2"
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2",
         "-b", paths.snapshot / snap.DISK, overlay],
        log=paths.logs / f"{name}-qemu-img.log", what="qemu-img create")
    values = {"artifacts": str(paths.artifacts), "disk": str(overlay),
              "ram": str(paths.snapshot / snap.RAM), "ram-share": "off",
              "smb": str(work / "smb"), **(extra or {}),
              **{f"share.{n}": str(p) for n, p in shares.items()}}
    template = meta["argv"] + ["-incoming", "defer", "-S"]
    use_agent = meta.get("channel", {}).get("kind") == "agent"
    if use_agent:
        from .snapshot import agent_values
        values.update(agent_values(work))
    with watch.phase("revive"):
        machine, port = launch_with_port(lambda port: snap.fill(template, {**values, "port": port}),
                                         name=name, logdir=paths.logs)
    try:
        if use_agent:
            # --- [vm] channel = "agent" (issue 9): connected before `cont`,
            # so the revived guest never sees the host side closed.
            with watch.phase("revive"):
                session = _agent_connect(machine, work, timeout)
            try:
                with watch.phase("revive"):
                    snap.incoming(machine, paths.snapshot, meta["save_method"], timeout)
                with watch.phase("connect"):
                    session.sync(timeout, setting="[timeouts] revive")
            except BaseException:
                session.close()
                raise
            return machine, session
        with watch.phase("revive"):
            snap.incoming(machine, paths.snapshot, meta["save_method"], timeout)
        with watch.phase("connect"):
            try:
                session = ssh.connect(port, user=meta.get("ssh_user", "root"),
                                      key_file=paths.key, host_key=meta["host_key"],
                                      timeout=timeout, alive=machine.dead,
                                      log=str(machine.qemu_log))
            except UserError as err:
                raise machine.error_with_screen(err) from None
    except BaseException:
        machine.kill()
        raise
    return machine, session


def _agent_connect(machine, work: Path, timeout: float):
    from .remote import agent
    try:
        return agent.connect(agent.socket_path(work / "agent"), timeout=timeout,
                             alive=machine.dead, log=str(machine.serial_log),
                             stream_dir=work / "agent-stream", sync=False)
    except UserError as err:
        raise machine.error(str(err)) from None


def _guest_shares(meta: dict):
    from .config import Share
    return [Share(name=n, guest=s["guest"], mode=s["mode"], transport=s["transport"], host=None)
            for n, s in meta["shares"].items()]


@action
def run_build(cfg, paths: Paths, build) -> None:
    meta = snap.read_meta(paths.snapshot)
    snap.check(paths.snapshot, meta)
    watch = Stopwatch()
    work = paths.work / f"build-{build.name}-{os.getpid()}"
    remove(work)
    work.mkdir(parents=True)
    shares = share_folders(cfg, build, work)
    target = paths.builds / build.name
    try:
        with atomic_path(target) as out:
            out.mkdir()
            result = _run_in_copy(cfg, paths, meta, build, work, shares, out, watch)
            (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    finally:
        remove(work)
    _report(build, target, result)


def share_folders(cfg, build, work: Path) -> "dict[str, Path]":
    """The host folder behind each share for this build.

    9p shares are the build's folders themselves. QEMU's smbd serves one
    folder (work/smb, as \\10.0.2.4\qemu) and refuses links out of it, so
    an SMB input is copied in as a subfolder and the exchange folder is
    made there.
    """
    folders = {}
    for name, share in cfg.shares.items():
        source = build.shares.get(name)
        if source is not None and not source.is_dir():
            raise UserError(f"config.toml: [builds.{build.name}] shares.{name}: "
                            f"host folder {source} does not exist")
        if share.transport == "smb":
            folder = work / "smb" / name
            if source is not None:
                shutil.copytree(source, folder, symlinks=True)
        else:
            folder = source.resolve() if source is not None else work / name
        folder.mkdir(parents=True, exist_ok=True)
        if share.mode == "rw":
            # The build may run as a non-root user in the guest; the folder
            # is this build's alone and thrown away after collection.
            folder.chmod(0o777)
        folders[name] = folder
    return folders


def _run_in_copy(cfg, paths, meta, build, work, shares, out, watch) -> dict:
    kind = guests.kind_for(cfg)
    machine, session = revive(paths, meta, name=f"build-{build.name}", work=work,
                              shares=shares, timeout=cfg.timeouts.revive, watch=watch,
                              extra=kind.vm_values(paths, work))
    guest_shares = _guest_shares(meta)
    try:
        with watch.phase("prepare"):
            # The clock is set by `date -s` in the same command on both
            # channels: the agent's guest-set-time also runs `hwclock -w`
            # (qemu-ga 7.2), 0.18 s under TCG, half a build's fixed cost.
            session.check(kind.after_revive(guest_shares, time.time()),
                          timeout=60, what="mounting the shares in the guest")
        command = kind.command_line(build.command, build.env, meta.get("user", "root"),
                                    guest_shares)
        with open(out / "log", "wb") as log, watch.phase("command"):
            _live_log(paths, build.name, out / "log")
            result = session.run(command, timeout=build.timeout, sink=log.write)
        with watch.phase("collect"):
            collected, missing = _collect(build, shares[cfg.exchange.name], out / "outputs")
    finally:
        session.close()
        machine.kill()
    return {"build": build.name, "exit_code": result.exit_code,
            "timed_out": result.exit_code is None, "outputs": collected,
            "missing_outputs": missing, "timings": {**watch.phases, "total": watch.total()},
            "snapshot": {"qemu": meta["qemu"], "accelerator": meta["accelerator"],
                         "save_method": meta["save_method"]}}


def _live_log(paths, name: str, log: Path) -> None:
    """A second name for the log while it is written, outside the build's
    temporary folder: `tail -f artifacts/logs/build-NAME-output.log`."""
    live = paths.logs / f"build-{name}-output.log"
    remove(live)
    os.link(log, live)


def _collect(build, exchange: Path, dest: Path) -> "tuple[list[str], list[str]]":
    dest.mkdir()
    collected, missing = [], []
    for rel in build.outputs:
        src = exchange / rel
        if src.is_dir():
            shutil.copytree(src, dest / rel, symlinks=True, copy_function=_copy_output)
        elif src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            _copy_output(src, dest / rel)
        else:
            missing.append(rel)
            continue
        collected.append(rel)
    return collected, missing


def _copy_output(src, dst) -> None:
    """Copy an output with the mode the guest gave it: over 9p mapped-xattr
    the host file is 0600 and the guest's mode is in an xattr."""
    shutil.copy2(src, dst)
    try:
        mode = int.from_bytes(os.getxattr(src, "user.virtfs.mode"), "little")
    except OSError:
        return
    os.chmod(dst, mode & 0o7777)


def _report(build, target: Path, result: dict) -> None:
    log = target / "log"
    t = result["timings"]
    say(f"build {build.name}: exit {result['exit_code']} (revive {t.get('revive')} s, "
        f"command {t.get('command')} s, total {t.get('total')} s) → {target}")
    if result["timed_out"]:
        raise UserError(f"build {build.name}: the command did not finish within "
                        f"[builds.{build.name}] timeout = {build.timeout:.0f} s; log: {log}")
    if result["exit_code"] != 0:
        raise UserError(f"build {build.name}: the command exited with code "
                        f"{result['exit_code']}; log: {log}")
    if result["missing_outputs"]:
        raise UserError(f"build {build.name}: declared outputs not produced: "
                        f"{', '.join(result['missing_outputs'])} ([builds.{build.name}] "
                        f"outputs); log: {log}")


def task_build():
    """Run each [builds.NAME] in a throwaway copy revived from the snapshot."""
    cfg = settings()
    paths = Paths(cfg)
    for build in cfg.builds.values():
        sources = [f for p in build.shares.values() for f in files_under(p)]
        yield {"name": build.name,
               "actions": [(run_build, [cfg, paths, build])],
               "file_dep": [paths.snapshot_meta, *sources],
               "targets": [paths.builds / build.name / "result.json"],
               "uptodate": [config_slice(f"builds.{build.name}", build_slice(build))],
               "doc": f"build {build.name}: {build.command}"}
