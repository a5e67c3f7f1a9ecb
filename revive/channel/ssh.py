"""SSH to the guest with paramiko: the project's key, the guest's recorded
host key (anything else is refused), deadlines everywhere.

Output is read as it comes (stdout and stderr combined, as the build log
wants) before the exit status is asked for — reading after
``recv_exit_status()`` deadlocks once the output outgrows the window.
"""

import base64
import socket
import time
from pathlib import Path
from typing import Callable, Optional

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from ..core.errors import UserError, quiet_paramiko
from ..core.files import write_atomic
from ..core.wait import wait_for
from . import Channel, CommandResult, vm_ended

# Connection attempts while the guest boots fail by design.
quiet_paramiko()


def generate_keypair(private: Path, comment: str = "revive") -> str:
    """Write an Ed25519 key pair (private 0600, OpenSSH formats); return the
    public line."""
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM,
                            serialization.PrivateFormat.OpenSSH,
                            serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH)
    line = f"{public.decode()} {comment}\n"
    write_atomic(Path(f"{private}.pub"), line)
    write_atomic(private, pem, mode=0o600)
    return line


# Output goes to the sink as it comes; only this much is kept for messages,
# so memory stays flat whatever a build prints.
TAIL_BYTES = 64 * 1024
# How often a running command also asks whether the VM still runs (a paused
# or dead VM would otherwise look like a silent command until the timeout).
ALIVE_INTERVAL = 0.5


class Session(Channel):
    """One SSH connection to a guest on a loopback port."""

    def __init__(self, client: paramiko.SSHClient,
                 alive: Callable[[], Optional[str]] = lambda: None):
        self.client = client
        self.alive = alive

    def close(self) -> None:
        self.client.close()

    def run(self, command: str, *, timeout: float,
            sink: Optional[Callable[[bytes], None]] = None) -> CommandResult:
        """Run ``command``; stream its combined output to ``sink``; stop at
        ``timeout`` (exit_code None, failure "timeout") or when the VM stops
        running (exit_code None, failure saying how)."""
        start = time.monotonic()
        chan = self.client.get_transport().open_session(timeout=30)
        chan.set_combine_stderr(True)
        chan.settimeout(0.2)
        chan.exec_command(command)
        tail = bytearray()
        deadline = start + timeout
        next_alive = start + ALIVE_INTERVAL

        def result(code, failure=None):
            return CommandResult(command, code, tail.decode(errors="replace"),
                                 time.monotonic() - start, failure)
        try:
            while True:
                try:
                    chunk = chan.recv(65536)
                except socket.timeout:
                    chunk = None
                if chunk:
                    tail += chunk
                    if len(tail) > 2 * TAIL_BYTES:
                        del tail[:-TAIL_BYTES]
                    if sink:
                        sink(chunk)
                elif chunk == b"" and chan.exit_status_ready():
                    break
                elif chunk == b"" and chan.closed:
                    # The connection ended without an exit status: the
                    # VM (or its network) went away.
                    return result(None, vm_ended(self.alive)
                                  or "the SSH connection closed without an exit status")
                now = time.monotonic()
                if now >= next_alive:
                    next_alive = now + ALIVE_INTERVAL
                    dead = self.alive()
                    if dead:
                        return result(None, dead)
                if now > deadline:
                    return result(None, "timeout")
            code = chan.recv_exit_status()
        finally:
            try:
                chan.close()
            except (OSError, EOFError, paramiko.SSHException):
                pass            # the transport is gone: nothing left to close
        if code == -1:
            # paramiko's "no status" marker: the channel ended without one,
            # because the VM went away or a signal killed the command.
            return result(None, vm_ended(self.alive)
                          or "the command ended without an exit status (killed by a signal?)")
        del tail[:-TAIL_BYTES]
        return result(code)


def connect(port: int, *, user: str, key_file: Path, host_key: str,
            timeout: float, alive: Callable[[], Optional[str]],
            log: "str | None" = None) -> Session:
    """Connect to 127.0.0.1:port until the guest answers, or fail when the
    deadline passes or ``alive`` says QEMU died."""
    pkey = paramiko.Ed25519Key.from_private_key_file(str(key_file))
    kind, blob = host_key.split()[:2]
    known = paramiko.PKey.from_type_string(kind, base64.b64decode(blob))
    last_error = [""]

    def attempt() -> Optional[Session]:
        client = paramiko.SSHClient()
        client.get_host_keys().add(f"[127.0.0.1]:{port}", kind, known)
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect("127.0.0.1", port=port, username=user, pkey=pkey,
                           timeout=5, banner_timeout=5, auth_timeout=5,
                           allow_agent=False, look_for_keys=False)
            return Session(client, alive)
        except paramiko.BadHostKeyException as err:
            client.close()
            raise UserError(f"the guest's SSH host key is not the one recorded at "
                            f"install ({err}); rerun the install stage") from None
        except (OSError, paramiko.SSHException, EOFError) as err:
            client.close()
            last_error[0] = f"{type(err).__name__}: {err}"
            return None

    return wait_for(attempt, timeout=timeout, what=f"SSH to the guest on port {port}",
                    alive=alive, interval=0.05, last_seen=lambda: last_error[0], log=log)
