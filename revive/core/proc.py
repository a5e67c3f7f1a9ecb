"""Run host commands as argv lists, logged, with stdin closed and reaped."""

import shlex
import subprocess
from pathlib import Path

from .errors import UserError


def run(argv, *, log: "Path | None" = None, cwd=None, timeout: float = 600,
        what: "str | None" = None) -> str:
    """Run ``argv`` to completion and return its stdout.

    Output is appended to ``log`` when given. A non-zero exit or a timeout
    raises ``UserError`` naming the command and the log.
    """
    argv = [str(a) for a in argv]
    what = what or Path(argv[0]).name
    if log:
        with open(log, "a") as fh:
            fh.write("+ " + shlex.join(argv) + "\n")
    try:
        proc = subprocess.run(argv, cwd=cwd, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise UserError(f"{what}: command {argv[0]!r} not found; run ./setup.sh "
                        "to install the system packages") from None
    except subprocess.TimeoutExpired:
        raise UserError(f"{what} did not finish within {timeout:.0f} s",
                        log=str(log) if log else None) from None
    if log:
        with open(log, "a") as fh:
            fh.write(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
        raise UserError(f"{what} failed (exit {proc.returncode}): {tail[0]}",
                        log=str(log) if log else None)
    return proc.stdout
