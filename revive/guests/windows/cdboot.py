"""The UEFI "Press any key to boot from CD or DVD" prompt, made impossible.

Under UEFI a Windows ISO boots through its El Torito EFI image,
``efi/microsoft/boot/efisys.bin``: a small FAT image whose loader
(cdboot.efi) waits a few seconds for a key and otherwise skips the CD. On
a slow start (TCG, a loaded host) key presses sent blindly can miss that
window. Every Windows ISO since 8 also carries ``efisys_noprompt.bin``,
the same image with a loader that does not ask.

dockur/windows rebuilds the whole ISO with that image as its EFI boot entry
(genisoimage ... -eltorito-boot efi/microsoft/boot/efisys_noprompt.bin).
Here nothing of the user's ISO is copied: a qcow2 overlay on the ISO gets
the no-prompt image written over the sectors the boot catalog points at,
after checking that those sectors hold exactly ``efisys.bin``. QEMU serves
the overlay as the install CD; the ISO itself is never written. Only
Debian's qemu-utils (qemu-img, qemu-io) and pycdlib (UDF, Joliet or
ISO 9660 names) are needed, offline.

Where that is not possible (no EFI boot entry, no no-prompt image, the
bytes do not match, a larger replacement), the install falls back to
pressing Enter for its first seconds, and the install log says which way
it went and why.
"""

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from revive.core.proc import run

SECTOR = 2048
EFI_PLATFORM = 0xEF
PROMPT_IMAGE = ("efi", "microsoft", "boot", "efisys.bin")
NOPROMPT_IMAGE = ("efi", "microsoft", "boot", "efisys_noprompt.bin")


@dataclass(frozen=True)
class CdBoot:
    """How the install CD is attached, and why."""
    path: Path            # the file QEMU opens as the install CD
    format: str           # raw (the ISO itself) or qcow2 (the overlay)
    prompt_free: bool     # True: nothing to press; False: press Enter
    how: str              # one line for the install log


def boot_catalog_lba(iso) -> Optional[int]:
    """The boot catalog's sector from the El Torito boot record (sector 17)."""
    iso.seek(17 * SECTOR)
    record = iso.read(SECTOR)
    if record[0:1] != b"\0" or record[1:6] != b"CD001" \
            or not record[7:39].rstrip(b"\0").startswith(b"EL TORITO SPECIFICATION"):
        return None
    return int.from_bytes(record[0x47:0x4B], "little")


def efi_boot_images(iso) -> "list[tuple[int, int]]":
    """(load sector, length in bytes as the catalog says) of every EFI
    entry of the boot catalog. The catalog counts 512-byte sectors."""
    lba = boot_catalog_lba(iso)
    if lba is None:
        return []
    iso.seek(lba * SECTOR)
    catalog = iso.read(SECTOR)
    if catalog[0] != 1 or catalog[0x1E:0x20] != b"\x55\xAA":
        return []
    found = []

    def entry(off):
        e = catalog[off:off + 32]
        return int.from_bytes(e[8:12], "little"), int.from_bytes(e[6:8], "little") * 512

    if catalog[1] == EFI_PLATFORM and catalog[32] == 0x88:
        found.append(entry(32))
    off = 64
    while off + 32 <= len(catalog) and catalog[off] in (0x90, 0x91):
        platform, count = catalog[off + 1], int.from_bytes(catalog[off + 2:off + 4], "little")
        for n in range(count):
            e_off = off + 32 * (n + 1)
            if e_off + 32 <= len(catalog) and platform == EFI_PLATFORM \
                    and catalog[e_off] == 0x88:
                found.append(entry(e_off))
        last = catalog[off] == 0x91
        off += 32 * (count + 1)
        if last:
            break
    return found


@contextmanager
def open_iso_file(iso_path: Path, parts: "tuple[str, ...]"):
    """A seekable reader of one file of the ISO, found by its path
    case-insensitively through UDF (what Microsoft's ISOs carry), else
    Joliet, else ISO 9660; None when it is not there or the ISO cannot be
    read. Only the bytes asked for are read: install.wim may be 5 GB."""
    import pycdlib
    iso = pycdlib.PyCdlib()
    try:
        iso.open(str(iso_path))
    except Exception:               # pycdlib raises many kinds on odd images
        yield None
        return
    try:
        found = None
        for facade, encoding in ((iso.get_udf_facade, "utf-8"),
                                 (iso.get_joliet_facade, "utf-16-be"),
                                 (iso.get_iso9660_facade, "latin-1")):
            try:
                fs = facade()
                path = "/"
                for part in parts:
                    names = {}
                    for child in fs.list_children(path):
                        if child is None:
                            continue
                        raw = child.file_identifier()
                        name = raw.decode(encoding, "replace") if isinstance(raw, bytes) else raw
                        plain = name.split(";")[0].rstrip(".")
                        if plain not in ("", "\0", "\1"):
                            names[plain.lower()] = name
                    if part.lower() not in names:
                        raise KeyError(part)
                    path = path.rstrip("/") + "/" + names[part.lower()]
                found = (fs, path)
                break
            except Exception:
                continue
        if found is None:
            yield None
        else:
            with found[0].open_file_from_iso(found[1]) as reader:
                yield reader
    finally:
        iso.close()


