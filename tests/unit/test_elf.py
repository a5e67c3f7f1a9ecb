"""ELF reading on real binaries of other architectures: armhf (32-bit,
little-endian), s390x (64-bit, big-endian), ppc64el and arm64, the tiny
guest's pinned dropbear of each fetched through revive's private apt
configuration (the host's apt state untouched), compared with what readelf
says of the same files. Debian's archive carries no 32-bit big-endian
architecture any more."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from revive.guests import debs
from revive.guests.linux import elf
from revive.guests.tiny import pins as tiny_pins

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / "artifacts" / "cache" / "debs"

# The loader each names, its word size and byte order.
DROPBEAR = {
    "armhf": ("/lib/ld-linux-armhf.so.3", 32, "<"),
    "s390x": ("/lib/ld64.so.1", 64, ">"),
    "ppc64el": ("/lib64/ld64.so.2", 64, "<"),
    "arm64": ("/lib/ld-linux-aarch64.so.1", 64, "<"),
}


@pytest.fixture(scope="module", params=sorted(DROPBEAR))
def dropbear(request, tmp_path_factory):
    arch = request.param
    loader, bits, endian = DROPBEAR[arch]
    pin = next(p for p in tiny_pins.BY_ARCH[arch] if p.package == "dropbear-bin")
    tmp = tmp_path_factory.mktemp(arch)
    deb = debs.fetch([pin], CACHE, tmp / "apt.log", suite="bookworm")["dropbear-bin"]
    debs.extract(deb, tmp / "root", ["usr/sbin/dropbear"])
    return arch, tmp / "root/usr/sbin/dropbear", loader, bits, endian


def readelf(*args) -> str:
    if shutil.which("readelf") is None:
        pytest.skip("readelf not found: apt-get install binutils")
    return subprocess.run(["readelf", *args], capture_output=True, text=True,
                          check=True).stdout


def test_word_size_and_byte_order_come_from_the_file(dropbear):
    _, binary, _, bits, endian = dropbear
    parsed = elf.Elf(binary.read_bytes())
    assert (parsed.bits, parsed.endian) == (bits, endian)


def test_interpreter_and_needed_libraries_match_readelf(dropbear):
    arch, binary, loader, _, _ = dropbear
    assert elf.interpreter(binary) == loader
    listed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", readelf("-d", binary))
    assert elf.needed(binary) == listed
    assert "libc.so.6" in listed and "libtomcrypt.so.1" in listed


def test_every_section_name_matches_readelf(dropbear):
    _, binary, _, _, _ = dropbear
    names = re.findall(r"^\s*\[\s*[1-9]\d*\]\s+(\S+)", readelf("-S", "-W", binary), re.M)
    assert sorted(n for n in elf.Elf(binary.read_bytes()).sections if n) == \
        sorted(n for n in names if n and n != "Name")


def test_a_foreign_package_leaves_the_host_apt_state_alone(dropbear):
    arch, _, _, _, _ = dropbear
    state = sorted(CACHE.glob(f"apt-{arch}-bookworm-*"))
    assert state, "no private apt state in the cache"
    config = (state[0] / "apt.conf").read_text()
    assert f'APT::Architecture "{arch}";' in config
    assert f'Dir::State::lists "{state[0] / "lists"}";' in config


def test_not_an_elf_file_is_refused():
    with pytest.raises(ValueError):
        elf.Elf(b"\x7fELF\x03\x01" + bytes(60))
