"""One QEMU process: launched, watched, talked to over QMP, always reaped.

Modelled on QEMU's own python/qemu/machine: ``__init__`` records, ``launch()``
starts, the context manager's exit shuts down (QMP ``quit`` first, then kill)
on every path, Ctrl-C included. QMP runs over a socketpair; the serial console
goes to a log file whose tail every error carries.
"""

import ctypes
import functools
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

from qemu.qmp.legacy import QEMUMonitorProtocol

from ..core.errors import UserError
from ..core.space import describe_filesystem
from .devices import ARCHES

BINARY = "qemu-system-x86_64"
INSTALL_HINT = ("install QEMU: run ./setup.sh, or apt-get install "
                "qemu-system-x86 qemu-utils")


def _install_hint(name: str) -> str:
    package = next((a.qemu_package for a in ARCHES.values() if a.qemu == name),
                   "qemu-system-x86")
    return f"install QEMU: run ./setup.sh, or apt-get install {package} qemu-utils"


@functools.lru_cache(maxsize=None)
def binary(name: str = BINARY) -> str:
    """The path of a QEMU system emulator (``devices.ARCHES[...].qemu``)."""
    path = shutil.which(name)
    if not path:
        raise UserError(f"{name} not found; {_install_hint(name)}")
    return path


@functools.lru_cache(maxsize=None)
def version(name: str = BINARY) -> str:
    """The version QEMU reports, e.g. "7.2.22"."""
    out = subprocess.run([binary(name), "-version"], capture_output=True, text=True,
                         stdin=subprocess.DEVNULL, timeout=30).stdout
    m = re.search(r"version (\d+\.\d+\.\d+)", out)
    if not m:
        raise UserError(f"{binary(name)} -version printed no version; {_install_hint(name)}")
    return m.group(1)


def _die_with_parent() -> None:
    # If revive itself is killed outright, the kernel kills QEMU too.
    libc = ctypes.CDLL(None, use_errno=True)
    PR_SET_PDEATHSIG = 1
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    # Ctrl-C reaches revive, which shuts QEMU down itself; QEMU must not race it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


