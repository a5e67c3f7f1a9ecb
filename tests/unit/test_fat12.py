"""The FAT12 writer, checked by real readers: dosfstools' fsck.fat and mtools.

Reading the image through the Linux vfat driver would need root, so these
two independent implementations stand in for the guest.
"""

import datetime
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from revive.formats import fat12

SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])

# Content that is not all one byte, so a wrong cluster shows up.
LARGE = b"".join(hashlib.sha256(bytes([i])).digest() for i in range(200))  # 6400 B

FILES = {
    "autounattend.xml": b'<?xml version="1.0"?>\n<unattend/>\n',
    "REVIVE.CFG": b"guest=windows\r\n",
    "large.bin": LARGE,
    "sector.bin": LARGE[:512],
    "empty": b"",
    "Setup Script.cmd": b"@echo off\r\n",
    "sub/deep/Nested File.txt": b"nested\n",
}


def tool(name: str, package: str) -> str:
    found = shutil.which(name, path=SBIN_PATH)
    if found is None:
        pytest.skip(f"{name} not found: apt-get install {package}")
    return found


def run(argv: "list[str]") -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, stdin=subprocess.DEVNULL, timeout=30)


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("floppy") / "answers.img"
    fat12.write_floppy(path, FILES, label="REVIVE")
    return path


def test_image_is_a_144mb_floppy(image):
    data = image.read_bytes()
    assert len(data) == 1440 * 1024
    assert data[510:512] == b"\x55\xaa"
    assert data[0x36:0x3E] == b"FAT12   "
    assert data[0x2B:0x36] == b"REVIVE     "
    first_fat = data[512:512 + 9 * 512]
    second_fat = data[512 + 9 * 512:512 + 18 * 512]
    assert first_fat[:3] == b"\xf0\xff\xff"  # FAT[0]=0xFF0, FAT[1]=0xFFF
    assert first_fat == second_fat


def test_booting_the_floppy_passes_on_to_the_next_device(image):
    # SeaBIOS's default order is disk, floppy, CD: with an empty disk it
    # boots this floppy before the install CD.  The boot code must be INT 18h
    # ("try the next device"), or the install never starts.
    data = image.read_bytes()
    assert data[:2] == b"\xeb\x3c"  # jump to 0x3E
    assert data[0x3E:0x40] == b"\xcd\x18"


def test_fsck_finds_no_errors(image):
    fsck = tool("fsck.fat", "dosfstools")
    result = run([fsck, "-n", "-V", str(image)])
    out = result.stdout.decode()
    # fsck.fat -n exits 0 even when it reports problems, so read its output:
    # a clean image yields only the banner, the verify pass and the summary.
    problems = [
        line for line in out.splitlines()
        if line.strip()
        and not line.startswith(("fsck.fat ", "Starting check/repair pass.",
                                 "Starting verification pass.",
                                 "Checking we can access the last sector"))
        and f"{image}: " not in line
    ]
    assert result.returncode == 0, out + result.stderr.decode()
    assert problems == [], out
    # fsck counts the two subdirectories and the volume label as files too.
    assert f"{len(FILES) + 3} files" in out


def test_mdir_lists_every_long_name(image):
    mdir = tool("mdir", "mtools")
    result = run([mdir, "-/", "-i", str(image), "::"])
    assert result.returncode == 0, result.stderr.decode()
    listing = result.stdout.decode()
    for path in FILES:
        if path != "REVIVE.CFG":
            assert path.rpartition("/")[2] in listing
    assert "REVIVE   CFG" in listing  # a plain 8.3 name: shown without a long name
    assert "AUTOUN~1 XML" in listing  # the alias Windows would generate
    assert "Volume in drive : is REVIVE" in listing


@pytest.mark.parametrize("name", sorted(FILES))
def test_mtype_reads_exact_content(image, name):
    mtype = tool("mtype", "mtools")
    result = run([mtype, "-i", str(image), f"::{name}"])
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == FILES[name]


def test_long_names_are_found_whatever_the_case(image):
    mtype = tool("mtype", "mtools")
    result = run([mtype, "-i", str(image), "::AUTOUNATTEND.XML"])
    assert result.stdout == FILES["autounattend.xml"]


def test_same_inputs_give_same_bytes(tmp_path):
    first, second = tmp_path / "a.img", tmp_path / "b.img"
    fat12.write_floppy(first, FILES)
    fat12.write_floppy(second, dict(reversed(list(FILES.items()))))
    assert first.read_bytes() == second.read_bytes()


def test_different_content_gives_a_different_volume_id():
    a = fat12.build_floppy({"a.txt": b"1"})
    b = fat12.build_floppy({"a.txt": b"2"})
    assert a[0x27:0x2B] != b[0x27:0x2B]


def test_timestamp_is_stored(tmp_path):
    mdir = tool("mdir", "mtools")
    path = tmp_path / "t.img"
    fat12.write_floppy(path, {"A.TXT": b"x"}, mtime=datetime.datetime(2024, 5, 6, 7, 8, 10))
    assert "2024-05-06   7:08" in run([mdir, "-i", str(path), "::"]).stdout.decode()


def test_aliases_stay_unique(tmp_path):
    mdir = tool("mdir", "mtools")
    names = [f"autounattend-{i}.xml" for i in range(12)]
    path = tmp_path / "many.img"
    fat12.write_floppy(path, {name: name.encode() for name in names})
    listing = run([mdir, "-i", str(path), "::"]).stdout.decode()
    aliases = [line[:12] for line in listing.splitlines() if "autounattend-" in line]
    assert len(set(aliases)) == len(names)
    mtype = tool("mtype", "mtools")
    for name in names:
        assert run([mtype, "-i", str(path), f"::{name}"]).stdout == name.encode()


def test_content_that_does_not_fit_is_refused(tmp_path):
    target = tmp_path / "full.img"
    with pytest.raises(ValueError, match="1.44 MB"):
        fat12.write_floppy(target, {"big.bin": bytes(1_457_665)})
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_content_that_exactly_fills_the_floppy_fits(tmp_path):
    mtype = tool("mtype", "mtools")
    data = (LARGE * 228)[:2847 * 512]
    path = tmp_path / "full.img"
    fat12.write_floppy(path, {"FULL.BIN": data})
    assert run([mtype, "-i", str(path), "::FULL.BIN"]).stdout == data


def test_root_directory_overflow_is_refused():
    long_names = {f"{'x' * 40}{i}.txt": b"" for i in range(60)}  # 5 slots each
    with pytest.raises(ValueError, match="root directory"):
        fat12.build_floppy(long_names)


@pytest.mark.parametrize("files", [
    {"a.txt": b"", "A.TXT": b""},
    {"a": b"", "a/b": b""},
    {"bad:name": b""},
    {"../escape": b""},
])
def test_names_fat_cannot_hold_are_refused(files):
    with pytest.raises(ValueError):
        fat12.build_floppy(files)


def test_failed_write_keeps_the_old_image(tmp_path):
    target = tmp_path / "answers.img"
    fat12.write_floppy(target, {"A.TXT": b"old"})
    before = target.read_bytes()
    with pytest.raises(ValueError):
        fat12.write_floppy(target, {"A.TXT": bytes(2_000_000)})
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["answers.img"]