def _read_file(iso_path: Path, parts: "tuple[str, ...]") -> Optional[bytes]:
    try:
        with open_iso_file(iso_path, parts) as reader:
            return None if reader is None else reader.read()
    except Exception:
        return None


def _keys(iso: Path, why: str) -> CdBoot:
    return CdBoot(iso, "raw", False, f"UEFI CD prompt: {why}; pressing Enter "
                  "during the first seconds instead")


def prepare(iso: Path, overlay: Path, log: Path) -> CdBoot:
    """The install CD for a UEFI install: an overlay whose EFI boot image
    does not prompt, or the ISO itself with a reason why not."""
    with open(iso, "rb") as f:
        images = efi_boot_images(f)
        if not images:
            return _keys(iso, "the ISO has no EFI El Torito boot entry")
        lba, catalog_length = images[0]
        prompting = _read_file(iso, PROMPT_IMAGE)
        quiet = _read_file(iso, NOPROMPT_IMAGE)
        if prompting is None or quiet is None:
            return _keys(iso, "the ISO has no efi/microsoft/boot/efisys.bin "
                         "and efisys_noprompt.bin")
        f.seek(lba * SECTOR)
        booted = f.read(max(len(prompting), len(quiet)))
    if booted[:len(quiet)] == quiet:
        return CdBoot(iso, "raw", True, "UEFI CD prompt: none, the ISO already "
                      f"boots efisys_noprompt.bin (sector {lba})")
    if booted[:len(prompting)] != prompting:
        return _keys(iso, f"the EFI boot image at sector {lba} is not "
                     "efi/microsoft/boot/efisys.bin")
    if len(quiet) > max(len(prompting), catalog_length):
        return _keys(iso, f"efisys_noprompt.bin ({len(quiet)} bytes) is larger "
                     f"than the boot image it would replace ({len(prompting)} bytes)")
    overlay.parent.mkdir(parents=True, exist_ok=True)
    image = overlay.with_name(overlay.name + ".efisys_noprompt.bin")
    image.write_bytes(quiet)
    try:
        overlay.unlink(missing_ok=True)
        run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(iso),
             str(overlay)], log=log, what="qemu-img create (install CD overlay)")
        run(["qemu-io", "-f", "qcow2", "-c",
             f"write -q -s {image} {lba * SECTOR} {len(quiet)}", str(overlay)],
            log=log, what="qemu-io write (no-prompt EFI boot image)")
    finally:
        image.unlink(missing_ok=True)
    return CdBoot(overlay, "qcow2", True,
                  f"UEFI CD prompt: none, efisys_noprompt.bin ({len(quiet)} bytes) "
                  f"written over efisys.bin at sector {lba} in the overlay {overlay.name}")


def install_cd(s, overlay: Path, log: Path) -> CdBoot:
    """The install CD for this guest, with the way the prompt is handled
    written to ``log`` (the install log). Under BIOS nothing is needed:
    etfsboot.com only asks when the disk already boots, and the disk comes
    first in the boot order, so the CD boots while the disk is empty."""
    if s.firmware != "uefi":
        cd = CdBoot(s.iso, "raw", True, "BIOS CD prompt: none, etfsboot.com "
                    "asks only when the disk already boots")
    else:
        cd = prepare(s.iso, overlay, log)
    with open(log, "a") as fh:
        fh.write(cd.how + "\n")
    return cd


def iso_languages(iso: Path) -> "Optional[list[str]]":
    """The UI languages the ISO installs (sources/lang.ini), or None when
    they cannot be read."""
    data = _read_file(iso, ("sources", "lang.ini"))
    if data is None:
        return None
    text = data.decode("utf-16") if data[:2] in (b"\xff\xfe", b"\xfe\xff") \
        else data.decode("utf-8", "replace").lstrip("\ufeff")
    languages, section = [], None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line.strip("[]").strip().lower()
        elif section == "available ui languages" and "=" in line:
            languages.append(line.split("=", 1)[0].strip())
    return languages or None
