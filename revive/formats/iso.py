"""An install ISO written with pycdlib: ISO 9660 level 3 + Joliet + Rock Ridge.

Every file carries three names.  Windows reads the Joliet one and Linux the
Rock Ridge one, and both get the exact original name.  The plain ISO 9660
name (upper-case d-characters, at most 30 of them) is derived from it and
only matters to readers that know nothing else; it is made unique within
its directory because mangling can turn two names into one.

Host files are streamed: pycdlib opens each one only while it copies it, so
multi-GB payloads never sit in memory and thousands of files do not exhaust
file descriptors.
"""

import hashlib
import io
import stat
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pycdlib

from revive.core.files import atomic_path

# Ecma-119 7.5.1 / 7.6.3 at interchange levels 2 and 3.
ISO_FILE_NAME_MAX = 30
ISO_DIRECTORY_NAME_MAX = 31
ISO_EXTENSION_MAX = 8
# pycdlib counts Joliet's 64-character limit in UTF-8 bytes.
JOLIET_NAME_MAX = 64
ROCK_RIDGE_NAME_MAX = 255
VOLUME_ID_MAX = 32
# The Joliet volume id is 16 UCS-2 characters; pycdlib refuses more.
JOLIET_VOLUME_ID_MAX = 16

_D_CHARACTERS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_NOT_IN_JOLIET = set("*/:;?\\")

# A CD is read-only; keep only the host's execute bits so scripts stay runnable.
FILE_MODE = stat.S_IFREG | 0o444
DIRECTORY_MODE = stat.S_IFDIR | 0o555


@dataclass
class _Directory:
    """Where a directory of the tree sits on the ISO, and the names its
    entries already use (compared the way each reader compares them)."""

    iso_path: str
    joliet_path: str
    iso_names: "set[str]" = field(default_factory=set)
    joliet_names: "set[str]" = field(default_factory=set)


def write_iso(
    path: Path,
    tree: "dict[str, Path | bytes]",
    volume_id: str,
    boot: "dict | None" = None,
) -> None:
    """Write an ISO holding ``tree`` (POSIX path inside the ISO -> host file
    or bytes) to ``path``.

    ``boot``, e.g. ``{"image": "isolinux/isolinux.bin", "catalog":
    "isolinux/boot.cat"}``, makes it El Torito bootable the way isolinux
    needs: no emulation, 4 sectors loaded, boot info table patched in.
    """
    _check_volume_id(volume_id)
    files = {_tree_path(key): source for key, source in tree.items()}
    catalog = _boot_catalog_path(boot, files)

    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09",
            vol_ident=volume_id[:JOLIET_VOLUME_ID_MAX])
    # new() puts one id in both volume descriptors, but Joliet's holds only
    # 16 characters; like genisoimage, cut it there and keep the primary
    # descriptor's whole.
    iso.pvd.volume_identifier = volume_id.encode("ascii").ljust(VOLUME_ID_MAX)

    try:
        directories = _add_directories(iso, files, catalog)
        iso_paths = {}
        for file_path in sorted(files):
            iso_paths[file_path] = _add_file(iso, directories, file_path, files[file_path])
        if boot is not None:
            _add_boot(iso, directories, iso_paths[_tree_path(boot["image"])], catalog)
        with atomic_path(Path(path)) as tmp:
            iso.write(str(tmp))
    finally:
        iso.close()


def _check_volume_id(volume_id: str) -> None:
    if not volume_id or len(volume_id) > VOLUME_ID_MAX or not volume_id.isascii():
        raise ValueError(f"iso: volume id {volume_id!r} must be 1-{VOLUME_ID_MAX} ASCII characters")


def _tree_path(key: str) -> PurePosixPath:
    path = PurePosixPath(key.lstrip("/"))
    if not path.parts or any(part in (".", "..") for part in key.split("/") if part):
        raise ValueError(f"iso: {key!r} is not a plain path inside the ISO")
    for part in path.parts:
        if len(part.encode()) > ROCK_RIDGE_NAME_MAX:
            raise ValueError(f"iso: a name in {key!r} is longer than {ROCK_RIDGE_NAME_MAX} bytes")
    return path


def _boot_catalog_path(boot: "dict | None", files: "dict[PurePosixPath, object]") -> "PurePosixPath | None":
    if boot is None:
        return None
    image, catalog = _tree_path(boot["image"]), _tree_path(boot["catalog"])
    if image not in files:
        raise ValueError(f"iso: boot image {boot['image']!r} is not in the tree")
    if catalog in files:
        raise ValueError(f"iso: boot catalog {boot['catalog']!r} would replace a file of the tree")
    return catalog


# --- directories and files -------------------------------------------------


def _add_directories(
    iso: pycdlib.PyCdlib,
    files: "dict[PurePosixPath, object]",
    catalog: "PurePosixPath | None",
) -> "dict[PurePosixPath, _Directory]":
    """Create every directory the files (and the boot catalog) live in,
    parents first; return where each one ended up."""
    root = PurePosixPath(".")
    needed = {parent for path in [*files, *([catalog] if catalog else [])] for parent in path.parents}
    clashes = needed & set(files)
    if clashes:
        raise ValueError(f"iso: {str(min(clashes))!r} is both a file and a directory")

    directories = {root: _Directory(iso_path="/", joliet_path="/")}
    for path in sorted(needed - {root}, key=lambda p: p.parts):
        parent = directories[path.parent]
        iso_name = _claim_iso_name(parent, _iso_directory_name(path.name), "")
        joliet_name = _claim_joliet_name(parent, path.name)
        directory = _Directory(
            iso_path=_join(parent.iso_path, iso_name),
            joliet_path=_join(parent.joliet_path, joliet_name),
        )
        iso.add_directory(directory.iso_path, rr_name=path.name,
                          joliet_path=directory.joliet_path, file_mode=DIRECTORY_MODE)
        directories[path] = directory
    return directories


