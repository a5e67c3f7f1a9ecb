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
from ..core import interrupts
from ..core.collect import collect_outputs
from ..core.errors import UserError
from ..core.files import remove
from ..core.proc import run
from ..core import progress
from ..core.space import is_nospace, nospace_message
from ..remote import agent, ssh
from ..remote.channel import Channel
from . import keep
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
        except BaseException as err:
            # An interrupt says which phase it stopped.
            stopped = interrupts.find(err)
            if stopped is not None and stopped.phase is None:
                stopped.phase = name
            raise
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
    keep_failed: bool = False      # save the copy when the command fails (keep.py)


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
    port: int                      # the loopback port forwarded to the guest's sshd
    key: Path

    def ssh(self, timeout: float) -> ssh.Session:
        """An SSH session to the copy (an interactive shell needs one, also
        when builds talk to the guest agent). The caller closes it."""
        if isinstance(self.session, ssh.Session):
            return self.session
        return ssh.connect(self.port, user=self.meta.get("ssh_user", "root"),
                           key_file=self.key, host_key=self.meta["host_key"],
                           timeout=timeout, alive=self.machine.dead,
                           log=str(self.machine.qemu_log))


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
            state: "Path | None" = None, prepare_with_command: bool = False):
    """Yield a ``Copy`` of ``artifacts/snapshot`` (or of another saved state
    folder) with its shares mounted; the copy is killed on exit.

    ``prepare_with_command``: over the guest agent, the guest is prepared
    (clock, entropy, shares) in the first command's own process, not in one
    of its own; a build's result then holds the guest's timing of it."""
    artifacts = Path(artifacts)
    folder = Path(state) if state is not None else artifacts / "snapshot"
    meta = snap.read_meta(folder)
    snap.check(folder, meta)
    from .. import guests
    kind = guests.kind_from_meta(meta)
    in_guest = guest_shares(meta)
    folders = share_folders(in_guest, shares, work, what=name)
    overlay = work / "disk.qcow2"
    img_log = Path(logs) / f"{name}-qemu-img.log"
    img_log.parent.mkdir(parents=True, exist_ok=True)
    img_log.write_text("")   # this copy's only: a line per build would pile up forever
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2",
         "-b", folder / snap.DISK, overlay], log=img_log, what="qemu-img create")
    values = {"artifacts": str(artifacts), "disk": str(overlay),
              "ram": str(folder / snap.RAM), "ram-share": "off", "smb": str(work / "smb"),
              **kind.vm_values(artifacts, work),
              **{f"share.{n}": str(p) for n, p in folders.items()}}
    template = meta["argv"] + ["-incoming", "defer", "-S"]
    # A kept failed copy is reopened over SSH: its agent was in the middle of
    # the failed command's session when it was saved.
    use_agent = agent.uses_agent(meta) and state is None
    if agent.uses_agent(meta):
        values.update(agent.argv_values(work))
    with watch.phase("revive"):
        machine, port = launch_with_port(
            lambda port: snap.fill(template, {**values, "port": port}),
            name=name, logdir=logs)
    try:
        if use_agent:
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
            if prepare_with_command and use_agent:
                session.prelude = lambda: kind.after_revive(in_guest, time.time())
            else:
                with watch.phase("prepare"):
                    session.check(kind.after_revive(in_guest, time.time()), timeout=60,
                                  what="preparing the revived guest (clock, randomness, "
                                       "shares)")
            yield Copy(machine, session, meta, kind, in_guest, folders, port, key)
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
                 watch=watch, prepare_with_command=True) as copy:
        command = copy.kind.command_line(request.command, request.env,
                                         copy.meta.get("user", "root"), copy.shares)
        with open(out / "log", "wb") as log, watch.phase("command"):
            # The same file as logs/build-NAME.log while the build runs, so
            # that `tail -f` follows it; REVIVE_VERBOSE=1 echoes it too.
            live = Path(logs) / f"build-{request.name}.log"
            live.unlink(missing_ok=True)
            try:
                os.link(out / "log", live)
            except OSError:
                # Another filesystem (artifacts/builds on its own mount): a
                # link by name, good while the build runs.
                live.symlink_to(out / "log")
            result = copy.session.run(command, timeout=request.timeout,
                                      sink=progress.build_sink(log, request.name))
        if result.phases:
            # The guest timed the prelude and the command in one process;
            # "channel" is what the host waited beyond them (starting the
            # process, learning that it ended).
            ran = watch.phases.pop("command")
            watch.phases.update(result.phases)
            watch.phases["channel"] = round(max(0.0, ran - sum(result.phases.values())), 3)
        vm_died = copy.machine.proc.poll() is not None
        kept = {}
        if result.exit_code != 0 and request.keep_failed and not vm_died:
            with watch.phase("keep"):
                kept = keep.keep_failed_copy(copy, artifacts=artifacts, work=work,
                                             build=request.name, exit_code=result.exit_code,
                                             timeout=request.revive_timeout)
    meta = copy.meta
    failure = result.failure
    if result.timed_out:
        failure = f"the command did not finish within {request.timeout:.0f} s"
    elif vm_died:
        failure = f"the VM died: {failure}"
    # Collected only once the copy is killed (leaving ``revived``): the
    # guest cannot swap an entry between the check and the copy.
    exchange = copy.folders[next(s.name for s in copy.shares if s.mode == "rw")]
    refused: "list[str]" = []
    with watch.phase("collect"):
        try:
            collected, missing, refused = collect_outputs(exchange, request.outputs,
                                                          out / "outputs")
        except (UserError, OSError) as err:
            # The log and result.json are kept even when the outputs cannot be.
            remove(out / "outputs")
            if isinstance(err, OSError) and not is_nospace(err):
                raise
            collected, missing = [], list(request.outputs)
            failure = failure or (str(err) if isinstance(err, UserError)
                                  else nospace_message(err, out))
    return {**kept, "build": request.name, "exit_code": result.exit_code,
            "timed_out": result.timed_out, "vm_died": vm_died,
            "failure": failure, "outputs": collected,
            "missing_outputs": missing, "refused_outputs": refused,
            "timings": {**watch.phases, "total": watch.total()},
            "snapshot": {"qemu": meta["qemu"], "accelerator": meta["accelerator"],
                         "save_method": meta["save_method"]}}


def write_result(out: Path, result: dict) -> None:
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
