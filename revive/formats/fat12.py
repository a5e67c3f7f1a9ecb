"""A 1.44 MB FAT12 floppy image, written in-process.

The answer-file floppy (Windows' ``Autounattend.xml``, a preseed, …) is
built here rather than with mtools so the media stage needs no host tool,
and rather than with pyfatfs because pyfatfs writes a geometry of 0/0 that
mtools refuses (see docs/architecture.md, "Facts measured").

The image is a function of its inputs only: the same files, label and
timestamp give the same bytes, so doit can compare them and a rebuilt
floppy does not look changed to anyone hashing it.

Layout (standard 3.5" HD): boot sector, two 9-sector FATs, a 14-sector root
directory of 224 entries, then 2847 one-sector clusters.  Names that are
not plain upper-case 8.3 get VFAT long-name entries and a generated 8.3
alias, as Windows does.
"""

import datetime
import hashlib
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path

from revive.core.files import atomic_path

SECTOR_SIZE = 512
TOTAL_SECTORS = 2880
SECTORS_PER_TRACK = 18
HEADS = 2
MEDIA_DESCRIPTOR = 0xF0
RESERVED_SECTORS = 1
FAT_COUNT = 2
SECTORS_PER_FAT = 9
ROOT_ENTRY_COUNT = 224
ENTRY_SIZE = 32

ROOT_SECTORS = ROOT_ENTRY_COUNT * ENTRY_SIZE // SECTOR_SIZE
ROOT_START = RESERVED_SECTORS + FAT_COUNT * SECTORS_PER_FAT
DATA_START = ROOT_START + ROOT_SECTORS
CLUSTER_COUNT = TOTAL_SECTORS - DATA_START
FIRST_CLUSTER = 2  # clusters 0 and 1 are FAT bookkeeping, not data
END_OF_CHAIN = 0xFFF
IMAGE_SIZE = TOTAL_SECTORS * SECTOR_SIZE

ATTR_VOLUME_LABEL = 0x08
ATTR_DIRECTORY = 0x10
ATTR_ARCHIVE = 0x20
ATTR_LONG_NAME = 0x0F
LONG_NAME_CHARS = 13
LAST_LONG_ENTRY = 0x40

# FAT's own epoch: the earliest time a directory entry can hold.
FAT_EPOCH = datetime.datetime(1980, 1, 1)

# Characters a short (8.3) name may hold besides A-Z and 0-9.
_SHORT_NAME_EXTRA = set("!#$%&'()-@^_`{}~")
# Characters no FAT name may hold, long or short.
_FORBIDDEN_IN_NAMES = set('"*/:<>?\\|') | {chr(c) for c in range(32)}

# Boot code for the case where the BIOS boots this floppy (QEMU's SeaBIOS
# tries a floppy that is not bootable too): INT 18h asks the BIOS to try the
# next boot device, e.g. the install CD, instead of hanging.  A HLT loop
# catches a BIOS that returns.
_BOOT_CODE = bytes([0xCD, 0x18, 0xFA, 0xF4, 0xEB, 0xFD])


@dataclass
class _Node:
    """A file (``data`` is bytes) or a directory (``data`` is None)."""

    name: str
    data: "bytes | None" = None
    children: "dict[str, _Node]" = field(default_factory=dict)
    short_name: bytes = b""
    first_cluster: int = 0
    cluster_count: int = 0

    @property
    def is_dir(self) -> bool:
        return self.data is None

    def sorted_children(self) -> "list[_Node]":
        return [self.children[key] for key in sorted(self.children)]


def write_floppy(
    path: Path,
    files: "dict[str, bytes]",
    label: str = "REVIVE",
    mtime: datetime.datetime = FAT_EPOCH,
) -> None:
    """Write a 1.44 MB FAT12 image holding ``files`` to ``path``.

    Keys are names in the root directory, or ``dir/name`` paths.  Raises
    ValueError for names FAT cannot hold and for content that does not fit.
    """
    image = build_floppy(files, label, mtime)
    with atomic_path(Path(path)) as tmp:
        tmp.write_bytes(image)


def build_floppy(
    files: "dict[str, bytes]",
    label: str = "REVIVE",
    mtime: datetime.datetime = FAT_EPOCH,
) -> bytes:
    """The image bytes; see ``write_floppy``."""
    label_field = _label_field(label)
    has_label = bool(label.strip())
    root = _tree_from_paths(files)
    _assign_short_names(root)
    _check_root_fits(root, has_label)
    _allocate_clusters(root)

    image = bytearray(IMAGE_SIZE)
    image[:SECTOR_SIZE] = _boot_sector(label_field, _volume_id(files, label, mtime))
    fat = _fat_table(root)
    for copy in range(FAT_COUNT):
        start = (RESERVED_SECTORS + copy * SECTORS_PER_FAT) * SECTOR_SIZE
        image[start:start + len(fat)] = fat
    stamp = _dos_timestamp(mtime)
    root_dir = _root_directory(root, label_field if has_label else None, stamp)
    image[ROOT_START * SECTOR_SIZE:DATA_START * SECTOR_SIZE] = root_dir
    _write_clusters(image, root, parent_cluster=0, stamp=stamp)
    return bytes(image)


