"""One guest machine: a QEMU, the channel to its guest and its kind.

In the manner of QEMU's QEMUMachine and the NixOS test driver's Machine,
and held by every caller alike: the snapshot stage (a machine booted from
the installed disk), builds and the shell (copies revived from the
snapshot, or from a kept state) and cluster workers (the same builds)::

    machine = Machine.revive(folder, artifacts=…, name=…, shares=…, key=…,
                             work=…, logs=…, timeout=…)
    with machine:                   # closed on every path, Ctrl-C included
        machine.launch()            # QEMU started (and the saved state loaded)
        machine.connect()           # the channel: SSH, or the guest agent
        machine.after_revive()      # the kind's steps: clock, shares
        machine.run(…) / machine.check(…)
        machine.keep(…)             # a failed copy saved to be reopened
    machine.cancel(why)             # from any thread: stop it at once

``__init__`` only records; nothing starts before ``launch()``. Everything
guest specific comes from the kind (``revive.guests``), and for a revived
copy from the saved state's meta.json (``guests.kind_from_meta``), so a
folder laid out like ``artifacts/`` is all a revive needs:

    ARTIFACTS/snapshot/    meta.json and the files it names (disk.qcow2, state, ram)
    ARTIFACTS/base.qcow2   the snapshot disk's backing file (``../base.qcow2``)
    and what the kind's ``revive_files`` names (boot kernel, firmware variables)

A revived copy gets its own qcow2 overlay on the saved disk (which is never
written), the build's inputs read-only and a fresh exchange folder
read-write; it is killed when closed.
"""

import contextlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from .. import guests
from ..channel import Channel, CommandResult, agent, ssh
from ..config import Share
from ..core import interrupts, treeimage
from ..core.errors import UserError
from ..qemu import saved
from ..qemu.devices import tree_drive
from ..qemu.process import Qemu, launch_with_port
from . import keep

KEY = "keys/id_ed25519"      # the project's SSH key, relative to artifacts/
IMAGES = "trees/images"      # big read-only shares as ext2 images, relative to artifacts/
OVERLAYS = "overlays"         # a revived copy's empty disk overlay (saved.overlay), ditto


class Stopwatch:
    """Named phase timings for result.json, meta.json and the benchmarks."""

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
class Login:
    """How SSH reaches the guest: its user, the project's key, and the host
    key recorded at install (anything else is refused)."""
    user: str
    key: Path
    host_key: str


