"""Just enough ELF reading to assemble a guest from unpacked packages:
a kernel module's .modinfo strings, a binary's interpreter and DT_NEEDED
libraries (what ``ldd`` would report, without running anything).

32- and 64-bit, little- and big-endian (armhf, s390x and the rest of
Debian's architectures), read from the file's own identification bytes.
"""

import struct
from pathlib import Path

_SHT_DYNAMIC = 6
_DT_NEEDED = 1

# e_ident[EI_CLASS]: 1 = 32-bit, 2 = 64-bit; e_ident[EI_DATA]: 1 = LSB, 2 = MSB.
_LAYOUT = {
    # class: (e_shoff format and offset, e_shentsize.. offset, section header, dyn entry)
    1: ("I", 0x20, 0x2E, "IIIIIIIIII", "iI"),
    2: ("Q", 0x28, 0x3A, "IIQQQQIIQQ", "qQ"),
}


class Elf:
    """One ELF file's sections, read with its own word size and byte order."""

    def __init__(self, data: bytes):
        if data[:4] != b"\x7fELF" or data[4] not in _LAYOUT or data[5] not in (1, 2):
            raise ValueError("not an ELF file (compressed module?)")
        self.data = data
        self.bits = 32 if data[4] == 1 else 64
        self.endian = "<" if data[5] == 1 else ">"
        off_fmt, shoff_at, counts_at, self._shdr, self._dyn = _LAYOUT[data[4]]
        e = self.endian
        shoff, = struct.unpack_from(e + off_fmt, data, shoff_at)
        shentsize, shnum, shstrndx = struct.unpack_from(e + "HHH", data, counts_at)
        headers = [struct.unpack_from(e + self._shdr, data, shoff + i * shentsize)
                   for i in range(shnum)]
        names_at = headers[shstrndx][4] if headers else 0
        # {name: (type, offset, size, link)}, and the same by index.
        self.by_index = [(h[1], h[4], h[5], h[6]) for h in headers]
        self.sections = {}
        for header, fields in zip(headers, self.by_index):
            self.sections[self._string(names_at, header[0])] = fields

    def _string(self, table: int, offset: int) -> str:
        start = table + offset
        return self.data[start:self.data.index(b"\0", start)].decode()

    def dynamic(self) -> "list[tuple[int, int]]":
        """(tag, value) of the dynamic section, up to DT_NULL."""
        found = [s for s in self.by_index if s[0] == _SHT_DYNAMIC]
        if not found:
            return []
        _, offset, size, _ = found[0]
        entry = struct.calcsize(self.endian + self._dyn)
        out = []
        for pos in range(offset, offset + size, entry):
            tag, value = struct.unpack_from(self.endian + self._dyn, self.data, pos)
            if tag == 0:
                break
            out.append((tag, value))
        return out

    def needed(self) -> "list[str]":
        found = [s for s in self.by_index if s[0] == _SHT_DYNAMIC]
        if not found:
            return []
        strtab = self.by_index[found[0][3]][1]
        return [self._string(strtab, value) for tag, value in self.dynamic()
                if tag == _DT_NEEDED]

    def section(self, name: str) -> "bytes | None":
        if name not in self.sections:
            return None
        _, offset, size, _ = self.sections[name]
        return self.data[offset:offset + size]


def modinfo_of(data: bytes) -> "dict[str, list[str]]":
    """The ``key=value`` strings of a kernel module's .modinfo section."""
    raw = Elf(data).section(".modinfo")
    if raw is None:
        return {}
    info: "dict[str, list[str]]" = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.decode(errors="replace").partition("=")
        if sep:
            info.setdefault(key, []).append(value)
    return info


def needed(path: Path) -> "list[str]":
    """The sonames a dynamically linked binary or library asks for."""
    return Elf(Path(path).read_bytes()).needed()


def interpreter(path: Path) -> "str | None":
    """The dynamic loader named in .interp, e.g. /lib64/ld-linux-x86-64.so.2."""
    raw = Elf(Path(path).read_bytes()).section(".interp")
    return None if raw is None else raw.rstrip(b"\0").decode()
