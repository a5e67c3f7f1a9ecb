"""QEMU's guest agent (qemu-ga) over a virtio-serial port: the channel to a
revived Linux guest that needs no handshake.

The port is one long byte pipe, not a connection: the guest's open file
descriptor lives in guest RAM and survives the revive, so the host only
connects to the new QEMU's chardev socket and talks. Because a previous
client may have left half a request in the agent's parser, every new
connection starts with 0xFF (the agent drops what it holds when it reads
it) and ``guest-sync-delimited`` with a random id; the answer is 0xFF then
``{"return": id}``, and everything before it is stale and dropped.

qemu-ga keeps a command's captured output in memory and cuts it at 16 MB,
so ``run`` with a sink (a build) does not capture: the guest writes the
combined output into a file on a hidden read-write 9p share
(``STREAM_TAG``), which the host follows while the command runs. Small
commands (``check``) capture through the agent.

A revived copy's first command skips qemu-ga (whose first answer after a
revive, and its fork and exec of ``setsid``, cost the guest ~0.2 s under
TCG): the snapshot stage leaves a resident runner in the saved guest, a
``setsid``'d shell started through the agent that sources a second
virtio-serial port (``RUNNER_PORT``). The host writes the first command's
wrapper to that port right after the revive; the runner's shell execs a
fresh `sh` for it, so the runner's pid, recorded in meta.json, is the wrapper's: the
agent's ``guest-exec-status`` and the deadline's kill of its process group
work on it as on a command the agent started. Later commands, and every
copy whose snapshot has no runner, go through the agent.

Every read has a deadline, and every wait asks ``alive`` (is QEMU still
running?) on each round.
"""

import base64
import json
import os
import random
import select
import shlex
import socket
import stat
import time
from pathlib import Path
from typing import Callable, Optional

from ..core.dirwatch import (IN_CLOSE_WRITE, IN_DELETE, IN_DELETE_SELF, IN_MOVED_FROM,
                             IN_Q_OVERFLOW, DirWatch)
from ..core.errors import UserError
from ..core.wait import wait_for
from . import Channel, CommandResult, vm_ended

PORT_NAME = "org.qemu.guest_agent.0"
RUNNER_PORT = "org.revive.run.0"  # the resident runner's virtio-serial port
RUNNER_GONE = 126                 # the runner's exit when it ran nothing
STREAM_TAG = "revive_log"          # the 9p mount tag of the output share
STREAM_GUEST = "/run/revive-log"   # where the guest mounts it
DELIMITER = b"\xff"
SYNC_RETRY = 1.0                   # seconds before a new guest-sync is sent
KILL_TIMEOUT = 10.0
# While a build's command runs the host watches the stream share, not the
# guest; guest-exec-status is asked only when the share says the command may
# have ended, and every SAFETY_POLL seconds in case the command hid that (a
# wakeup of qemu-ga every 5 s costs the command nothing measurable).
SAFETY_POLL = 5.0
# Seconds from the first sign of an end to the first guest-exec-status, then
# doubling: a complete NAME.done (no status needed) follows the output's
# close within milliseconds.
CONFIRM_FIRST = 0.05
TAIL = 1 << 20                     # bytes of a streamed output kept in the result

# What a command sees over SSH as root (dropbear and OpenSSH set these):
# the agent passes its own environment otherwise.
BASE_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/root", "USER": "root", "LOGNAME": "root", "SHELL": "/bin/sh"}


class AgentError(UserError):
    pass


def watching_port(alive: Callable[[], Optional[str]],
                  port_closed: Callable[[str], bool]) -> Callable[[], Optional[str]]:
    """``alive`` that also ends a wait when the guest closed the agent's
    port (qemu-ga killed or stopped in the guest): the chardev socket stays
    open and silent, and a call would wait out its deadline."""
    def check() -> Optional[str]:
        return alive() or (PORT_CLOSED if port_closed(PORT_NAME) else None)
    return check