class Qemu:
    """A QEMU process. ``args`` is the device model; this class adds the
    QMP channel, the serial console and the process plumbing."""

    def __init__(self, args: "list[str]", *, name: str, logdir: Path,
                 quit_timeout: float = 10, binary: str = BINARY,
                 private_tmp: bool = False):
        self.args = [str(a) for a in args]
        # private_tmp: QEMU's own temporary files (smb='s qemu-smb.XXXXXX:
        # smbd's configuration, databases, log and sockets) go to a folder
        # of their own, removed with QEMU: QEMU only removes them itself
        # when it quits, and a revived copy is killed. Under the system's
        # temporary folder, not the project: smbd's socket paths below it
        # must stay within a UNIX socket's 108 bytes. Named by this PID: a
        # killed doit's are swept by the next (core.files.sweep_stale).
        self.private_tmp = private_tmp
        self.tmpdir: Optional[Path] = None
        self.binary = binary
        self.name = name
        self.serial_log = Path(logdir) / f"{name}-serial.log"
        self.qemu_log = Path(logdir) / f"{name}-qemu.log"
        self.quit_timeout = quit_timeout
        self.proc: Optional[subprocess.Popen] = None
        self.qmp: Optional[QEMUMonitorProtocol] = None
        self._sock: Optional[socket.socket] = None
        self.argv: "list[str]" = []
        self._next_status = 0.0
        self._stopped: Optional[str] = None
        self._closed_ports: "set[str]" = set()   # virtio-serial port ids the guest closed

    # -- lifecycle -------------------------------------------------------
    def launch(self, connect_timeout: float = 30) -> "Qemu":
        self.serial_log.parent.mkdir(parents=True, exist_ok=True)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.argv = [binary(self.binary), "-nodefaults", "-display", "none",
                     "-chardev", f"socket,id=qmp,fd={theirs.fileno()}",
                     "-mon", "chardev=qmp,mode=control",
                     "-chardev", f"file,id=serial0,path={self.serial_log}",
                     "-serial", "chardev:serial0", *self.args]
        env = None
        if self.private_tmp:
            self.tmpdir = Path(tempfile.mkdtemp(prefix=f"revive-qemu-{os.getpid()}-"))
            env = dict(os.environ, TMPDIR=str(self.tmpdir))
        with open(self.qemu_log, "w") as log:
            log.write("+ " + shlex.join(self.argv) + "\n")
            log.flush()
            try:
                self.proc = subprocess.Popen(
                    self.argv, stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT, pass_fds=[theirs.fileno()],
                    preexec_fn=_die_with_parent, env=env)
            finally:
                theirs.close()
        self._sock = ours
        try:
            self.qmp = QEMUMonitorProtocol(ours)
            self.qmp.settimeout(connect_timeout)
            self._connect(connect_timeout)
            self.qmp.settimeout(30)
        except BaseException:
            self.shutdown()
            raise
        return self

    def _connect(self, timeout: float) -> None:
        # The QMP library's connect() has no deadline of its own; a QEMU that
        # never greets is killed, which closes the socket and ends the wait.
        watchdog = threading.Timer(timeout, self.proc.kill)
        watchdog.start()
        try:
            self.qmp.connect()
        except Exception:
            dead = self.dead()
            if watchdog.finished.is_set():
                dead = f"no QMP greeting within {timeout:.0f} s"
            raise self.error(f"QEMU did not start ({dead or 'no QMP greeting'})") from None
        finally:
            watchdog.cancel()

    def __enter__(self) -> "Qemu":
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()

    def shutdown(self, graceful: bool = True) -> Optional[int]:
        """Stop QEMU and reap it; safe to call twice and after a failed launch."""
        if self.proc is None:
            return None
        try:
            if graceful and self.proc.poll() is None and self.qmp is not None:
                try:
                    self.qmp.settimeout(2)
                    self.qmp.cmd("quit")
                except Exception:
                    pass
                try:
                    self.proc.wait(timeout=self.quit_timeout)
                except subprocess.TimeoutExpired:
                    pass
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            if self.tmpdir is not None:
                shutil.rmtree(self.tmpdir, ignore_errors=True)
            if self.qmp is not None:
                # The library's close() waits without a deadline for its
                # reader to finish; a socket shut down here ends it at once.
                if self._sock is not None:
                    try:
                        self._sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                try:
                    self.qmp.close()
                except Exception:
                    pass
                self.qmp = None
        return self.proc.returncode

    def kill(self) -> None:
        self.shutdown(graceful=False)

    # -- watching --------------------------------------------------------
    def dead(self) -> Optional[str]:
        """None while QEMU runs, else how it ended (for waits)."""
        if self.proc is None:
            return "QEMU was never started"
        code = self.proc.poll()
        if code is None:
            return self.stopped()
        lines = [l for l in tail(self.qemu_log, 5).splitlines()
                 if l.strip() and not l.startswith(("+ ", "---"))]
        how = f"code {code}"
        if code < 0:
            try:
                how = f"signal {signal.Signals(-code).name}"
            except ValueError:
                pass
        return f"QEMU exited ({how})" + (f": {lines[-1].strip()}" if lines else "")

    # A VM paused on a full disk looks alive; ask its run state, at a modest
    # rate since every wait round calls dead().
    STATUS_INTERVAL = 0.5

    def stopped(self) -> Optional[str]:
        """None unless QEMU paused the VM on its own: an I/O error (a full
        host filesystem above all) or an internal error."""
        if self._stopped or self.qmp is None:
            return self._stopped
        now = time.monotonic()
        if now < self._next_status:
            return None
        self._next_status = now + self.STATUS_INTERVAL
        try:
            status = self.qmp.cmd("query-status")["status"]
        except Exception:
            return None   # QEMU going away; poll() will say so
        if status == "io-error":
            self._stopped = self._io_error()
        elif status == "internal-error":
            self._stopped = "the VM stopped on an internal error of the emulator"
        return self._stopped

    def port_closed(self, name: str) -> bool:
        """Whether the guest closed the virtio-serial port ``name`` (its
        program, e.g. qemu-ga, exited or was killed) since QEMU started.
        QEMU says so in a VSERPORT_CHANGE event; the host side of the
        chardev stays connected and would only go quiet."""
        if self.qmp is None:
            return name in self._closed_ports
        try:
            events = self.qmp.get_events(wait=False)
        except Exception:
            events = []         # QEMU going away; dead() says so
        for event in events:
            data = event.get("data", {})
            if event.get("event") == "VSERPORT_CHANGE" and not data.get("open", True):
                # The event names the device id; the port's name is a property.
                try:
                    self._closed_ports.add(self.qmp.cmd(
                        "qom-get", path=f"/machine/peripheral/{data.get('id')}",
                        property="name"))
                except Exception:
                    pass
        return name in self._closed_ports

    def _io_error(self) -> str:
        try:
            devices = self.qmp.cmd("query-block")
        except Exception:
            devices = []
        for dev in devices:
            io_status = dev.get("io-status", "ok")
            if io_status == "ok":
                continue
            image = Path(dev.get("inserted", {}).get("image", {}).get("filename", "?"))
            if io_status == "nospace":
                return (f"the VM paused: no space left on {describe_filesystem(image.parent)} "
                        f"for its disk {image}; free space there and rerun")
            return f"the VM paused on an I/O error ({io_status}) writing its disk {image}"
        return "the VM paused on an I/O error writing its disk"

    def error(self, problem: str) -> UserError:
        """A one-line error naming the logs (the serial tail goes there)."""
        with open(self.qemu_log, "a") as log:
            log.write(f"\n--- {problem}\n--- serial console tail "
                      f"({self.serial_log}):\n{tail(self.serial_log, 40)}\n")
        return UserError(f"{self.name}: {problem}", log=str(self.qemu_log))

    # -- QMP -------------------------------------------------------------
    def cmd(self, name: str, **args):
        try:
            return self.qmp.cmd(name, **args)
        except Exception as err:
            raise self.error(f"QMP {name} failed: {err}") from None

    def status(self) -> str:
        return self.cmd("query-status")["status"]

    def error_with_screen(self, err: Exception) -> UserError:
        """A deadline's error, with the screen saved beside the serial log
        (guests without a display have none)."""
        shot = self.screendump(self.serial_log.with_name(f"{self.name}-screen.png"))
        problem = getattr(err, "problem", str(err))   # without its "(details: …)"
        return self.error(problem + (f"; screen saved as {shot}" if shot else ""))

    def screendump(self, path: Path) -> Optional[Path]:
        """Save the screen as PNG (QEMU ≥ 7.1), or PPM on older ones."""
        path = Path(path)
        try:
            self.qmp.cmd("screendump", filename=str(path), format="png")
            return path
        except Exception:
            try:
                ppm = path.with_suffix(".ppm")
                self.qmp.cmd("screendump", filename=str(ppm))
                return ppm
            except Exception:
                return None