class Machine:
    """A guest machine. Make one with ``Machine.boot`` (the snapshot stage)
    or ``Machine.revive`` (a copy of a saved state), then ``launch``."""

    def __init__(self, *, kind, template: "list[str]", values: "dict[str, str]",
                 name: str, logs: Path, work: Path, channel: str, login: Login,
                 timeout: float, setting: str, shares: "list[Share]",
                 folders: "dict[str, Path] | None" = None, state: "Path | None" = None,
                 meta: "dict | None" = None, watch: "Stopwatch | None" = None):
        self.kind = kind
        self.template = list(template)      # argv with @tokens@ (devices.render())
        self.values = dict(values)          # the tokens' values, but @port@
        self.name = name
        self.logs = Path(logs)
        self.work = Path(work)
        self.channel_kind = channel         # "ssh" | "agent": what connect() opens
        self.login = login
        self.timeout = timeout              # for each wait: boot or revive, connect
        self.setting = setting              # the config key that sets it, for errors
        self.shares = shares                # as the guest mounts them
        self.folders = folders or {}        # host folder behind each share
        self.state = state                  # the saved state launch() loads, if any
        self.meta = meta or {}              # the saved state's meta.json
        self.images: "Path | None" = None   # where big read-only shares' images are kept
        self.overlays: "Path | None" = None  # where the empty disk overlay is kept
        self.trees: "dict[str, int]" = {}   # shares mounted from an image: name → drive
        self.media: "dict[str, Path]" = {}  # images put into the drives at revive
        self.watch = watch or Stopwatch()
        self.qemu: Optional[Qemu] = None
        self.port: Optional[int] = None     # loopback port forwarded to the guest's sshd
        self.channel: Optional[Channel] = None
        self.cancelled: Optional[str] = None

    # -- making one --------------------------------------------------------
    @classmethod
    def boot(cls, kind, template: "list[str]", values: "dict[str, str]", *, name: str,
             logs: Path, work: Path, login: Login, timeout: float, shares: "list[Share]",
             watch: "Stopwatch | None" = None) -> "Machine":
        """The installed system booted from its disk (``values`` name it);
        reached over SSH."""
        return cls(kind=kind, template=template, values=values, name=name, logs=logs,
                   work=work, channel="ssh", login=login, timeout=timeout,
                   setting="[timeouts] boot", shares=shares, watch=watch)

    @classmethod
    def revive(cls, folder: Path, *, artifacts: Path, name: str, shares: "dict[str, Path]",
               key: Path, work: Path, logs: Path, timeout: float,
               watch: "Stopwatch | None" = None, channel: "str | None" = None) -> "Machine":
        """A throwaway copy of the saved state in ``folder`` (the snapshot, or
        a kept failed copy): checked now, started by ``launch``. ``shares``:
        the host folder of each read-only share."""
        folder = Path(folder)
        meta = saved.read_meta(folder)
        saved.check(folder, meta)
        check_expiry(meta, time.time(), name)
        kind = guests.kind_from_meta(meta)
        in_guest = guest_shares(meta)
        folders = share_folders(in_guest, shares, work, what=name)
        values = {"artifacts": str(artifacts), "disk": str(work / "disk.qcow2"),
                  "ram": str(folder / saved.RAM), "ram-share": "off",
                  "smb": str(work / "smb"),
                  **kind.vm_values(artifacts, work, in_guest),
                  **{f"share.{n}": str(p) for n, p in folders.items()}}
        if agent.uses_agent(meta):
            values.update(agent.argv_values(work))
        if channel is None:
            # A kept copy reopens over SSH: its agent was in the middle of the
            # failed command's session when it was saved.
            channel = "agent" if agent.uses_agent(meta) and "kept" not in meta else "ssh"
        machine = cls(kind=kind, template=meta["argv"] + ["-incoming", "defer", "-S"],
                      values=values, name=name, logs=logs, work=work, channel=channel,
                      login=Login(meta.get("ssh_user", "root"), key, meta["host_key"]),
                      timeout=timeout, setting="[timeouts] revive", shares=in_guest,
                      folders=folders, state=folder, meta=meta, watch=watch)
        machine.images = Path(artifacts) / IMAGES
        machine.overlays = Path(artifacts) / OVERLAYS
        return machine

    # -- lifecycle ---------------------------------------------------------
    def launch(self) -> "Machine":
        """Start QEMU; a revived copy's state is loaded and it runs on. The
        agent's socket is connected before the state is loaded, so the
        revived guest never sees its host side closed (qemu-ga would then
        sleep 0.5 s between reads)."""
        self._refuse_if_cancelled()
        phase = "revive" if self.state is not None else "boot"
        if self.state is not None:
            self._overlay()
            self._tree_images()
        # The emulator of the saved state's architecture, or the kind's.
        arch = saved.arch_of(self.meta) if self.meta else self.kind.arch()
        with self.watch.phase(phase):
            self.qemu, self.port = launch_with_port(
                lambda port: saved.fill(self.template, {**self.values, "port": port}),
                name=self.name, logdir=self.logs, binary=arch.qemu, private_tmp=True)
        self._refuse_if_cancelled()     # cancelled while QEMU started
        if self.state is None:
            return self
        with self.watch.phase(phase):
            if self.channel_kind == "agent":
                self.channel = self._agent(sync=False)
                self.channel.stream_mounted = False     # QEMU saves no 9p mount
                self._runner()
            saved.incoming(self.qemu, self.state, self.meta["save_method"], self.timeout,
                           media=self.media, timer_csr=arch.timer_csr)
        return self

    def _runner(self) -> None:
        """Connect the resident runner's socket (before the state loads, as
        the agent's) when the saved guest has one waiting: the first
        streamed command goes to it (``agent``'s docstring)."""
        pid = agent.runner_pid(self.meta)
        if pid is None:
            return
        try:
            sock = agent.connect_socket(
                self.values["agent-socket"] + agent.RUNNER_SUFFIX, timeout=self.timeout,
                alive=self.dead, log=str(self.qemu.serial_log),
                what="connecting to the resident runner's socket")
        except UserError as err:
            raise self.qemu.error(str(err)) from None
        self.channel.runner = agent.Runner(sock, pid, log=str(self.qemu.serial_log))

    def _tree_images(self) -> None:
        """A read-only share with a CD drive in the snapshot and a big folder
        comes as an ext2 image (made, or reused from ``images``) in this
        copy's work folder; ``launch`` puts it in the drive."""
        drives = {name: s["tree_drive"] for name, s in self.meta.get("shares", {}).items()
                  if "tree_drive" in s}
        if not drives or self.images is None:
            return
        log = self.logs / f"{self.name}-tree-images.log"
        log.unlink(missing_ok=True)     # this copy's only; made when mke2fs runs
        with self.watch.phase("tree_images"):
            for name, n in sorted(drives.items()):
                image = treeimage.image_at(self.folders[name], self.images, log,
                                           self.work / f"tree-{name}{treeimage.SUFFIX}")
                if image is not None:
                    self.media[tree_drive(n)] = image
                    self.trees[name] = n

    def _overlay(self) -> None:
        log = self.logs / f"{self.name}-qemu-img.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("")   # this copy's only: a line per copy would pile up forever
        saved.overlay(self.state / saved.DISK, self.work / "disk.qcow2",
                      templates=self.overlays, log=log)

    def connect(self, channel: "str | None" = None, *, phase: str = "connect") -> Channel:
        """Open the channel (``channel``, else the machine's own), closing
        any other first: SSH waits for the guest's sshd, the agent answers a
        sync. Within the machine's deadline, watching QEMU."""
        channel = channel or self.channel_kind
        with self.watch.phase(phase):
            if channel == "agent" and isinstance(self.channel, agent.AgentSession):
                if self.channel.runner is not None:
                    # The runner's command asks the agent nothing first.
                    self.channel.sync_later = (self.timeout, self.setting)
                else:
                    self.channel.sync(self.timeout, setting=self.setting)
                return self.channel
            self.disconnect()
            self.channel = self._agent(sync=True) if channel == "agent" else self.ssh()
        return self.channel

    def _agent(self, sync: bool) -> agent.AgentSession:
        try:
            session = agent.connect(agent.socket_path(self.work / "agent"), timeout=self.timeout,
                                 alive=agent.watching_port(self.dead, self.qemu.port_closed),
                                 log=str(self.qemu.serial_log),
                                 stream_dir=self.work / "agent-stream", sync=sync,
                                 setting=self.setting)
        except UserError as err:
            raise self.qemu.error(str(err)) from None
        session.mount = self.kind.program("mount")
        return session

    def ssh(self) -> ssh.Session:
        """An SSH session to the guest: the channel itself when it is SSH
        (an interactive shell needs SSH also when builds use the agent).
        One that is not the channel is the caller's to close."""
        if isinstance(self.channel, ssh.Session):
            return self.channel
        try:
            return ssh.connect(self.port, user=self.login.user, key_file=self.login.key,
                               host_key=self.login.host_key, timeout=self.timeout,
                               alive=self.dead, log=str(self.qemu.qemu_log))
        except UserError as err:
            raise self.qemu.error_with_screen(err) from None

    def after_revive(self, with_command: bool = False) -> None:
        """The kind's steps after each revive: the clock, the randomness, the
        shares. ``with_command``: over the guest agent they run in the next
        command's own guest process (a separate first process pays TCG's
        translation again), and that command's result times them."""
        if with_command and isinstance(self.channel, agent.AgentSession):
            self.channel.prelude = lambda: self.kind.after_revive(self.shares, time.time(),
                                                                  self.trees)
            return
        with self.watch.phase("prepare"):
            self.check(self.kind.after_revive(self.shares, time.time(), self.trees), timeout=60,
                       what="preparing the revived guest (clock, randomness, shares)")

    def cancel(self, why: str = "cancelled") -> None:
        """Stop the machine at once, from any thread: QEMU is killed, so a
        command running over the channel ends with the VM, and a machine
        not launched yet never starts."""
        self.cancelled = why
        qemu = self.qemu
        if qemu is not None and qemu.proc is not None and qemu.proc.poll() is None:
            qemu.proc.kill()

    def _refuse_if_cancelled(self) -> None:
        if self.cancelled:
            raise UserError(f"{self.name}: {self.cancelled}")

    def close(self) -> None:
        """Close the channel and stop QEMU: a revived copy is killed (nothing
        in it is worth a graceful shutdown), a booted one is asked to quit."""
        try:
            self.disconnect()
        finally:
            if self.qemu is not None:
                self.qemu.shutdown(graceful=self.state is None)

    def disconnect(self) -> None:
        """Close the channel; the machine runs on."""
        if self.channel is not None:
            channel, self.channel = self.channel, None
            channel.close()

    def __enter__(self) -> "Machine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- talking to the guest ----------------------------------------------
    def run(self, command: str, *, timeout: float,
            sink: Optional[Callable[[bytes], None]] = None) -> CommandResult:
        self._refuse_if_cancelled()
        return self.channel.run(command, timeout=timeout, sink=sink)

    def check(self, command: str, *, timeout: float = 60, what: str = "") -> str:
        self._refuse_if_cancelled()
        return self.channel.check(command, timeout=timeout, what=what)

    def dead(self) -> Optional[str]:
        """None while the VM runs, else how it ended (for every wait)."""
        return self.qemu.dead() if self.qemu is not None else "QEMU was never started"

    # -- saving ------------------------------------------------------------
    def save(self, folder: Path, method: str) -> float:
        """Stop the machine and write its state into ``folder``; seconds."""
        with self.watch.phase("save"):
            return saved.save(self.qemu, folder, method, self.timeout)

    def keep(self, *, artifacts: Path, build: str, exit_code: "int | None",
             timeout: float) -> dict:
        """Save a failed copy as its command left it, to be reopened with
        the shell: ``{"kept": folder}``, or ``{"kept_error": why}`` when it
        cannot be; the build's own failure is what gets reported either way."""
        # The kind leaves no share mounted (9p blocks the save; SMB would be
        # stale when the state is reopened), the agent's output share neither.
        unmount = self.kind.before_keep(self.shares)
        if agent.uses_agent(self.meta):
            unmount = f"{{ umount {agent.STREAM_GUEST} 2>/dev/null || true; }} && {unmount}"
        try:
            with self.watch.phase("keep"):
                self.check(unmount, timeout=60,
                           what="unmounting the shares to keep the failed copy")
                folder = keep.save_failed(self.qemu, overlay=self.work / "disk.qcow2",
                                          artifacts=artifacts, meta=self.meta, build=build,
                                          exit_code=exit_code, timeout=max(timeout, 60))
        except UserError as err:
            return {"kept_error": str(err)}
        return {"kept": str(folder)}


