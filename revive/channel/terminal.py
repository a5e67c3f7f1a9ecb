"""An interactive login over SSH in the user's terminal: a remote pty of
the local terminal's size, the local terminal in raw mode (so Ctrl-C,
Ctrl-Z, editors and line editing are the guest's), window-size changes
forwarded on SIGWINCH, and the terminal put back on every path.
"""

import os
import select
import signal
import termios
import tty
from typing import Optional

import paramiko


def _size(fd: int) -> "tuple[int, int]":
    try:
        size = os.get_terminal_size(fd)
        return size.columns, size.lines
    except OSError:
        return 80, 24


def interactive(transport: paramiko.Transport, command: str, *, stdin: int = 0,
                stdout: int = 1, term: "str | None" = None) -> Optional[int]:
    """Run ``command`` on a remote pty wired to the local terminal (file
    descriptors ``stdin``/``stdout``) until it ends; return its exit code."""
    chan = transport.open_session(timeout=30)
    cols, rows = _size(stdout)
    chan.get_pty(term=term or os.environ.get("TERM", "xterm"), width=cols, height=rows)
    chan.exec_command(command)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)

    def on_winch(signum, frame):
        try:
            os.write(wake_w, b"w")
        except OSError:
            pass
    try:
        old_handler = signal.signal(signal.SIGWINCH, on_winch)
    except ValueError:          # not the main thread (doit -n): no resizing
        old_handler = None
    saved = termios.tcgetattr(stdin) if os.isatty(stdin) else None
    try:
        if saved is not None:
            tty.setraw(stdin)
        stdin_open = True
        while True:
            readable = [chan, wake_r] + ([stdin] if stdin_open else [])
            ready, _, _ = select.select(readable, [], [], 1.0)
            if wake_r in ready:
                os.read(wake_r, 64)
                chan.resize_pty(*_size(stdout))
            if chan in ready:
                data = chan.recv(65536)
                if not data:
                    break
                _write_all(stdout, data)
            if stdin_open and stdin in ready:
                data = os.read(stdin, 65536)
                if data:
                    chan.sendall(data)
                else:
                    stdin_open = False
                    chan.shutdown_write()
            if chan.exit_status_ready() and not chan.recv_ready():
                break
        return chan.recv_exit_status() if chan.exit_status_ready() else None
    finally:
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        if old_handler is not None:
            signal.signal(signal.SIGWINCH, old_handler)
        os.close(wake_r)
        os.close(wake_w)
        chan.close()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def login_command() -> str:
    """A login shell in the user's home: bash where the guest has it
    (Debian, Cygwin), else sh (the tiny guest's busybox)."""
    return ('cd 2>/dev/null; if command -v bash >/dev/null 2>&1; then exec bash -l; '
            'else exec sh -l; fi')
