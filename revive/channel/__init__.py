"""The channel to a guest: how commands reach it and their results come back.

Two channels, one surface (``Channel``): SSH (``ssh.Session``, paramiko) and
QEMU's guest agent on a virtio-serial port (``agent.AgentSession``).
``revive.machine.Machine`` holds one; stages and guest kinds use only this
surface. ``terminal`` runs an interactive login over SSH.

No QEMU, no guest kinds in here: a channel is told how to ask whether its
VM still runs (``alive``), and says how it ended when it did.
"""

import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from ..core.errors import UserError


@dataclass
class CommandResult:
    command: str
    exit_code: Optional[int]     # None when the deadline or the VM ended it
    output: str                  # the tail of the output only
    seconds: float
    failure: Optional[str] = None   # why there is no exit code: "timeout" or how the VM ended
    # Seconds measured inside the guest, when the channel can: "prepare" (the
    # revived guest's clock, entropy and shares, run in the command's own
    # process) and "command".
    phases: "dict[str, float]" = field(default_factory=dict)

    @property
    def timed_out(self) -> bool:
        return self.failure == "timeout"

    def why(self) -> str:
        """Why the command failed, in a few words: its exit code, the
        deadline, or how the VM ended under it."""
        if self.exit_code is not None:
            return f"exit {self.exit_code}"
        return "timed out" if self.timed_out else (self.failure or "no exit status")

    def __repr__(self) -> str:
        return (f"CommandResult(exit_code={self.exit_code}, failure={self.failure!r}, "
                f"seconds={self.seconds:.2f}, command={self.command!r})")


class Channel:
    """What a revived guest is talked to through. Subclasses give ``run``
    and ``close``; ``check`` is the same for every channel."""

    def run(self, command: str, *, timeout: float,
            sink: Optional[Callable[[bytes], None]] = None) -> CommandResult:
        """Run ``command`` as root with /bin/sh; its combined output goes to
        ``sink`` as it comes; exit_code None when ``timeout`` or the VM's end
        stopped it (``failure`` says which)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def check(self, command: str, *, timeout: float = 60, what: str = "") -> str:
        """Run ``command``; anything but exit 0 is a one-line UserError
        saying why (the exit code, the deadline, or the VM's end)."""
        result = self.run(command, timeout=timeout)
        if result.exit_code != 0:
            last = result.output.strip().splitlines()[-1:] or [""]
            raise UserError(f"{what or 'guest command'} failed ({result.why()}): {last[0]}")
        return result.output

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def vm_ended(alive: Callable[[], Optional[str]], seconds: float = 2.0) -> Optional[str]:
    """How the VM ended, or None if it still runs after ``seconds``. A
    channel that closed under a command usually means QEMU is on its way
    out: its sockets close before it can be reaped, so give it a moment and
    say how it ended rather than that the channel failed."""
    deadline = time.monotonic() + seconds
    while True:
        dead = alive()
        if dead or time.monotonic() >= deadline:
            return dead
        time.sleep(0.05)