# --- names -----------------------------------------------------------------


def _tree_from_paths(files: "dict[str, bytes]") -> _Node:
    root = _Node(name="")
    for path, data in files.items():
        *folders, name = path.strip("/").split("/")
        directory = root
        for folder in folders:
            directory = _subdirectory_node(directory, folder, path)
        _check_long_name(name, path)
        _check_free(directory, name, path)
        directory.children[name.casefold()] = _Node(name=name, data=bytes(data))
    return root


def _subdirectory_node(parent: _Node, name: str, path: str) -> _Node:
    existing = parent.children.get(name.casefold())
    if existing is not None and existing.is_dir:
        return existing
    _check_long_name(name, path)
    _check_free(parent, name, path)
    node = parent.children[name.casefold()] = _Node(name=name)
    return node


def _check_free(directory: _Node, name: str, path: str) -> None:
    # FAT compares names without regard to case.
    existing = directory.children.get(name.casefold())
    if existing is not None:
        raise ValueError(f"floppy: {path!r} clashes with another entry named {existing.name!r}")


def _check_long_name(name: str, path: str) -> None:
    if name in ("", ".", ".."):
        raise ValueError(f"floppy: {path!r} has an empty or relative path component")
    if len(name) > 255:
        raise ValueError(f"floppy: a name in {path!r} is longer than 255 characters")
    bad = sorted(set(name) & _FORBIDDEN_IN_NAMES)
    if bad or name.endswith((" ", ".")):
        raise ValueError(f"floppy: {path!r} holds characters FAT names cannot hold: {bad or 'a trailing space or dot'}")


def _as_short_name(name: str) -> "bytes | None":
    """The 11-byte directory form of ``name`` if it is a plain upper-case 8.3
    name that needs no long-name entries, else None."""
    base, dot, ext = name.partition(".")
    if not 1 <= len(base) <= 8 or len(ext) > 3 or "." in ext or (dot and not ext):
        return None
    if not all(_is_short_name_char(c) for c in base + ext):
        return None
    return (base.ljust(8) + ext.ljust(3)).encode("ascii")


def _is_short_name_char(char: str) -> bool:
    return char.isascii() and (char.isupper() or char.isdigit() or char in _SHORT_NAME_EXTRA)


def _short_name_basis(name: str) -> "tuple[str, str, bool]":
    """Windows' "basis name": upper case, invalid characters as ``_``, base
    cut to 8 and extension to 3.  The flag says whether that lost more than
    case, in which case a ``~N`` tail must mark the alias as generated."""
    stripped = name.replace(" ", "").lstrip(".")
    base, dot, ext = stripped.rpartition(".")
    if not dot:
        base, ext = stripped, ""
    lossy = stripped != name or "." in base
    base, base_lossy = _short_chars(base.replace(".", ""), 8)
    ext, ext_lossy = _short_chars(ext, 3)
    return base or "_", ext, lossy or base_lossy or ext_lossy


def _short_chars(part: str, limit: int) -> "tuple[str, bool]":
    """``part`` in short-name characters, cut to ``limit``; True if that lost
    anything but case."""
    chars = []
    for char in part:
        upper = char.upper()
        chars.append(upper if len(upper) == 1 and _is_short_name_char(upper) else "_")
    lossy = len(chars) > limit or any(c == "_" and o != "_" for c, o in zip(chars, part))
    return "".join(chars[:limit]), lossy


def _assign_short_names(directory: _Node) -> None:
    """Give every entry a unique 8.3 name; real 8.3 names are claimed first so
    a generated alias never takes a name a given file needs."""
    taken: "set[bytes]" = set()
    needs_alias = []
    for node in directory.sorted_children():
        short = _as_short_name(node.name)
        if short is None:
            needs_alias.append(node)
        else:
            node.short_name = short
            taken.add(short)
    for node in needs_alias:
        node.short_name = _unique_alias(node.name, taken)
        taken.add(node.short_name)
    for node in directory.children.values():
        if node.is_dir:
            _assign_short_names(node)


def _unique_alias(name: str, taken: "set[bytes]") -> bytes:
    base, ext, lossy = _short_name_basis(name)
    candidate = (base.ljust(8) + ext.ljust(3)).encode("ascii")
    if not lossy and candidate not in taken:
        return candidate
    for number in range(1, 1_000_000):
        tail = f"~{number}"
        candidate = (base[:8 - len(tail)] + tail).ljust(8) + ext.ljust(3)
        if candidate.encode("ascii") not in taken:
            return candidate.encode("ascii")
    raise ValueError(f"floppy: no free 8.3 alias for {name!r}")