@contextlib.contextmanager
def revived(folder: Path, *, started: "Callable[[Machine], None] | None" = None,
            prepare_with_command: bool = False, **how):
    """A ``Machine.revive`` copy launched, connected and prepared; closed
    (killed) on leaving. ``started`` is handed the machine before it
    launches (to cancel it from another thread). ``prepare_with_command``:
    see ``Machine.after_revive``."""
    with Machine.revive(folder, **how) as machine:
        if started is not None:
            started(machine)
        machine.launch()
        machine.connect()
        machine.after_revive(with_command=prepare_with_command)
        yield machine


def expiry_text(expires: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(expires))


def check_expiry(meta: dict, now: float, what: str) -> None:
    """Refuse a copy of a guest whose evaluation licence has run out (the
    install recorded when): Windows would shut itself down mid-build."""
    expires = meta.get("expires")
    if expires and now >= expires:
        raise UserError(f"{what}: the snapshot's Windows is an evaluation that expired on "
                        f"{expiry_text(expires)} and would shut down mid-build; install a "
                        "fresh or licensed one (doit install)")


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


def revive_files(artifacts: Path, meta: dict) -> "dict[str, str | None]":
    """Every file a revive of ``artifacts/snapshot`` reads, relative to
    ``artifacts``, with its sha256 where a stage recorded one (None: hash
    it): the snapshot's files and meta.json, the backing base.qcow2, what
    the guest's kind declares (``GuestKind.revive_files``), and the key."""
    files: "dict[str, str | None]" = {f"snapshot/{name}": want["sha256"]
                                      for name, want in meta["files"].items()}
    files[f"snapshot/{saved.META}"] = None
    files["base.qcow2"] = json.loads((Path(artifacts) / "base.json").read_text())["sha256"]
    for rel in guests.kind_from_meta(meta).revive_files():
        files[rel] = None
    files[KEY] = None
    return files

