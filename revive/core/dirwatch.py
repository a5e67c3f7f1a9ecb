"""Wait for something to happen in a host folder without asking anyone
else: Linux inotify through ctypes (no extra package), or, where inotify is
not available, a plain timed wait (the caller looks at the folder after
each round either way).

The guest agent's build loop uses it to learn that a command ended from
the host's side of the stream share, so that the guest is not woken while
the command runs.
"""

import ctypes
import ctypes.util
import errno
import os
import select
import struct
import time
from pathlib import Path

IN_MODIFY = 0x002
IN_ATTRIB = 0x004
IN_CLOSE_WRITE = 0x008
IN_MOVED_FROM = 0x040
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_IGNORED = 0x8000
IN_Q_OVERFLOW = 0x4000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

WATCHED = (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO
           | IN_CREATE | IN_DELETE | IN_DELETE_SELF)
_EVENT = struct.Struct("iIII")


def _libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.inotify_init1.argtypes = [ctypes.c_int]
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        return libc
    except (OSError, AttributeError):
        return None


class DirWatch:
    """Events in one folder: ``wait(timeout)`` returns the (mask, name)
    pairs that came within ``timeout`` seconds, [] if none. A lost queue
    (overflow) or a timed-wait fallback reports ``(IN_Q_OVERFLOW, "")``:
    the caller then looks at everything."""

    def __init__(self, folder: Path):
        self.fd = -1
        libc = _libc()
        if libc is None:
            return
        fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            return
        if libc.inotify_add_watch(fd, os.fsencode(str(folder)), WATCHED) < 0:
            os.close(fd)
            return
        self.fd = fd

    @property
    def polling(self) -> bool:
        """True when inotify is unavailable and waits are plain sleeps."""
        return self.fd < 0

    def wait(self, timeout: float) -> "list[tuple[int, str]]":
        if self.fd < 0:
            # No inotify: a short sleep and "anything may have changed".
            time.sleep(max(0.0, min(timeout, 0.02)))
            return [(IN_Q_OVERFLOW, "")]
        ready, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        if not ready:
            return []
        return self._read()

    def _read(self) -> "list[tuple[int, str]]":
        events = []
        while True:
            try:
                data = os.read(self.fd, 65536)
            except OSError as err:
                if err.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                    return events
                raise
            offset = 0
            while offset + _EVENT.size <= len(data):
                _wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
                offset += _EVENT.size
                name = data[offset:offset + length].rstrip(b"\0")
                offset += length
                events.append((mask, os.fsdecode(name)))

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "DirWatch":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
