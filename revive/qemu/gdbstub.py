"""Re-arm a revived CPU's timer through QEMU's gdbstub, for boards whose
timer QEMU does not migrate.

QEMU before 10.2 saves riscv64's supervisor timer compare register
(``stimecmp``, the Sstc extension Linux uses on the virt board) but not the
QEMU timer behind it: a loaded state's next timer interrupt never comes,
and a guest whose tick was pending then has every timer stopped (``sleep 1``
never returns), as a copy kept after a failed build did. QEMU 10.2 fixed it
(b0daaa172a1c "target/riscv: Save stimer and vstimer in CPU vmstate"), not
backported to the stable releases as it changes the migration stream.

QMP cannot write a CPU register, but the gdbstub can, and a write of
``stimecmp`` goes through the same path as the guest's own: QEMU arms the
timer again, or raises the interrupt at once when its time has passed. While
the loaded state is still paused: a socketpair's end handed to QEMU (QMP
``getfd``) as a chardev, ``gdbserver chardev:ID``, the register read and
written back with its own value over the GDB remote protocol, then
``gdbserver none`` (which drops the chardev). About 10 ms.
"""

import re
import socket
import time

from ..core.errors import UserError

FD_NAME = "revive-gdb"
CHARDEV = "revive-gdb"
REPLY_TIMEOUT = 10.0     # seconds for each answer of the gdbstub
DOCUMENT_LIMIT = 1 << 20  # characters: far beyond any target description
# RISC-V CSR numbers (the privileged specification's table).
CSR_NUMBERS = {"stimecmp": 0x14D}
ANCHOR = ("sstatus", 0x100)      # a CSR riscv-csr.xml always lists


def rearm(machine, csr: str) -> None:
    """Write ``csr`` of the paused ``machine``'s first CPU with its own
    value, so that QEMU arms the timer behind it again."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        machine.qmp.send_fd_scm(theirs.fileno())
        machine.cmd("getfd", fdname=FD_NAME)
        theirs.close()
        machine.cmd("chardev-add", id=CHARDEV, backend={"type": "socket", "data": {
            "addr": {"type": "fd", "data": {"str": FD_NAME}}, "server": False}})
        _hmp(machine, f"gdbserver chardev:{CHARDEV}", "Waiting for gdb connection")
        try:
            link = Remote(ours, machine)
            regnum = link.csr_number(csr)
            value = link.ask(f"p{regnum:x}")
            if not re.fullmatch(r"[0-9a-f]+", value):
                raise machine.error(f"the gdbstub could not read {csr} "
                                    f"(answered {value!r}) to re-arm the revived CPU's timer")
            answer = link.ask(f"P{regnum:x}={value}")
            if answer != "OK":
                raise machine.error(f"the gdbstub could not write {csr} "
                                    f"(answered {answer!r}) to re-arm the revived CPU's timer")
        finally:
            _hmp(machine, "gdbserver none", "Disabled gdbserver")
    finally:
        ours.close()
        theirs.close()


def _hmp(machine, line: str, success: str) -> None:
    said = machine.cmd("human-monitor-command", **{"command-line": line}).strip()
    if not said.startswith(success):
        raise machine.error(f"QEMU's `{line}` failed: {said}")


class Remote:
    """The client side of the GDB remote serial protocol, as much of it as
    reading and writing one register needs."""

    def __init__(self, sock: socket.socket, machine):
        self.sock = sock
        self.machine = machine
        self.buffer = b""

    def ask(self, request: str) -> str:
        data = request.encode()
        self.sock.sendall(b"$%s#%02x" % (data, sum(data) % 256))
        return self._reply(request)

    def csr_number(self, csr: str) -> int:
        """The register number the gdbstub gives ``csr``: the CSR's own
        number past the first register of the CSR feature. QEMU 7.2 lists
        in riscv-csr.xml only the CSRs its checks allowed when the CPU was
        made, before the board gave it a clock, so stimecmp is left out;
        the gdbstub reads and writes every CSR number all the same."""
        target = self._document("target.xml")
        for name in re.findall(r'<xi:include href="([^"]+)"', target):
            text = self._document(name)
            found = re.search(rf'<reg name="{re.escape(csr)}"[^>]*regnum="(\d+)"', text)
            if found:
                return int(found.group(1))
            anchor = re.search(rf'<reg name="{ANCHOR[0]}"[^>]*regnum="(\d+)"', text)
            if anchor and csr in CSR_NUMBERS:
                return int(anchor.group(1)) - ANCHOR[1] + CSR_NUMBERS[csr]
        raise self.machine.error(f"the gdbstub's target description has no {csr} register "
                                 "to re-arm the revived CPU's timer")

    def _document(self, name: str) -> str:
        text, offset = "", 0
        while True:
            part = self.ask(f"qXfer:features:read:{name}:{offset:x},3fff")
            if not part or part[0] not in "lm":
                raise self.machine.error(f"the gdbstub did not send {name} "
                                         f"(answered {part[:40]!r})")
            text += part[1:]
            offset += len(part) - 1
            if part[0] == "l":
                return text
            if len(part) == 1 or len(text) > DOCUMENT_LIMIT:
                # No progress, or more than any target description: a stub
                # that would keep this loop going.
                raise self.machine.error(f"the gdbstub sent {name} without end "
                                         f"({len(text)} characters so far)")

    def _reply(self, request: str) -> str:
        """The next packet's data (acknowledged), skipping the '+' acks."""
        deadline = time.monotonic() + REPLY_TIMEOUT
        while True:
            start = self.buffer.find(b"$")
            end = self.buffer.find(b"#", start) if start >= 0 else -1
            if start >= 0 and end >= 0 and len(self.buffer) >= end + 3:
                data = self.buffer[start + 1:end]
                self.buffer = self.buffer[end + 3:]
                self.sock.sendall(b"+")
                return _unescape(data).decode(errors="replace")
            left = deadline - time.monotonic()
            dead = self.machine.dead()
            if dead or left <= 0:
                raise self.machine.error(
                    f"the gdbstub did not answer {request.split(':')[0]!r} within "
                    f"{REPLY_TIMEOUT:.0f} s while re-arming the revived CPU's timer"
                    + (f" ({dead})" if dead else ""))
            self.sock.settimeout(min(left, 0.5))
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                raise self.machine.error("the gdbstub closed its connection while "
                                         "re-arming the revived CPU's timer")
            self.buffer += chunk


def _unescape(data: bytes) -> bytes:
    """Undo the protocol's '}' escapes (run-length encoding is only used
    by the gdbstub for register dumps, which are not asked for here)."""
    out, i = bytearray(), 0
    while i < len(data):
        if data[i] == 0x7D and i + 1 < len(data):
            out.append(data[i + 1] ^ 0x20)
            i += 2
        else:
            out.append(data[i])
            i += 1
    return bytes(out)
