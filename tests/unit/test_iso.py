"""The ISO writer, checked by real readers: genisoimage's isoinfo (each of
the three name trees separately) and xorriso (extraction, El Torito)."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from revive.formats import iso

LONG_NAME = "python3-" + "x" * 70 + "-1.0-1.tar.xz"  # over Joliet's 64
BOOT_IMAGE = bytes(range(256)) * 16  # 4096 B: two CD sectors, like isolinux.bin


def tree_for(host: Path) -> "dict[str, Path | bytes]":
    (host / "isolinux.bin").write_bytes(BOOT_IMAGE)
    (host / "payload.tar.xz").write_bytes(bytes(range(251)) * 1200)  # ~300 KB
    (host / "setup.sh").write_bytes(b"#!/bin/sh\necho hi\n")
    (host / "setup.sh").chmod(0o755)
    return {
        "autounattend.xml": b"<unattend/>\n",
        "isolinux/isolinux.bin": host / "isolinux.bin",
        "setup/cygwin/x86_64/release/foo/foo-1.0.tar.xz": host / "payload.tar.xz",
        # Both mangle to FOO_1_0_TAR.XZ in plain ISO 9660.
        "setup/cygwin/x86_64/release/foo/foo_1.0.tar.xz": b"the other foo",
        "setup/cygwin/x86_64/release/foo/" + LONG_NAME: b"long",
        "setup.sh": host / "setup.sh",
        "Mixed Case/Ünïcode.txt": "Ünïcode".encode(),
        "empty": b"",
    }


def tool(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} not found: apt-get install {package}")
    return found


def run(argv: "list[str]") -> str:
    result = subprocess.run(argv, capture_output=True, stdin=subprocess.DEVNULL, timeout=30)
    assert result.returncode == 0, f"{argv}: {result.stderr.decode(errors='replace')}"
    return result.stdout.decode("utf-8", errors="surrogateescape")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    host = tmp_path_factory.mktemp("host")
    tree = tree_for(host)
    path = tmp_path_factory.mktemp("iso") / "payload.iso"
    iso.write_iso(path, tree, "CCCOMA_X64FRE_EN-US_DV9",
                  boot={"image": "isolinux/isolinux.bin", "catalog": "isolinux/boot.cat"})
    return path, tree


def listing(image: Path, *options: str, encoding: str = "utf-8") -> "set[str]":
    isoinfo = tool("isoinfo", "genisoimage")
    result = subprocess.run([isoinfo, *options, "-f", "-i", str(image)],
                            capture_output=True, stdin=subprocess.DEVNULL, timeout=30)
    assert result.returncode == 0, result.stderr
    return set(result.stdout.decode(encoding).splitlines())


def paths_with_parents(tree) -> "set[str]":
    paths = set()
    for key in tree:
        parts = key.split("/")
        paths.update("/" + "/".join(parts[:n]) for n in range(1, len(parts) + 1))
    return paths


def test_rock_ridge_names_are_the_original_paths(built):
    image, tree = built
    assert listing(image, "-R") == paths_with_parents(tree) | {"/isolinux/boot.cat"}


def test_joliet_names_keep_case(built):
    image, tree = built
    # isoinfo knows no UTF-8 for Joliet; Latin-1 covers the test's names.
    names = listing(image, "-J", "-j", "iso8859-1", encoding="latin-1")
    expected = paths_with_parents(tree) | {"/isolinux/boot.cat"}
    long_path = "/setup/cygwin/x86_64/release/foo/" + LONG_NAME
    assert names - {n for n in names if "~" in n} == expected - {long_path}
    assert "/autounattend.xml" in names
    assert "/Mixed Case/Ünïcode.txt" in names


def test_joliet_shortens_long_names_keeping_the_extension(built):
    image, _ = built
    folder = "/setup/cygwin/x86_64/release/foo/"
    shortened = [n for n in listing(image, "-J", "-j", "iso8859-1", encoding="latin-1") if "~" in n]
    assert len(shortened) == 1
    name = shortened[0].removeprefix(folder)
    assert len(name) <= 64 and name.startswith("python3-xxx") and name.endswith(".xz")


def test_plain_iso9660_names_are_unique_d_characters(built):
    image, tree = built
    names = listing(image)
    assert len(names) == len(paths_with_parents(tree)) + 1  # + boot.cat
    leaf = re.compile(r"^[A-Z0-9_]+(\.[A-Z0-9_]*;1)?$")
    for path in names:
        for part in path.strip("/").split("/"):
            assert leaf.match(part), path
            assert len(part.removesuffix(";1")) <= 31, path
    assert "/AUTOUNATTEND.XML;1" in names
    foo = "/SETUP/CYGWIN/X86_64/RELEASE/FOO/"
    assert {foo + "FOO_1_0_TAR.XZ;1", foo + "FOO_1_0_TAR_1.XZ;1"} <= names


def test_extracted_files_are_byte_identical(built, tmp_path):
    osirrox = tool("osirrox", "xorriso")
    image, tree = built
    out = tmp_path / "out"
    run([osirrox, "-indev", str(image), "-extract", "/", str(out)])
    for key, source in tree.items():
        expected = source.read_bytes() if isinstance(source, Path) else source
        got = (out / key).read_bytes()
        if key == "isolinux/isolinux.bin":
            # The boot info table (bytes 8-63) is patched in; see below.
            expected, got = expected[:8] + expected[64:], got[:8] + got[64:]
        assert got == expected, key
    assert (out / "setup.sh").stat().st_mode & 0o111  # still runnable


def test_el_torito_boots_isolinux_style(built):
    xorriso = tool("xorriso", "xorriso")
    image, _ = built
    report = run([xorriso, "-indev", str(image), "-report_el_torito", "plain"])
    assert "El Torito cat path : /isolinux/boot.cat" in report
    assert "El Torito img path :   1  /isolinux/isolinux.bin" in report
    assert "boot-info-table" in report
    boot_line = next(line for line in report.splitlines() if line.startswith("El Torito boot img"))
    _, platform, bootable, emulation, _, _, load_size, lba = boot_line.split(":")[1].split()
    assert (platform, bootable, emulation, load_size) == ("BIOS", "y", "none", "4")

    # isolinux finds itself through the boot info table: the primary volume
    # descriptor's sector, its own sector and its length.
    data = image.read_bytes()
    table = data[int(lba) * 2048 + 8:int(lba) * 2048 + 24]
    pvd_lba, file_lba, length = (int.from_bytes(table[i:i + 4], "little") for i in (0, 4, 8))
    assert (pvd_lba, file_lba, length) == (16, int(lba), len(BOOT_IMAGE))


def test_volume_id_is_kept_whole(built):
    isoinfo = tool("isoinfo", "genisoimage")
    image, _ = built
    report = run([isoinfo, "-d", "-i", str(image)])
    assert "Volume id: CCCOMA_X64FRE_EN-US_DV9\n" in report
    assert "El Torito" in report


def test_without_boot_there_is_no_el_torito(tmp_path):
    isoinfo = tool("isoinfo", "genisoimage")
    image = tmp_path / "data.iso"
    iso.write_iso(image, {"a.txt": b"a"}, "DATA")
    assert "El Torito" not in run([isoinfo, "-d", "-i", str(image)])


def test_files_are_streamed_not_read(tmp_path, monkeypatch):
    # A multi-GB payload must not be read into memory: host files reach
    # pycdlib as paths, which it opens only while copying them.
    source = tmp_path / "big.bin"
    source.write_bytes(b"x" * 10)
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail(f"read {self} whole"))
    iso.write_iso(tmp_path / "x.iso", {"big.bin": source}, "X")


@pytest.mark.parametrize("tree, boot", [
    ({"a": b"", "a/b": b""}, None),
    ({"../a": b""}, None),
    ({"a": b""}, {"image": "missing.bin", "catalog": "boot.cat"}),
    ({"a": b"", "boot.cat": b""}, {"image": "a", "catalog": "boot.cat"}),
])
def test_impossible_trees_are_refused_and_nothing_is_written(tmp_path, tree, boot):
    with pytest.raises(ValueError):
        iso.write_iso(tmp_path / "x.iso", tree, "X", boot=boot)
    assert list(tmp_path.iterdir()) == []


def test_volume_id_longer_than_32_is_refused(tmp_path):
    with pytest.raises(ValueError, match="volume id"):
        iso.write_iso(tmp_path / "x.iso", {"a": b""}, "X" * 33)