def _label_field(label: str) -> bytes:
    """The 11-byte volume label; FAT writes "NO NAME" when there is none."""
    text = label.upper() if label.strip() else "NO NAME"
    if len(text) > 11 or not all(c == " " or _is_short_name_char(c) for c in text):
        raise ValueError(f"floppy: label {label!r} must be at most 11 letters, digits or {''.join(sorted(_SHORT_NAME_EXTRA))}")
    return text.ljust(11).encode("ascii")


# --- directory entries -----------------------------------------------------


def _needs_long_name(node: _Node) -> bool:
    return _as_short_name(node.name) is None


def _entry_count(node: _Node) -> int:
    """Directory slots ``node`` takes: its long-name entries plus the short one."""
    if not _needs_long_name(node):
        return 1
    return math.ceil(len(node.name.encode("utf-16-le")) / 2 / LONG_NAME_CHARS) + 1


def _directory_entries(directory: _Node, stamp: "tuple[int, int]") -> bytes:
    return b"".join(_entries_for(node, stamp) for node in directory.sorted_children())


def _entries_for(node: _Node, stamp: "tuple[int, int]") -> bytes:
    attributes = ATTR_DIRECTORY if node.is_dir else ATTR_ARCHIVE
    size = 0 if node.is_dir else len(node.data)
    short = _short_entry(node.short_name, attributes, node.first_cluster, size, stamp)
    if not _needs_long_name(node):
        return short
    return _long_name_entries(node.name, node.short_name) + short


def _short_entry(name: bytes, attributes: int, cluster: int, size: int, stamp: "tuple[int, int]") -> bytes:
    date, time = stamp
    return struct.pack(
        "<11sBBBHHHHHHHI",
        name, attributes,
        0,           # NT reserved: no lower-case flags; mixed case uses long names
        0,           # creation time, 10 ms units
        time, date,  # creation
        date,        # last access
        0,           # high cluster word, always 0 on FAT12
        time, date,  # last write
        cluster, size,
    )


def _long_name_entries(name: str, short_name: bytes) -> bytes:
    """VFAT entries for ``name``, last piece first as they sit on disk."""
    checksum = _short_name_checksum(short_name)
    encoded = name.encode("utf-16-le")
    units = [int.from_bytes(encoded[i:i + 2], "little") for i in range(0, len(encoded), 2)]
    count = math.ceil(len(units) / LONG_NAME_CHARS)
    # The name ends with a NUL unless it fills the last entry exactly; the
    # rest of that entry is 0xFFFF.
    if len(units) % LONG_NAME_CHARS:
        units.append(0x0000)
    units += [0xFFFF] * (count * LONG_NAME_CHARS - len(units))
    entries = []
    for index in range(count):
        piece = units[index * LONG_NAME_CHARS:(index + 1) * LONG_NAME_CHARS]
        order = index + 1 | (LAST_LONG_ENTRY if index == count - 1 else 0)
        entries.append(struct.pack(
            "<B5HBBB6HH2H",
            order, *piece[0:5], ATTR_LONG_NAME, 0, checksum, *piece[5:11], 0, *piece[11:13],
        ))
    return b"".join(reversed(entries))


def _short_name_checksum(short_name: bytes) -> int:
    total = 0
    for byte in short_name:
        total = (((total & 1) << 7) + (total >> 1) + byte) & 0xFF
    return total


def _root_directory(root: _Node, label: "bytes | None", stamp: "tuple[int, int]") -> bytes:
    entries = b""
    if label is not None:
        entries += _short_entry(label, ATTR_VOLUME_LABEL, 0, 0, stamp)
    entries += _directory_entries(root, stamp)
    return entries.ljust(ROOT_SECTORS * SECTOR_SIZE, b"\0")


def _subdirectory(directory: _Node, parent_cluster: int, stamp: "tuple[int, int]") -> bytes:
    dot = _short_entry(b".".ljust(11), ATTR_DIRECTORY, directory.first_cluster, 0, stamp)
    dotdot = _short_entry(b"..".ljust(11), ATTR_DIRECTORY, parent_cluster, 0, stamp)
    return dot + dotdot + _directory_entries(directory, stamp)


def _dos_timestamp(moment: datetime.datetime) -> "tuple[int, int]":
    if not 1980 <= moment.year <= 2107:
        raise ValueError(f"floppy: timestamp {moment} is outside FAT's years 1980-2107")
    date = (moment.year - 1980) << 9 | moment.month << 5 | moment.day
    time = moment.hour << 11 | moment.minute << 5 | moment.second // 2
    return date, time


# --- space -----------------------------------------------------------------


