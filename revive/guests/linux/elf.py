"""Just enough ELF64 reading to assemble a guest from unpacked packages:
a kernel module's .modinfo strings, a binary's interpreter and DT_NEEDED
libraries (what ``ldd`` would report, without running anything)."""

import struct
from pathlib import Path

_SHT_DYNAMIC = 6
_DT_NEEDED = 1


def _sections(data: bytes) -> "dict[str, tuple[int, int, int, int]]":
    """{name: (type, offset, size, link)} of a little-endian ELF64 file."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError("not a little-endian ELF64 file (compressed module?)")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    headers = [struct.unpack_from("<IIQQQQI", data, shoff + i * shentsize)
               for i in range(shnum)]
    names_at = headers[shstrndx][4]
    sections = {}
    for name_off, sh_type, _, _, offset, size, link in headers:
        start = names_at + name_off
        name = data[start:data.index(b"\0", start)].decode()
        sections[name] = (sh_type, offset, size, link)
    return sections


def modinfo_of(data: bytes) -> "dict[str, list[str]]":
    """The ``key=value`` strings of a kernel module's .modinfo section."""
    sections = _sections(data)
    if ".modinfo" not in sections:
        return {}
    _, offset, size, _ = sections[".modinfo"]
    info: "dict[str, list[str]]" = {}
    for item in data[offset:offset + size].split(b"\0"):
        key, sep, value = item.decode(errors="replace").partition("=")
        if sep:
            info.setdefault(key, []).append(value)
    return info


def needed(path: Path) -> "list[str]":
    """The sonames a dynamically linked binary or library asks for."""
    data = Path(path).read_bytes()
    sections = _sections(data)
    dynamic = [s for s in sections.values() if s[0] == _SHT_DYNAMIC]
    if not dynamic:
        return []
    _, offset, size, link = dynamic[0]
    strtab_offset = list(sections.values())[link][1]
    names = []
    for pos in range(offset, offset + size, 16):
        tag, value = struct.unpack_from("<qQ", data, pos)
        if tag == 0:
            break
        if tag == _DT_NEEDED:
            start = strtab_offset + value
            names.append(data[start:data.index(b"\0", start)].decode())
    return names


def interpreter(path: Path) -> "str | None":
    """The dynamic loader named in .interp, e.g. /lib64/ld-linux-x86-64.so.2."""
    data = Path(path).read_bytes()
    sections = _sections(data)
    if ".interp" not in sections:
        return None
    _, offset, size, _ = sections[".interp"]
    return data[offset:offset + size].rstrip(b"\0").decode()
