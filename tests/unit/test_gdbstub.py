"""The GDB remote client that re-arms a revived riscv64 CPU's timer
(revive/qemu/gdbstub.py), against a stub that misbehaves in a way QEMU's
cannot be made to on demand: it speaks the remote protocol, but a
qXfer answer never ends."""

import socket
import threading

import pytest

from revive.core.errors import UserError
from revive.qemu import gdbstub


class Machine:
    def dead(self):
        return None

    def error(self, problem):
        return UserError(f"m: {problem}")


def _stub(sock, answer):
    """Acknowledge every packet and answer it with ``answer(request)``."""
    buffer = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except OSError:
            return
        if not chunk:
            return
        buffer += chunk
        while b"#" in buffer and len(buffer) >= buffer.index(b"#") + 3:
            start, end = buffer.index(b"$"), buffer.index(b"#")
            request, buffer = buffer[start + 1:end].decode(), buffer[end + 3:]
            data = answer(request).encode()
            sock.sendall(b"+$%s#%02x" % (data, sum(data) % 256))


@pytest.mark.parametrize("part", ["m", "m" + "<x/>" * 4000], ids=["no progress", "no end"])
def test_a_target_description_that_never_ends_is_refused_in_one_line(part):
    ours, theirs = socket.socketpair()
    server = threading.Thread(target=_stub, args=(theirs, lambda request: part),
                              daemon=True)
    server.start()
    try:
        with pytest.raises(UserError) as err:
            gdbstub.Remote(ours, Machine()).csr_number("stimecmp")
        assert "without end" in str(err.value) and "\n" not in str(err.value)
    finally:
        ours.close()
        theirs.close()
        server.join(5)


def test_a_description_in_parts_is_read_whole():
    parts = {"target.xml": ['m<target><xi:include href="csr.xml"/>', "l</target>"],
             "csr.xml": ['m<reg name="sstatus" regnum="80"/>',
                         'l<reg name="stimecmp" regnum="413"/>']}
    def answer(request):
        name, offset = request.split(":")[3], int(request.split(":")[4].split(",")[0], 16)
        done = 0
        for part in parts[name]:
            if done == offset:
                return part
            done += len(part) - 1
        return "E01"
    ours, theirs = socket.socketpair()
    server = threading.Thread(target=_stub, args=(theirs, answer), daemon=True)
    server.start()
    try:
        assert gdbstub.Remote(ours, Machine()).csr_number("stimecmp") == 413
    finally:
        ours.close()
        theirs.close()
        server.join(5)