PORT_CLOSED = ("the guest agent stopped inside the guest (its virtio-serial port closed: "
               "qemu-ga exited or was killed); the VM was running, the channel to it died")


def private_dir(path: Path) -> Path:
    """A folder only this user can enter: whoever reaches the socket can run
    anything in the guest as root."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def argv_values(work: Path) -> "dict[str, str]":
    """The snapshot argv's @agent-socket@ and @agent-stream@ for one QEMU,
    in private folders of its ``work`` folder."""
    return {"agent-socket": socket_path(private_dir(work / "agent")),
            "agent-stream": str(private_dir(work / "agent-stream"))}


# The runner's chardev socket is the agent's path and this: no token of its
# own, so code from before the runner still revives a snapshot that has one
# (its runner then reads an end and exits).
RUNNER_SUFFIX = ".run"
RUNNER_SOCKET = "@agent-socket@" + RUNNER_SUFFIX


def meta(channel: str, runner_pid: "int | None" = None) -> dict:
    """What the snapshot's meta.json records about the channel: with
    ``runner_pid``, the resident runner armed in the saved guest."""
    if channel != "agent":
        return {"kind": channel}
    record = {"kind": "agent", "port": PORT_NAME, "socket_token": "@agent-socket@",
              "stream_tag": STREAM_TAG, "stream_guest": STREAM_GUEST}
    if runner_pid is not None:
        record["runner"] = {"port": RUNNER_PORT, "socket_token": RUNNER_SOCKET,
                            "pid": runner_pid}
    return record


def uses_agent(snapshot_meta: dict) -> bool:
    return snapshot_meta.get("channel", {}).get("kind") == "agent"


def runner_pid(snapshot_meta: dict) -> "int | None":
    """The pid of the runner waiting in a saved guest for its first command,
    or None: a snapshot made without one, or a kept copy (its runner ran the
    failed command)."""
    runner = snapshot_meta.get("channel", {}).get("runner")
    if "kept" in snapshot_meta or not isinstance(runner, dict):
        return None
    pid = runner.get("pid")
    return pid if isinstance(pid, int) and pid > 1 else None


def runner_script() -> str:
    """The resident runner, started through the agent (``setsid``) just
    before the snapshot is saved: it finds its port by name (the tiny guest
    has no udev) and sources the port (`.`, a builtin), so what the host
    writes (``runner_input``) runs as the runner's own process. It opens
    the port once: the guest drops what comes while no process has a port
    open, and a save between a first open's close and the `.`'s open left
    a riscv64 copy that dropped its first command (``arm_runner`` waits
    for that one open). Read end (no host connected) before a script came:
    RUNNER_GONE."""
    return ("__rv_d=; for __rv_p in /sys/class/virtio-ports/*; do "
            "read -r __rv_n <\"$__rv_p/name\" 2>/dev/null && "
            f"[ \"$__rv_n\" = {RUNNER_PORT} ] && __rv_d=/dev/${{__rv_p##*/}}; done; "
            f"[ -n \"$__rv_d\" ] || exit {RUNNER_GONE}; "
            f"cd / && . \"$__rv_d\"; exit {RUNNER_GONE}")


def socket_path(folder: Path) -> str:
    # Short: the runner's socket beside it (RUNNER_SUFFIX) must fit a unix
    # socket's 107 bytes below a project's work folder (it made a build
    # named post-mortem in a pytest folder too long as "agent.sock.run").
    path = str(Path(folder).resolve() / "qga")
    if len((path + RUNNER_SUFFIX).encode()) > 107:
        raise UserError(f"the guest agent's socket path {path}{RUNNER_SUFFIX} is longer than "
                        "a unix socket allows (107 bytes); move the project to a shorter path")
    return path


class Agent:
    """The wire protocol: requests out, one JSON answer per line back."""

    def __init__(self, sock: socket.socket, *, alive: Callable[[], Optional[str]],
                 log: "str | None"):
        self.sock = sock
        self.alive = alive
        self.log = log
        self.buffer = b""

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def _send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as err:
            raise AgentError(f"the guest agent's socket failed: {err}", log=self.log) from None

    def _read_some(self, deadline: float) -> bool:
        """Read what is there within ``deadline``; False when nothing came."""
        dead = self.alive()
        if dead:
            raise AgentError(f"the guest agent did not answer: {dead}", log=self.log)
        wait = max(0.0, min(deadline - time.monotonic(), 0.2))
        ready, _, _ = select.select([self.sock], [], [], wait)
        if not ready:
            return False
        try:
            chunk = self.sock.recv(65536)
        except OSError as err:
            raise AgentError(f"the guest agent's socket failed: {err}", log=self.log) from None
        if not chunk:
            raise AgentError("QEMU closed the guest agent's socket", log=self.log)
        self.buffer += chunk
        return True

    def _line(self, deadline: float) -> Optional[dict]:
        """The next JSON answer, or None at the deadline."""
        while b"\n" not in self.buffer:
            if time.monotonic() >= deadline:
                return None
            self._read_some(deadline)
        line, self.buffer = self.buffer.split(b"\n", 1)
        line = line.replace(DELIMITER, b"").strip()
        if not line:
            return self._line(deadline)
        try:
            answer = json.loads(line)
        except ValueError:
            return {}          # garbage from a previous client: skip it
        return answer if isinstance(answer, dict) else {}

    def sync(self, timeout: float, setting: str = "[timeouts] revive") -> None:
        """Flush the agent's parser and our buffer: 0xFF, guest-sync-delimited
        with a random id, drop everything until its answer. Resent every
        SYNC_RETRY seconds (a request may land before the agent reads)."""
        deadline = time.monotonic() + timeout
        while True:
            ident = random.randrange(1, 2 ** 31)
            self.buffer = b""
            self._send(DELIMITER + json.dumps(
                {"execute": "guest-sync-delimited", "arguments": {"id": ident}}).encode())
            retry = min(deadline, time.monotonic() + SYNC_RETRY)
            while True:
                # Skip to the delimiter the agent sends before its answer.
                if DELIMITER in self.buffer:
                    self.buffer = self.buffer[self.buffer.rindex(DELIMITER) + 1:]
                answer = self._line(retry)
                if answer is None:
                    break
                if answer.get("return") == ident:
                    return
            if time.monotonic() >= deadline:
                raise AgentError(f"the guest agent did not answer within {timeout:.0f} s "
                                 f"({setting}); the guest's console: {self.log}")

    def call(self, command: str, timeout: float = 30, **arguments):
        request = {"execute": command}
        if arguments:
            request["arguments"] = arguments
        self._send(json.dumps(request).encode() + b"\n")
        deadline = time.monotonic() + timeout
        answer = self._line(deadline)
        if answer is None:
            raise AgentError(f"the guest agent did not answer {command} within "
                             f"{timeout:.0f} s", log=self.log)
        if "error" in answer:
            desc = answer["error"].get("desc", answer["error"]) if isinstance(
                answer["error"], dict) else answer["error"]
            raise AgentError(f"guest agent {command} failed: {desc}", log=self.log)
        if "return" not in answer:
            raise AgentError(f"guest agent {command}: unexpected answer {answer!r:.200}",
                             log=self.log)
        return answer["return"]


def runner_input(script: str) -> bytes:
    """What the host writes to the runner's port: its shell execs a fresh
    `sh` for ``script`` (same pid, same process group). A command run in the
    runner's own image, a process from before the save, ran 7-10% slower
    under TCG (a CPU-bound loop, 5.2 s against 4.75 s), and so did the
    prelude's forks from it; one exec'd after the revive runs as under
    ``guest-exec`` (docs/benchmarks.md)."""
    return f"exec /bin/sh -c {shlex.quote(script)}\n".encode()


class Runner:
    """The host side of the resident runner's port: the snapshot stage arms
    it (``arm_runner``), a revived copy hands it its first command
    (``send``)."""

    def __init__(self, sock: socket.socket, pid: int, *, log: "str | None"):
        self.sock = sock
        self.pid = pid
        self.log = log

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, script: str, timeout: float = KILL_TIMEOUT) -> int:
        """Hand the runner ``script`` (run by its shell as itself, so it must
        end the shell with `exit`); the pid that runs it. The socket's
        buffer holds a script of a few kB whether the guest reads or not; a
        longer one that the guest does not take within ``timeout`` fails."""
        try:
            self.sock.settimeout(timeout)
            self.sock.sendall(runner_input(script))
        except socket.timeout:
            raise AgentError(f"the resident runner did not take the command within "
                             f"{timeout:.0f} s", log=self.log) from None
        except OSError as err:
            raise AgentError(f"the resident runner's socket failed: {err}",
                             log=self.log) from None
        finally:
            try:
                self.sock.settimeout(None)
            except OSError:
                pass
        return self.pid


def connect_socket(path: "str | Path", *, timeout: float, what: str,
                   alive: Callable[[], Optional[str]], log: "str | None") -> socket.socket:
    """A connection to one of QEMU's chardev sockets, within ``timeout``."""
    def attempt():
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(path))
        except OSError:
            sock.close()
            return None
        return sock

    return wait_for(attempt, timeout=timeout, what=what, alive=alive, interval=0.01, log=log)