_features: "dict[str, dict]" = {}

# Every board alias a guest may ask for: each arch's, and the x86 q35.
BOARDS = sorted({"q35", *(a.machine for a in ARCHES.values())})


def features(logdir: Path, name: str = BINARY) -> dict:
    """What this QEMU offers, asked of a short-lived QEMU once per process
    (features are detected, not assumed from the version): the versioned
    machine types behind the aliases (pc → pc-i440fx-7.2, so a later QEMU
    reviving a snapshot builds the same board) and the migration
    capabilities."""
    if name not in _features:
        found: dict = {}
        with Qemu(["-machine", "none", "-S"], name="features", logdir=logdir,
                     binary=name) as vm:
            vm.launch()
            machines = vm.cmd("query-machines")
            for alias in BOARDS:
                found[alias] = next((m["name"] for m in machines
                                     if m.get("alias") == alias), alias)
            found["capabilities"] = {c["capability"] for c in
                                     vm.cmd("query-migrate-capabilities")}
        _features[name] = found
    return _features[name]


def free_port() -> int:
    """A loopback port free right now; callers retry if QEMU loses the race."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_in_use(machine: Qemu) -> bool:
    text = machine.qemu_log.read_text(errors="replace") if machine.qemu_log.exists() else ""
    return "host forwarding rule" in text or "Address already in use" in text


def launch_with_port(make_args, *, name: str, logdir: Path, tries: int = 5,
                     binary: str = BINARY, private_tmp: bool = False) -> "tuple[Qemu, int]":
    """Launch a machine whose argv needs a host port, retrying on collision."""
    for attempt in range(tries):
        port = free_port()
        machine = Qemu(make_args(port), name=name, logdir=logdir, binary=binary,
                       private_tmp=private_tmp)
        try:
            machine.launch()
            return machine, port
        except UserError:
            machine.shutdown(graceful=False)
            if attempt + 1 < tries and port_in_use(machine):
                time.sleep(0.05)
                continue
            raise
    raise AssertionError("unreachable")

