"""A big read-only shared folder as an ext2 image, for the guest to mount
from a CD drive instead of over 9p.

Over 9p every stat and every read is a round trip into QEMU's 9p server;
from an image the guest's own page cache answers (listing and reading
50,000 small files: about 9× faster, docs/benchmarks.md). Below
``THRESHOLD`` entries 9p stays (a handful of files gains nothing).

``mke2fs -d`` copies the folder into a new image as a normal user (no
root, no mount). Images are kept in one folder, named by the host folder
and its listing (every entry's stamps, ``tree.stamps``), so an unchanged
folder is not copied again; making a new image of a folder removes the
older ones of that folder.
"""

import hashlib
import os
import shutil
from pathlib import Path

from .files import atomic_path, remove
from .proc import run
from . import tree

# Entries (files, folders, links) from which a read-only share is an image.
THRESHOLD = 200
BLOCK = 4096
INODE_SIZE = 256
SUFFIX = ".ext2"


def mke2fs() -> str:
    # /usr/sbin is not on every user's PATH.
    return shutil.which("mke2fs") or "/usr/sbin/mke2fs"


def debugfs() -> str:
    return shutil.which("debugfs") or "/usr/sbin/debugfs"


def entries(found: bytes) -> "list[tuple[str, str, int]]":
    """``tree.stamps`` parsed: (relative path, type letter, size) of each
    entry below the folder (the folder itself left out)."""
    fields = found.split(b"\0")
    out = []
    for name, rest in zip(fields[0:-1:2], fields[1::2]):
        if not name:
            continue
        kind, size = rest.split(b" ", 2)[:2]
        out.append((os.fsdecode(name), chr(kind[0]), int(size)))
    return out


def size_for(listed: "list[tuple[str, str, int]]") -> "tuple[int, int]":
    """(blocks, inodes) that hold the entries with room to spare: every
    file's data in whole blocks and its indirect blocks, a block per folder
    and per long link target, the inode tables, and 10% + 1 MiB for ext2's
    own metadata (group descriptors, bitmaps)."""
    inodes = len(listed) + 64
    data = 0
    for _name, kind, size in listed:
        if kind == "f":
            blocks = -(-size // BLOCK)
            data += blocks + (blocks // (BLOCK // 4) + 2 if blocks > 12 else 0)
        elif kind == "d":
            data += 1 + size // BLOCK
        elif kind == "l" and size >= 60:        # shorter targets live in the inode
            data += 1
    data += -(-inodes * INODE_SIZE // BLOCK)
    return data + data // 10 + (1 << 20) // BLOCK, inodes


def key_of(folder: Path) -> str:
    """The part of an image's name that says which host folder it holds."""
    return hashlib.sha256(os.fsencode(str(Path(folder).resolve()))).hexdigest()[:16]


# Listings a build's up-to-date check took in this process, for its
# revive: resolved folder → ``tree.stamps``.
_remembered: "dict[Path, bytes]" = {}


def remember(folder: Path, found: "bytes | None") -> None:
    """``found`` is the listing a build's up-to-date check just took of
    ``folder`` (before it hashed any file): the next ``image_for`` of the
    folder in this process takes it instead of listing the folder again.
    The image it names was made from a folder with exactly these stamps
    (made now: from the folder as it is now; a change since the check
    gives the next check another listing, so the build runs again)."""
    if found is not None:
        _remembered[Path(folder).resolve()] = found


def image_for(folder: Path, images: Path, log: Path,
              threshold: int = THRESHOLD) -> "Path | None":
    """The ext2 image of ``folder`` in ``images``: reused when the folder's
    listing is the one it was made from, else made now (older images of
    the folder removed). None when the folder has fewer than ``threshold``
    entries (or no GNU find lists it): the share stays on 9p. The listing
    is the one ``remember`` was given (used once), else taken now."""
    folder = Path(folder).resolve()
    found = _remembered.pop(folder, None) or tree.stamps(folder)
    if found is None:
        return None
    # Two NUL-ended fields an entry, the folder's own first: counted, not
    # parsed (50,000 entries parse in 0.1 s, needed only to make an image).
    if found.count(b"\0") // 2 - 1 < threshold:
        return None
    key = key_of(folder)
    image = Path(images) / f"{key}-{hashlib.sha256(found).hexdigest()[:32]}{SUFFIX}"
    if not image.exists():
        listed = entries(found)
        blocks, inodes = size_for(listed)
        Path(log).parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(image) as tmp:
            run([mke2fs(), "-q", "-F", "-t", "ext2", "-b", str(BLOCK), "-I", str(INODE_SIZE),
                 "-N", str(inodes), "-m", "0", "-E", "root_owner=0:0", "-L", "revive-tree",
                 "-d", folder, tmp, str(blocks)],
                log=log, what=f"making an ext2 image of the shared folder {folder}")
            if not any(name == "lost+found" for name, _, _ in listed):
                # mke2fs's own: the share has no such folder (and a build
                # user who is not root could not read it: `find` would fail).
                run([debugfs(), "-w", "-R", "rmdir /lost+found", tmp], log=log,
                    what=f"removing lost+found from the image of {folder}")
        prune(images, key, keep=image)
    return image


def images_of(images: Path, folder: Path) -> "list[Path]":
    """The images made of one host folder."""
    return sorted(Path(images).glob(f"{key_of(folder)}-*{SUFFIX}"))


def prune(images: Path, key: str, keep: Path) -> None:
    """Remove the older images of one host folder (``key_of``): a copy that
    has one open keeps reading it (revive links it into its own work
    folder first)."""
    for path in Path(images).glob(f"{key}-*{SUFFIX}"):
        if path != keep:
            remove(path)


def image_at(folder: Path, images: Path, log: Path, target: Path,
             threshold: int = THRESHOLD) -> "Path | None":
    """``image_for``'s image hard-linked (else copied) to ``target`` in a
    copy's own work folder, so that pruning the cache cannot take it away
    before QEMU opens it; None when the share stays on 9p. A parallel copy
    that made a newer image of the folder may remove this one between the
    two steps: then it is looked for (or made) once more."""
    for attempt in (1, 2):
        image = image_for(folder, images, log, threshold)
        if image is None:
            return None
        try:
            return _link(image, Path(target))
        except FileNotFoundError:
            if attempt == 2:
                raise
    return None


def _link(image: Path, target: Path) -> Path:
    remove(target)
    try:
        os.link(image, target)
    except FileNotFoundError:
        raise
    except OSError:                     # another filesystem
        shutil.copyfile(image, target)
    return target
