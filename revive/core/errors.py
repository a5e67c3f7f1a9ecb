"""Errors meant for people.

A ``UserError`` is one line that says what failed, which config key or file,
and what to do. Details go to a log whose path the message names; the doit
actions print ``str(err)`` and fail the task without a traceback.
"""

import logging


class UserError(Exception):
    """A failure the user can act on; ``str()`` is the whole message."""

    def __init__(self, message: str, log: "str | None" = None):
        self.log = log
        self.problem = message          # the message without its log path
        if log:
            message = f"{message} (details: {log})"
        super().__init__(message)


def for_people(text) -> str:
    """The one place revive's messages get their ``revive:`` prefix."""
    return f"revive: {text}"


def quiet_paramiko() -> None:
    """paramiko's transport thread logs each failed connection with its
    traceback, which Python's last-resort handler prints: a guest still
    booting or an sftp server turning a connection away is expected, and
    what it means is said in one line by whoever retries or gives up."""
    log = logging.getLogger("paramiko")
    if not log.handlers:
        log.addHandler(logging.NullHandler())
    log.propagate = False
