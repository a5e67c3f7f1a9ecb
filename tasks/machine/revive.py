"""Revive a throwaway copy of a snapshot, run a build in it, collect.

A library call, no doit: the build stage, the benchmarks and a remote worker
call ``run_build`` (or ``revived`` for a copy to talk to). Everything guest
specific comes from the snapshot's meta.json (``guests.kind_from_meta``), so
a folder laid out like ``artifacts/`` is all a revive needs:

    ARTIFACTS/snapshot/    meta.json and the files it names (disk.qcow2, state, ram)
    ARTIFACTS/base.qcow2   the snapshot disk's backing file (``../base.qcow2``)
    ARTIFACTS/payload/boot/vmlinuz, initrd.img     (Linux kinds)
    ARTIFACTS/base-ovmf-vars.fd                    (UEFI Windows)

The copy gets its own qcow2 overlay on the snapshot's disk (the snapshot is
never written), the build's inputs read-only and a fresh exchange folder
read-write; it is killed when the build ends, on every path.
"""

import contextlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ..config import Share
from ..core.errors import UserError
from ..core.proc import run
from ..remote import agent, ssh
from ..remote.channel import Channel
from . import snapshot as snap
from .qemu import Machine, launch_with_port


class Stopwatch:
    """Named phase timings for result.json and the benchmarks."""

    def __init__(self):
        self.phases: "dict[str, float]" = {}
        self._start = time.monotonic()

    @contextlib.contextmanager
    def phase(self, name: str):
        start = time.monotonic()
        try:
            yield
        finally:
            spent = time.monotonic() - start
            self.phases[name] = round(self.phases.get(name, 0) + spent, 3)

    def total(self) -> float:
        return round(time.monotonic() - self._start, 3)


@dataclass(frozen=True)
class BuildRequest:
    name: str
    command: str
    env: "dict[str, str]"
    outputs: "tuple[str, ...]"
    timeout: float                 # the command's deadline, seconds
    shares: "dict[str, Path]"      # read-only share name → host folder
    revive_timeout: float          # [timeouts] revive


@dataclass
class Copy:
    """A revived copy: its QEMU, a channel to it (SSH or the guest agent),
    its snapshot's meta."""
    machine: Machine
    session: Channel
    meta: dict
    kind: object
    shares: "list[Share]"          # as the guest sees them
    folders: "dict[str, Path]"     # host folder behind each share


def guest_shares(meta: dict) -> "list[Share]":
    return [Share(name=n, guest=s["guest"], mode=s["mode"], transport=s["transport"],
                  host=None) for n, s in meta["shares"].items()]


def share_folders(shares: "list[Share]", inputs: "dict[str, Path]", work: Path,
                  what: str = "the build") -> "dict[str, Path]":
    """The host folder behind each share for one copy.

    9p shares are the build's folders themselves. QEMU's smbd serves one
    folder (work/smb, as \\\\10.0.2.4\\qemu) and refuses links out of it, so
    an SMB input is copied in as a subfolder and the exchange folder is
    made there.
    """
    folders = {}
    for share in shares:
        source = inputs.get(share.name)
        if share.mode == "ro" and source is None:
            raise UserError(f"{what}: no host folder for the read-only share "
                            f"{share.name!r}; map it in the build's shares")
        if source is not None and not Path(source).is_dir():
            raise UserError(f"{what}: shares.{share.name}: host folder {source} "
                            "does not exist")
        if share.transport == "smb":
            folder = work / "smb" / share.name
            if source is not None:
                shutil.copytree(source, folder, symlinks=True)
        else:
            folder = Path(source).resolve() if source is not None else work / share.name
        folder.mkdir(parents=True, exist_ok=True)
        if share.mode == "rw":
            # The build may run as a non-root user in the guest; the folder
            # is this copy's alone and thrown away after collection.
            folder.chmod(0o777)
        folders[share.name] = folder
    return folders