def arm_runner(session: "AgentSession", socket_file: "str | Path", *, timeout: float,
               alive: Callable[[], Optional[str]], log: "str | None",
               port_open: Callable[[], bool]) -> Runner:
    """Start the resident runner through the agent and wait until its `.`
    holds its port open (``port_open``: QEMU says the guest side of the
    runner's port is open; nothing else opens it): the snapshot stage, just
    before the save. The caller keeps the runner's socket connected
    through the save (a guest that saw its host side closed would read an
    end) and closes it after."""
    sock = connect_socket(socket_file, timeout=timeout, alive=alive, log=log,
                          what="connecting to the resident runner's socket")
    runner = Runner(sock, 0, log=log)

    def opened() -> "bool | None":
        if port_open():
            return True
        status = session._status(runner.pid)
        if status.get("exited"):
            raise AgentError(f"the resident runner ended (exit {status.get('exitcode')}) "
                             f"before it opened its port {RUNNER_PORT}", log=log)
        return None

    try:
        runner.pid = session._spawn(runner_script(), capture=False)
        wait_for(opened, timeout=timeout, alive=alive, interval=0.02, log=log,
                 what=f"the resident runner opening its port {RUNNER_PORT} ([timeouts] boot)")
    except BaseException:
        runner.close()
        raise
    return runner


