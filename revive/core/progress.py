"""What a long stage shows while it runs: a status line with the elapsed
time and the guest console's last line, rewritten in place on a terminal
(rich) and printed as plain lines every few seconds otherwise.

The console's text comes from the guest: control characters and escape
sequences are dropped before it reaches the terminal.
"""

import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Optional

from rich.console import Console
from rich.text import Text

PLAIN_EVERY = 10.0      # seconds between plain lines (not a terminal)
TERMINAL_EVERY = 1.0    # refresh of the line rewritten in place
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-_]|[\x00-\x08\x0b-\x1f\x7f]")


def last_line(path: Path, limit: int = 8192) -> str:
    """The last non-empty line of a (growing) log, read from its tail only,
    with the guest's control characters removed."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - limit))
            data = fh.read()
    except OSError:
        return ""
    text = data.decode(errors="replace").replace("\r", "\n")
    for line in reversed(text.split("\n")):
        line = _ESCAPES.sub("", line).strip()
        if line:
            return line[:300]
    return ""


class StatusLine:
    """``with StatusLine("install", console=serial_log):`` shows
    ``install: 42 s · <console's last line>`` until the block ends.

    ``detail`` may replace the console's line (a stage's own progress).
    """

    def __init__(self, what: str, *, console: "Path | None" = None,
                 detail: "Callable[[], str] | None" = None, stream=None,
                 plain_every: float = PLAIN_EVERY):
        self.what = what
        self.console_log = console
        self.detail = detail
        self.stream = stream
        self.plain_every = plain_every
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._start = 0.0

    def text(self) -> str:
        seen = ""
        if self.detail is not None:
            seen = self.detail() or ""
        if not seen and self.console_log is not None:
            seen = last_line(self.console_log)
        elapsed = time.monotonic() - self._start
        return f"{self.what}: {elapsed:.0f} s" + (f" · {seen}" if seen else "")

    def __enter__(self) -> "StatusLine":
        self._start = time.monotonic()
        stream = self.stream or sys.stdout
        terminal = stream.isatty() if hasattr(stream, "isatty") else False
        target = self._live if terminal else self._plain
        self._thread = threading.Thread(target=target, args=(stream,), daemon=True,
                                        name=f"status-{self.what}")
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _plain(self, stream) -> None:
        while not self._stop.wait(self.plain_every):
            stream.write(f"revive: {self.text()}\n")
            stream.flush()

    def _live(self, stream) -> None:
        console = Console(file=stream, highlight=False)
        # Text, not markup: the guest's line is shown as it is, never parsed.
        with console.status(Text(self.text(), no_wrap=True, overflow="ellipsis")) as status:
            while not self._stop.wait(TERMINAL_EVERY):
                status.update(Text(self.text(), no_wrap=True, overflow="ellipsis"))


def echo_enabled() -> bool:
    """REVIVE_VERBOSE=1: a build's output is echoed as it comes."""
    return os.environ.get("REVIVE_VERBOSE", "") not in ("", "0")


def build_sink(log, name: str, stream=None) -> Callable[[bytes], None]:
    """Where a build's output goes as it arrives: the log (unbuffered, so it
    can be followed), and with REVIVE_VERBOSE=1 the terminal, each line
    prefixed with the build's name."""
    echo = echo_enabled()
    pending = bytearray()

    def sink(chunk: bytes) -> None:
        log.write(chunk)
        log.flush()
        if not echo:
            return
        out = stream or sys.stdout
        pending.extend(chunk)
        *lines, rest = bytes(pending).split(b"\n")
        pending[:] = rest
        for line in lines:
            clean = _ESCAPES.sub("", line.decode(errors="replace"))
            out.write(f"{name} | {clean}\n")
        out.flush()
    return sink