@contextlib.contextmanager
def revived(artifacts: Path, *, name: str, shares: "dict[str, Path]", key: Path,
            work: Path, logs: Path, revive_timeout: float, watch: Stopwatch,
            state: "Path | None" = None):
    """Yield a ``Copy`` of ``artifacts/snapshot`` (or of another saved state
    folder) with its shares mounted; the copy is killed on exit."""
    artifacts = Path(artifacts)
    folder = Path(state) if state is not None else artifacts / "snapshot"
    meta = snap.read_meta(folder)
    snap.check(folder, meta)
    from .. import guests
    kind = guests.kind_from_meta(meta)
    in_guest = guest_shares(meta)
    folders = share_folders(in_guest, shares, work, what=name)
    overlay = work / "disk.qcow2"
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2",
         "-b", folder / snap.DISK, overlay], log=work / "qemu-img.log",
        what="qemu-img create")
    values = {"artifacts": str(artifacts), "disk": str(overlay),
              "ram": str(folder / snap.RAM), "ram-share": "off", "smb": str(work / "smb"),
              **kind.vm_values(artifacts, work),
              **{f"share.{n}": str(p) for n, p in folders.items()}}
    template = meta["argv"] + ["-incoming", "defer", "-S"]
    if agent.uses_agent(meta):
        values.update(agent.argv_values(work))
    with watch.phase("revive"):
        machine, port = launch_with_port(
            lambda port: snap.fill(template, {**values, "port": port}),
            name=name, logdir=logs)
    try:
        if agent.uses_agent(meta):
            session = _agent_session(machine, folder, meta, work, revive_timeout, watch)
        else:
            with watch.phase("revive"):
                snap.incoming(machine, folder, meta["save_method"], revive_timeout)
            with watch.phase("connect"):
                try:
                    session = ssh.connect(port, user=meta.get("ssh_user", "root"), key_file=key,
                                          host_key=meta["host_key"], timeout=revive_timeout,
                                          alive=machine.dead, log=str(machine.qemu_log))
                except UserError as err:
                    raise machine.error_with_screen(err) from None
        with session:
            with watch.phase("prepare"):
                session.check(kind.after_revive(in_guest, time.time()), timeout=60,
                              what="mounting the shares in the guest")
            yield Copy(machine, session, meta, kind, in_guest, folders)
    finally:
        # A throwaway copy: nothing in it is worth a graceful shutdown.
        machine.kill()


def _agent_session(machine: Machine, folder: Path, meta: dict, work: Path,
                   timeout: float, watch: Stopwatch) -> "agent.AgentSession":
    """[vm] channel = "agent": connect to the agent's socket before the state
    is loaded and the guest runs, so the revived guest never sees its host
    side closed (qemu-ga would then sleep 0.5 s between reads), then sync."""
    with watch.phase("revive"):
        try:
            session = agent.connect(agent.socket_path(work / "agent"), timeout=timeout,
                                    alive=machine.dead, log=str(machine.serial_log),
                                    stream_dir=work / "agent-stream", sync=False)
        except UserError as err:
            raise machine.error(str(err)) from None
    try:
        with watch.phase("revive"):
            snap.incoming(machine, folder, meta["save_method"], timeout)
        with watch.phase("connect"):
            session.sync(timeout, setting="[timeouts] revive")
    except BaseException:
        session.close()
        raise
    return session


def run_build(artifacts: Path, request: BuildRequest, *, key: Path, out: Path,
              work: Path, logs: Path) -> dict:
    """Revive a copy, run ``request.command`` in it, write ``out/log`` (as
    the output comes) and ``out/outputs/``; return the result (exit code,
    timings, outputs). A non-zero exit code is a result, not an error."""
    watch = Stopwatch()
    with revived(artifacts, name=f"build-{request.name}", shares=request.shares, key=key,
                 work=work, logs=logs, revive_timeout=request.revive_timeout,
                 watch=watch) as copy:
        command = copy.kind.command_line(request.command, request.env,
                                         copy.meta.get("user", "root"), copy.shares)
        # Unbuffered: the log is followed (tail -f) while it is written.
        with open(out / "log", "wb", buffering=0) as log, watch.phase("command"):
            _live_log(logs, request.name, out / "log")
            result = copy.session.run(command, timeout=request.timeout, sink=_write_all(log))
        exchange = next(s.name for s in copy.shares if s.mode == "rw")
        with watch.phase("collect"):
            collected, missing = collect(request.outputs, copy.folders[exchange],
                                         out / "outputs")
    meta = copy.meta
    return {"build": request.name, "exit_code": result.exit_code,
            "timed_out": result.exit_code is None, "outputs": collected,
            "missing_outputs": missing, "timings": {**watch.phases, "total": watch.total()},
            "snapshot": {"qemu": meta["qemu"], "accelerator": meta["accelerator"],
                         "save_method": meta["save_method"]}}


def _write_all(fh):
    """A sink for an unbuffered file, whose write() may take part of a chunk."""
    def sink(data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[fh.write(view):]
    return sink


def _live_log(logs: Path, name: str, log: Path) -> None:
    """A second name for the log while it is written, outside the build's
    temporary folder: `tail -f artifacts/logs/build-NAME-output.log`."""
    live = Path(logs) / f"build-{name}-output.log"
    live.unlink(missing_ok=True)
    os.link(log, live)


def collect(outputs, exchange: Path, dest: Path) -> "tuple[list[str], list[str]]":
    dest.mkdir()
    collected, missing = [], []
    for rel in outputs:
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


def write_result(out: Path, result: dict) -> None:
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