def port_opened(qemu, socket_file: "str | Path") -> bool:
    """Whether the guest holds open the port of the chardev socket
    ``socket_file`` (QMP query-chardev's frontend-open)."""
    name = f"unix:{socket_file},"
    return any(c.get("frontend-open") is True and str(c.get("filename", "")).startswith(name)
               for c in qemu.cmd("query-chardev"))


class AgentSession(Channel):
    """A build's channel to a Linux guest over its agent, with the surface of
    ``ssh.Session`` (run, check, close)."""

    def __init__(self, agent: Agent, *, stream_dir: "Path | None" = None):
        self.agent = agent
        self.stream_dir = stream_dir
        self.runs = 0
        # What a revived guest must run before the first command (clock,
        # entropy, shares), run in that command's own guest process: a
        # separate first process pays TCG's translation cost again.
        self.prelude: "Optional[Callable[[], str]]" = None
        self.prelude_what = "preparing the revived guest"
        # False when the stream share is known not to be mounted (a revived
        # copy: QEMU saves no state with a 9p mount), so the wrapper does
        # not look; None: unknown.
        self.stream_mounted: Optional[bool] = None
        # The resident runner of a revived copy, for its first streamed
        # command; until then the agent has not been asked anything.
        self.runner: Optional[Runner] = None
        # (timeout, setting) of the sync put off while the runner is armed:
        # done before anything else than the runner's command asks the agent.
        self.sync_later: "tuple[float, str] | None" = None
        # How the wrapper calls mount (the guest kind's ``program``).
        self.mount = "mount"

    def close(self) -> None:
        self.agent.close()
        self.drop_runner()

    def drop_runner(self) -> None:
        if self.runner is not None:
            runner, self.runner = self.runner, None
            runner.close()

    def _synced(self) -> None:
        """The first command is not the runner's: it goes unused (it waits
        on, harmless) and the put-off sync is done now."""
        self.drop_runner()
        if self.sync_later is not None:
            (timeout, setting), self.sync_later = self.sync_later, None
            self.agent.sync(timeout, setting)

    def sync(self, timeout: float, setting: str = "[timeouts] revive") -> None:
        self.agent.sync(timeout, setting)

    # -- commands ----------------------------------------------------------
    def _spawn(self, script: str, capture: bool) -> int:
        # setsid: the command gets its own process group, so a deadline kills
        # all of it (qemu-ga's children are not group leaders, so setsid does
        # not fork and the pid stays the command's).
        answer = self.agent.call("guest-exec", path="/usr/bin/setsid",
                                 arg=["/bin/sh", "-c", script],
                                 env=[f"{k}={v}" for k, v in BASE_ENV.items()],
                                 **{"capture-output": capture})
        return int(answer["pid"])

    def _status(self, pid: int) -> dict:
        return self.agent.call("guest-exec-status", pid=pid)

    def _kill(self, pid: int) -> None:
        try:
            killer = self._spawn(f"kill -9 -{pid} {pid} 2>/dev/null; true", capture=False)
            deadline = time.monotonic() + KILL_TIMEOUT
            while time.monotonic() < deadline and not self._status(killer).get("exited"):
                time.sleep(0.02)
            deadline = time.monotonic() + KILL_TIMEOUT
            while time.monotonic() < deadline and not self._status(pid).get("exited"):
                time.sleep(0.02)
        except UserError:
            pass    # the caller kills the whole machine next

    def run(self, command: str, *, timeout: float,
            sink: Optional[Callable[[bytes], None]] = None) -> CommandResult:
        """Run ``command`` with /bin/sh as root; stream its combined output
        to ``sink``; stop at ``timeout`` (exit_code None, the command killed)."""
        if sink is not None and self.stream_dir is not None:
            return self._run_streamed(command, timeout, sink)
        self._synced()
        self.run_prelude()
        return self._run_captured(command, timeout, sink)

    def run_prelude(self, timeout: float = 60) -> None:
        """Run the pending prelude on its own (a caller that needs the
        guest prepared before it runs anything)."""
        if self.prelude is not None:
            self._synced()
            script, self.prelude = self.prelude(), None
            result = self._run_captured(script, timeout, None)
            if result.exit_code != 0:
                raise _prelude_failed(self.prelude_what, result.exit_code, result.output)

    def _run_captured(self, command: str, timeout: float, sink) -> CommandResult:
        """A short command whose output qemu-ga captures: its status is
        asked for, backing off to 0.1 s (preparing a copy, small checks)."""
        start = time.monotonic()
        deadline = start + timeout
        pid = self._spawn(f"exec 2>&1 </dev/null; cd /root 2>/dev/null; {command}",
                          capture=True)
        interval = 0.005
        try:
            while True:
                status = self._status(pid)
                if status.get("exited"):
                    break
                if time.monotonic() > deadline:
                    self._kill(pid)
                    return CommandResult(command, None, "", time.monotonic() - start,
                                         "timeout")
                time.sleep(interval)
                interval = min(interval * 1.5, 0.1)
        except AgentError:
            # The VM ended under the command: a result, not an error. Its
            # socket may close before QEMU can be reaped.
            dead = vm_ended(self.agent.alive)
            if not dead:
                raise
            return CommandResult(command, None, "", time.monotonic() - start, dead)
        data = base64.b64decode(status.get("out-data", ""))
        if sink and data:
            sink(data)
        return CommandResult(command, _exit_code(status), data.decode(errors="replace"),
                             time.monotonic() - start)

    def _run_streamed(self, command: str, timeout: float, sink) -> CommandResult:
        """A build's command: its output goes to a file on the stream share,
        and when it ends the wrapper shell leaves a status file beside it.
        The host watches its own side of that folder (inotify), so the
        guest is not woken while the command runs; ``guest-exec-status``
        only confirms the end, when the folder says something happened
        (status file, output closed or removed) and, as a safety net, every
        SAFETY_POLL seconds (a command that unmounts the share or kills its
        wrapper)."""
        start = time.monotonic()
        deadline = start + timeout
        self.runs += 1
        name = f"out-{os.getpid()}-{self.runs}"
        done_name = f"{name}.done"
        follower = _Follower(self.stream_dir / name)
        done = self.stream_dir / done_name
        prelude_file = self.stream_dir / f"{name}.prepare"
        script = _wrapper(command, name, self.prelude() if self.prelude else None,
                          fresh=self.stream_mounted is False, mount=self.mount)
        self.prelude, self.stream_mounted = None, None
        output = bytearray()
        watch = DirWatch(self.stream_dir)
        runner, self.runner = self.runner, None
        if runner is None:
            self._synced()
        # The agent stays unasked on the runner's path unless the end needs
        # confirming: it was synced before the save, and nothing since.
        self.sync_later = None
        try:
            # The runner's shell sources the wrapper: BASE_ENV is its own
            # (the agent started it), as the agent would pass it.
            pid = runner.send(script) if runner else self._spawn(script, capture=False)
            last_poll = time.monotonic()
            next_poll = last_poll + SAFETY_POLL
            interval = CONFIRM_FIRST
            suspect = False      # the folder said the command may have ended
            since = 0.0          # when it first said so
            while True:
                dead = self.agent.alive()
                if dead:
                    _drain(follower, output, sink, limit=1 << 62)
                    return CommandResult(command, None, output.decode(errors="replace"),
                                         time.monotonic() - start, dead)
                now = time.monotonic()
                if now > deadline:
                    self._kill(pid)
                    _drain(follower, output, sink, limit=1 << 62)
                    return CommandResult(command, None, output.decode(errors="replace"),
                                         time.monotonic() - start, "timeout")
                events = watch.wait(min(0.2, deadline - now, max(0.0, next_poll - now)))
                _drain(follower, output, sink)
                if os.path.lexists(done):
                    # The wrapper's last word: the command ended, with this
                    # exit code (the wrapper's own, when it exits next).
                    code = _done_exit(_small_file(done))
                    if code is not None:
                        status = {"exitcode": code}
                        break
                if os.path.lexists(done) or any(_ends(mask, event, name)
                                                for mask, event in events):
                    if not suspect:
                        suspect, since = True, time.monotonic()
                    next_poll = min(next_poll, max(last_poll, since) + interval)
                if time.monotonic() < next_poll:
                    continue
                status = self._status(pid)
                last_poll = time.monotonic()
                if status.get("exited"):
                    break
                # Not ended yet (the wrapper about to exit, or a command that
                # closed its output and goes on): ask again, backing off to
                # the safety net's pace.
                if suspect:
                    interval = min(interval * 2, SAFETY_POLL)
                next_poll = last_poll + (interval if suspect else SAFETY_POLL)
            _drain(follower, output, sink, limit=1 << 62)
            phases = _guest_phases(_small_file(done))
            if runner is not None and status.get("exitcode") == RUNNER_GONE \
                    and follower.fd is None and not os.path.lexists(done):
                raise AgentError(f"the resident runner in the revived guest ended before it "
                                 f"ran the command (exit {RUNNER_GONE}: its port read an end); "
                                 "rerun `doit snapshot`", log=self.agent.log)
            if phases is None:
                raise _prelude_failed(self.prelude_what, _exit_code(status),
                                      _small_file(prelude_file, 4096))
        except AgentError:
            # The VM ended under the command: a result (as over SSH), not an error.
            dead = vm_ended(self.agent.alive)
            if not dead:
                raise
            _drain(follower, output, sink, limit=1 << 62)
            return CommandResult(command, None, output.decode(errors="replace"),
                                 time.monotonic() - start, dead)
        finally:
            if runner is not None:
                runner.close()
            watch.close()
            follower.close()
            for leftover in (done, prelude_file):
                try:
                    leftover.unlink()
                except OSError:
                    pass
        return CommandResult(command, _exit_code(status), output.decode(errors="replace"),
                             time.monotonic() - start, phases=phases)