def _check_root_fits(root: _Node, has_label: bool) -> None:
    used = sum(_entry_count(node) for node in root.children.values()) + has_label
    if used > ROOT_ENTRY_COUNT:
        raise ValueError(
            f"floppy: the root directory needs {used} entries (long names take several); "
            f"it has {ROOT_ENTRY_COUNT} — use shorter names or a subdirectory"
        )


def _clusters_needed(node: _Node) -> int:
    if not node.is_dir:
        return math.ceil(len(node.data) / SECTOR_SIZE)
    slots = 2 + sum(_entry_count(child) for child in node.children.values())
    return math.ceil(slots * ENTRY_SIZE / SECTOR_SIZE)


def _allocate_clusters(root: _Node) -> None:
    """Give every file and subdirectory one contiguous run of clusters."""
    nodes = list(_walk(root))
    needed = sum(_clusters_needed(node) for node in nodes)
    if needed > CLUSTER_COUNT:
        raise ValueError(
            f"floppy: the files need {needed * SECTOR_SIZE:,} bytes of clusters; "
            f"a 1.44 MB floppy holds {CLUSTER_COUNT * SECTOR_SIZE:,}"
        )
    next_free = FIRST_CLUSTER
    for node in nodes:
        node.cluster_count = _clusters_needed(node)
        node.first_cluster = next_free if node.cluster_count else 0
        next_free += node.cluster_count


def _walk(directory: _Node):
    """Every node below ``directory``, in a fixed order."""
    for node in directory.sorted_children():
        yield node
        if node.is_dir:
            yield from _walk(node)


def _fat_table(root: _Node) -> bytes:
    entries = [0] * (FIRST_CLUSTER + CLUSTER_COUNT)
    entries[0] = 0xF00 | MEDIA_DESCRIPTOR
    entries[1] = END_OF_CHAIN
    for node in _walk(root):
        last = node.first_cluster + node.cluster_count - 1
        for cluster in range(node.first_cluster, last):
            entries[cluster] = cluster + 1
        if node.cluster_count:
            entries[last] = END_OF_CHAIN
    return _pack_fat12(entries).ljust(SECTORS_PER_FAT * SECTOR_SIZE, b"\0")


def _pack_fat12(entries: "list[int]") -> bytes:
    """Two 12-bit entries share three bytes, low nibbles first."""
    if len(entries) % 2:
        entries = entries + [0]
    packed = bytearray()
    for even, odd in zip(entries[0::2], entries[1::2]):
        packed += (even | odd << 12).to_bytes(3, "little")
    return bytes(packed)


def _write_clusters(image: bytearray, directory: _Node, parent_cluster: int, stamp: "tuple[int, int]") -> None:
    for node in directory.sorted_children():
        if node.is_dir:
            content = _subdirectory(node, parent_cluster, stamp)
        else:
            content = node.data
        start = (DATA_START + node.first_cluster - FIRST_CLUSTER) * SECTOR_SIZE
        image[start:start + len(content)] = content
        if node.is_dir:
            _write_clusters(image, node, node.first_cluster, stamp)


# --- boot sector -----------------------------------------------------------


def _volume_id(files: "dict[str, bytes]", label: str, mtime: datetime.datetime) -> int:
    """A serial number derived from the content: stable for the same inputs,
    different for different floppies (DOS-era systems use it to notice a
    changed disk)."""
    digest = hashlib.sha256(f"{label}\0{mtime.isoformat()}".encode())
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return int.from_bytes(digest.digest()[:4], "little")


def _boot_sector(label: bytes, volume_id: int) -> bytes:
    header = struct.pack(
        "<3s8sHBHBHHBHHHII",
        b"\xEB\x3C\x90",   # jump over the BPB to the boot code at 0x3E
        b"MSWIN4.1",       # the OEM name Microsoft recommends for compatibility
        SECTOR_SIZE,
        1,                 # sectors per cluster
        RESERVED_SECTORS,
        FAT_COUNT,
        ROOT_ENTRY_COUNT,
        TOTAL_SECTORS,
        MEDIA_DESCRIPTOR,
        SECTORS_PER_FAT,
        SECTORS_PER_TRACK,
        HEADS,
        0,                 # hidden sectors: a floppy has no partition table
        0,                 # 32-bit sector count, unused below 65536 sectors
    )
    extended = struct.pack(
        "<BBBI11s8s",
        0x00,              # BIOS drive number: first floppy
        0,
        0x29,              # says volume id, label and type follow
        volume_id,
        label,
        b"FAT12   ",
    )
    sector = bytearray(SECTOR_SIZE)
    sector[:len(header) + len(extended)] = header + extended
    sector[0x3E:0x3E + len(_BOOT_CODE)] = _BOOT_CODE
    sector[510:512] = b"\x55\xAA"
    return bytes(sector)
