"""What install.wim (or install.esd) on the user's ISO says about its
editions, read at the install stage before anything boots.

Setup fails without a person when the answer file names an image the ISO
does not have, when an evaluation image is given a product key (evaluation
media accept only their own), or when a volume-licence or retail Server
image gets none ("Windows cannot read the <ProductKey> setting"). The image
name does not tell an evaluation image apart (rgl/windows-vagrant installs
Server 2022's evaluation ISO as "Windows Server 2022 SERVERSTANDARD"), its
EDITIONID does ("ServerStandardEval"), so that is what is checked.

Format (wimlib's documentation of the WIM header): "MSWIM\\0\\0\\0", and at
offset 72 the XML data's resource header (7 bytes size, 1 byte flags,
8 bytes offset, 8 bytes original size); the XML is UTF-16LE, uncompressed,
in WIM and ESD files alike.
"""

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from revive.core.errors import UserError

from . import product_keys
from .cdboot import open_iso_file

MAGIC = b"MSWIM\0\0\0"
XML_RESHDR = 72
MAX_XML = 16 << 20


@dataclass(frozen=True)
class Image:
    index: int
    name: str
    edition: str        # EDITIONID: Professional, ServerStandardEval, …EvalCor

    @property
    def evaluation(self) -> bool:
        return "eval" in self.edition.lower()      # ServerStandardEval(Cor)


def parse_xml(data: bytes) -> "list[Image]":
    text = data.decode("utf-16-le").lstrip("\ufeff")
    root = ET.fromstring(text)
    images = []
    for image in root.findall("IMAGE"):
        images.append(Image(int(image.get("INDEX", "0")), image.findtext("NAME", "").strip(),
                            image.findtext("WINDOWS/EDITIONID", "").strip()))
    return images


def read_images(reader) -> "Optional[list[Image]]":
    header = reader.read(208)
    if len(header) < 96 or header[:8] != MAGIC:
        return None
    size = int.from_bytes(header[XML_RESHDR:XML_RESHDR + 7], "little")
    offset = int.from_bytes(header[XML_RESHDR + 8:XML_RESHDR + 16], "little")
    if not 0 < size <= MAX_XML:
        return None
    reader.seek(offset)
    return parse_xml(reader.read(size))


def iso_images(iso: Path) -> "Optional[list[Image]]":
    """The images of sources/install.wim or install.esd, or None."""
    for name in ("install.wim", "install.esd"):
        try:
            with open_iso_file(iso, ("sources", name)) as reader:
                if reader is not None:
                    return read_images(reader)
        except Exception:
            return None
    return None


def _fail(key: str, problem: str, todo: str, log) -> UserError:
    message = f"config.toml: [guest] {key}: {problem}; {todo}"
    if log:
        with open(log, "a") as fh:
            fh.write(message + "\n")
    return UserError(message, log=str(log) if log else None)


def check_edition(s, log: Optional[Path] = None) -> None:
    """Refuse an image the ISO lacks and a product key that does not fit the
    edition; an ISO whose install.wim cannot be read is let through, with a
    line in the log."""
    if s.answer_format != "autounattend":
        return
    images = iso_images(s.iso)
    if not images:
        if log:
            with open(log, "a") as fh:
                fh.write(f"{s.iso}: no readable sources/install.wim or install.esd; "
                         "image and product_key not checked\n")
        return
    if log:
        with open(log, "a") as fh:
            fh.write(f"{s.iso.name}: install.wim images: " + "; ".join(
                f"{i.index} {i.name!r} ({i.edition})" for i in images) + "\n")
    wanted = [i for i in images if (i.index == s.image if isinstance(s.image, int)
                                    else i.name.lower() == str(s.image).lower())]
    if not wanted:
        raise _fail("image", f"{s.image!r} is not in {s.iso.name}",
                    "use one of " + ", ".join(f"{i.index} {i.name!r}" for i in images), log)
    image = wanted[0]
    if log:
        with open(log, "a") as fh:
            fh.write(f"install.wim image {image.index} {image.name!r}: edition "
                     f"{image.edition}\n")
    if image.evaluation and s.product_key:
        raise _fail("product_key", f"{image.name!r} is an evaluation image "
                    f"({image.edition}), which refuses other keys",
                    'set product_key = "" (none)', log)
    if not image.evaluation and not s.product_key:
        # Setup would wait on its key page until the install's deadline.
        how = (f'set image = "{image.name}" so its generic key is chosen, or '
               if isinstance(s.image, int) else "")
        raise _fail("product_key", f"image {s.image!r} is {image.name!r} ({image.edition}), "
                    "which stops Setup without a key and has none here",
                    how + "set product_key to your key (docs/windows.md lists the "
                    "generic ones)", log)
    check_license(s, log)


def iso_channel(iso: Path) -> Optional[str]:
    """The [Channel] of sources/ei.cfg ("Retail", "OEM", "Volume"), or None."""
    try:
        with open_iso_file(iso, ("sources", "ei.cfg")) as reader:
            if reader is None:
                return None
            text = reader.read(4096).decode("utf-8", "replace")
    except Exception:
        return None
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    for before, after in zip(lines, lines[1:]):
        if before.lower() == "[channel]":
            return after
    return None


def check_license(s, log: Optional[Path] = None) -> None:
    """Refuse a default key made for the other kind of media: a generic
    retail key on volume-licence media (sources/ei.cfg says Volume), or a
    KMS client key on retail/OEM media. A key of the user's is theirs."""
    channel = iso_channel(s.iso)
    if log:
        with open(log, "a") as fh:
            fh.write(f"{s.iso.name}: sources/ei.cfg channel {channel or 'none'}\n")
    if channel is None or not s.product_key:
        return
    media = "volume" if channel.lower() == "volume" else "retail"
    made_for = product_keys.license_of(s.product_key)
    if made_for is not None and made_for != media:
        raise _fail("license", f"{s.iso.name} is {channel} media (sources/ei.cfg) but the "
                    f"default key is for {made_for} media", f'set license = "{media}"', log)