def _wrapper(command: str, name: str, prelude: "str | None", fresh: bool = False,
             mount: str = "mount") -> str:
    """The guest side of a streamed command: mount the stream share with
    ``mount`` (``fresh``: without looking whether it is mounted), run
    the prelude in the same shell (its output to NAME.prepare; NAME.done
    says "prepare" when it fails or exits), then the command in a subshell
    (on lines of its own: it may end in a comment; a subshell so the wrapper
    outlives an `exit` or `exec` in it) with its output to NAME, then leave
    NAME.done with the guest's uptime at each step and the exit code, which
    tells the host the command ended, how, and how long each part took
    inside the guest (the stream
    share's mount counts as preparation). `read` and `echo` are shell
    builtins: the timing starts no process."""
    def guest(suffix: str = "") -> str:
        return shlex.quote(f"{STREAM_GUEST}/{name}{suffix}")
    script = (f"read t0 _ </proc/uptime; {mount_stream_command(fresh, mount)} || exit 125; "
              "cd /root 2>/dev/null; ")
    if prelude:
        # In the wrapper's own shell (braces, not a subshell: one fork
        # less); an `exit` in it still leaves NAME.done saying it failed.
        script += (f"__rv_d={guest('.done')}; trap 'echo prepare >\"$__rv_d\"' EXIT; "
                   f"{{\n{prelude}\n}} >{guest('.prepare')} 2>&1 </dev/null || exit; "
                   "trap - EXIT; read t1 _ </proc/uptime; ")
    else:
        script += "t1=$t0; "
    return script + (f"(\n{command}\n) >{guest()} 2>&1 </dev/null; rc=$?; "
                     f"read t2 _ </proc/uptime; echo \"$t0 $t1 $t2 $rc\" >{guest('.done')}; "
                     "exit $rc")


