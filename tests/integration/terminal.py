"""A person at a terminal, for `doit shell`: doit runs on the slave side of
a real pty and the test types on the master, answering the cursor-position
queries a guest's line editor sends as a terminal would."""

import fcntl
import os
import pty
import re
import select
import signal
import struct
import termios
import time

from .conftest import DOIT, REPO

# root's "# " or a build user's "$ ": earlier tests may have set [answers] user.
PROMPT = r"[#$] "


class Terminal:
    """doit on the slave side of a pty; the test types on the master."""

    def __init__(self, project, *args, rows=30, cols=100, command=None):
        """``command``: what runs instead of the clone's doit (say, revive)."""
        env = dict(os.environ, REVIVE_CACHE=str(REPO / "artifacts" / "cache"), TERM="xterm")
        argv = [*(command or [*DOIT, "-d", str(project.root)]), *args]
        self.pid, self.fd = pty.fork()
        if self.pid == 0:                       # the child: doit on the pty
            os.execve(argv[0], argv, env)
        self.resize(rows, cols)
        self.seen = b""

    def resize(self, rows: int, cols: int) -> None:
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def type(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def expect(self, pattern: str, timeout: float = 60) -> "re.Match":
        deadline = time.monotonic() + timeout
        while True:
            m = re.search(pattern.encode(), self.seen, re.S)
            if m:
                self.seen = self.seen[m.end():]
                return m
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {pattern!r} within {timeout} s; "
                                     f"the terminal showed: {self.seen[-2000:]!r}")
            ready, _, _ = select.select([self.fd], [], [], min(left, 0.5))
            if ready:
                try:
                    chunk = os.read(self.fd, 65536)
                except OSError:                 # the child closed the pty
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"doit ended before {pattern!r}; "
                                         f"the terminal showed: {self.seen[-2000:]!r}")
                if b"\x1b[6n" in chunk:
                    # The guest's line editor asks where the cursor is, as
                    # a terminal would be asked; answer like one.
                    chunk = chunk.replace(b"\x1b[6n", b"")
                    self.type("\x1b[1;1R")
                self.seen += chunk

    def run(self, command: str, timeout: float = 30) -> str:
        """Type a command; return what it printed between two markers."""
        self.type(f"echo BEGIN$((1+1)); {command}; echo END$((2+2))\r")
        self.expect("BEGIN2\r\n", timeout)
        return self.expect(r"(.*?)END4\r\n", timeout).group(1).decode(errors="replace")

    def wait(self, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                ready, _, _ = select.select([self.fd], [], [], 0.2)
                if ready:
                    self.seen += os.read(self.fd, 65536)
            except OSError:
                pass
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
        raise AssertionError(f"doit still runs after {timeout} s: {self.seen[-2000:]!r}")

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
