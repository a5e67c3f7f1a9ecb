"""The one interface a build talks to its guest through, whichever channel
carries it: SSH (``ssh.Session``) or QEMU's guest agent
(``agent.AgentSession``). Stages and guest kinds use only this."""

from typing import Callable, Optional, Protocol

from .ssh import CommandResult

CHANNELS = ("agent", "ssh")

__all__ = ["Channel", "CommandResult", "CHANNELS"]


class Channel(Protocol):
    def run(self, command: str, *, timeout: float,
            sink: Optional[Callable[[bytes], None]] = None) -> CommandResult:
        """Run ``command`` as root with /bin/sh; its combined output goes to
        ``sink`` as it comes; exit_code None when ``timeout`` ended it."""

    def check(self, command: str, *, timeout: float = 60, what: str = "") -> str:
        """Run ``command``; a non-zero exit is a one-line UserError."""

    def close(self) -> None:
        ...