def _small_file(path: Path, limit: int = 256) -> str:
    """A short file the guest wrote, read without following links."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return ""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ""
        return os.read(fd, limit).decode(errors="replace")
    finally:
        os.close(fd)


def _guest_phases(done: str) -> "dict[str, float] | None":
    """Seconds of the prelude and the command from the guest's uptimes in
    NAME.done; {} when it is missing or garbled (the command removed it),
    None when the prelude failed."""
    if done.strip() == "prepare":
        return None
    try:
        t0, t1, t2 = (float(v) for v in done.split()[:3])
    except ValueError:
        return {}
    if not 0 <= t1 - t0 <= 1e6 or not 0 <= t2 - t1 <= 1e7:
        return {}
    return {"prepare": round(t1 - t0, 3), "command": round(t2 - t1, 3)}


def _done_exit(done: str) -> "int | None":
    """The command's exit code from a complete NAME.done, else None (not
    written yet, the prelude failed, or garbled: guest-exec-status says)."""
    fields = done.split()
    if len(fields) != 4 or not fields[3].isdigit() or int(fields[3]) > 255:
        return None
    return int(fields[3])


def _prelude_failed(what: str, code: "int | None", output: str) -> UserError:
    why = "timed out" if code is None else f"exit {code}"
    last = output.strip().splitlines()[-1:] or [""]
    return UserError(f"{what} (clock, randomness, shares) failed ({why}): {last[0]}")


def _exit_code(status: dict) -> int:
    if "exitcode" in status:
        return int(status["exitcode"])
    # Killed by a signal: what a shell would report for it.
    return 128 + int(status.get("signal", 0))


def _ends(mask: int, event: str, name: str) -> bool:
    """An event in the stream folder that may mean the command ended: its
    output closed for writing (the command and its children are gone, or
    the share was unmounted), a file removed or renamed, the folder gone,
    or events lost."""
    if mask & (IN_Q_OVERFLOW | IN_DELETE | IN_MOVED_FROM | IN_DELETE_SELF):
        return True
    return bool(mask & IN_CLOSE_WRITE) and event == name


def mount_stream_command(fresh: bool = False, mount: str = "mount") -> str:
    """Mount the stream share with ``mount`` (the guest kind's program
    for it) unless it is mounted (``fresh``: known not to be; /proc/mounts
    is not read, which `read` does a byte per system call). Shell builtins
    only (read, test): after a revive every process the guest starts pays
    TCG's translation again, so the check and the folder's creation start
    none."""
    check = ("" if fresh else
             f"__rv_m=; while read -r _ __rv_p _; do "
             f"[ \"$__rv_p\" = {STREAM_GUEST} ] && __rv_m=1; done </proc/mounts; "
             f"[ -n \"$__rv_m\" ] || ")
    return (f"{{ {check}{{ {{ [ -d {STREAM_GUEST} ] || mkdir -p {STREAM_GUEST}; }} && "
            f"{mount} -t 9p -o trans=virtio,version=9p2000.L,msize=262144,rw "
            f"{STREAM_TAG} {STREAM_GUEST}; }}; }}")


class _Follower:
    """Reads a file the guest writes on the stream share, as it grows. The
    guest is untrusted: the file is opened without following links and must
    be a regular file."""

    def __init__(self, path: Path):
        self.path = path
        self.fd: Optional[int] = None

    def read(self, limit: int = 1 << 20) -> bytes:
        if self.fd is None:
            try:
                fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except FileNotFoundError:
                return b""
            except OSError as err:
                raise UserError(f"the guest's output file {self.path} cannot be read: "
                                f"{err}") from None
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise UserError(f"the guest replaced its output file {self.path} by "
                                "something that is not a file")
            self.fd = fd
        return os.read(self.fd, limit)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        try:
            self.path.unlink()
        except OSError:
            pass


def _drain(follower: _Follower, output: bytearray, sink, limit: int = 64 << 20) -> None:
    """Pass on what the file holds now (up to ``limit`` per call, so a
    command that writes fast cannot keep its status from being asked)."""
    done = 0
    while done < limit:
        chunk = follower.read()
        if not chunk:
            return
        done += len(chunk)
        sink(chunk)
        # The sink keeps the whole output; the result keeps its tail.
        output += chunk
        if len(output) > 2 * TAIL:
            del output[:-TAIL]


def connect(socket_file: "str | Path", *, timeout: float, alive: Callable[[], Optional[str]],
            log: "str | None" = None, stream_dir: "Path | None" = None,
            sync: bool = True, setting: str = "[timeouts] revive") -> AgentSession:
    """Connect to QEMU's chardev socket for the agent and (``sync``) make sure
    the agent answers, within ``timeout``, else one line naming ``log``."""
    deadline = time.monotonic() + timeout
    sock = connect_socket(socket_file, timeout=timeout, alive=alive, log=log,
                          what="connecting to the guest agent's socket")
    agent = Agent(sock, alive=alive, log=log)
    session = AgentSession(agent, stream_dir=stream_dir)
    if sync:
        try:
            agent.sync(max(0.1, deadline - time.monotonic()), setting)
        except BaseException:
            agent.close()
            raise
    return session