def _add_file(
    iso: pycdlib.PyCdlib,
    directories: "dict[PurePosixPath, _Directory]",
    path: PurePosixPath,
    source: "Path | bytes",
) -> str:
    """Add one file under all three names; return its ISO 9660 path."""
    directory = directories[path.parent]
    iso_path, joliet_path = _claim_file_names(directory, path.name)
    names = dict(iso_path=iso_path, rr_name=path.name, joliet_path=joliet_path)
    if isinstance(source, (bytes, bytearray)):
        iso.add_fp(io.BytesIO(bytes(source)), len(source), file_mode=FILE_MODE, **names)
    else:
        host_mode = Path(source).stat().st_mode
        # A path (not an open file) lets pycdlib open it only while copying.
        iso.add_file(str(source), file_mode=FILE_MODE | (host_mode & 0o111), **names)
    return iso_path


def _claim_file_names(directory: _Directory, name: str) -> "tuple[str, str]":
    stem, extension = _iso_file_name_parts(name)
    iso_name = _claim_iso_name(directory, stem, extension)
    joliet_name = _claim_joliet_name(directory, name)
    return (
        _join(directory.iso_path, f"{iso_name}.{extension};1"),
        _join(directory.joliet_path, joliet_name),
    )


def _add_boot(
    iso: pycdlib.PyCdlib,
    directories: "dict[PurePosixPath, _Directory]",
    image_iso_path: str,
    catalog: PurePosixPath,
) -> None:
    catalog_iso_path, catalog_joliet_path = _claim_file_names(directories[catalog.parent], catalog.name)
    iso.add_eltorito(
        image_iso_path,
        bootcatfile=catalog_iso_path,
        rr_bootcatname=catalog.name,
        joliet_bootcatfile=catalog_joliet_path,
        media_name="noemul",
        # isolinux wants 4 sectors loaded and its boot info table (where it
        # finds its own location on the CD) filled in.
        boot_load_size=4,
        boot_info_table=True,
    )


def _join(directory: str, name: str) -> str:
    return directory.rstrip("/") + "/" + name


# --- ISO 9660 names --------------------------------------------------------


def _d_characters(text: str) -> str:
    return "".join(c if c in _D_CHARACTERS else "_" for c in text.upper())


def _iso_file_name_parts(name: str) -> "tuple[str, str]":
    """Stem and extension in d-characters: ``foo-1.0.tar.xz`` -> ``FOO_1_0_TAR``
    and ``XZ``.  A leading dot does not start an extension."""
    stem, dot, extension = name.rpartition(".")
    if not dot or not stem:
        stem, extension = name, ""
    extension = _d_characters(extension)[:ISO_EXTENSION_MAX]
    stem = _d_characters(stem)[:ISO_FILE_NAME_MAX - len(extension)]
    return stem or "_", extension


def _iso_directory_name(name: str) -> str:
    return _d_characters(name)[:ISO_DIRECTORY_NAME_MAX]


def _claim_iso_name(directory: _Directory, stem: str, extension: str) -> str:
    """A stem not yet used in ``directory``; ``_1``, ``_2`` … on collision.

    Stems are compared without extensions for directories (``""``) and
    with them for files.  A file ``FOO.`` and a directory ``FOO`` count as
    one name: Linux shows both as ``foo``.
    """
    limit = (ISO_FILE_NAME_MAX - len(extension)) if extension else ISO_DIRECTORY_NAME_MAX
    candidate, number = stem, 0
    while f"{candidate}.{extension}" in directory.iso_names:
        number += 1
        tail = f"_{number}"
        candidate = stem[:limit - len(tail)] + tail
    directory.iso_names.add(f"{candidate}.{extension}")
    return candidate


# --- Joliet names ----------------------------------------------------------


def _claim_joliet_name(directory: _Directory, name: str) -> str:
    """``name`` as Joliet allows it, unique in ``directory`` the way Windows
    compares names (ignoring case)."""
    safe = "".join("_" if c in _NOT_IN_JOLIET else c for c in name)
    candidate = _fit_joliet(safe, tag=_short_hash(name))
    number = 0
    while candidate.casefold() in directory.joliet_names:
        number += 1
        candidate = _fit_joliet(safe, tag=f"{_short_hash(name)}{number}", force=True)
    directory.joliet_names.add(candidate.casefold())
    return candidate


def _fit_joliet(name: str, tag: str, force: bool = False) -> str:
    """``name`` if short enough, else its start + ``~tag`` + its extension, so
    the same long name always becomes the same short one."""
    if len(name.encode()) <= JOLIET_NAME_MAX and not force:
        return name
    stem, dot, extension = name.rpartition(".")
    if not dot or not stem or len(extension) > 16:
        stem, dot, extension = name, "", ""
    suffix = f"~{tag}{dot}{extension}"
    room = JOLIET_NAME_MAX - len(suffix.encode())
    return _cut_utf8(stem, room) + suffix


def _cut_utf8(text: str, max_bytes: int) -> str:
    return text.encode()[:max_bytes].decode(errors="ignore")


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:6]
