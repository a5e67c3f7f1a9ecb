"""Every Windows version's media under doit (issue 18): examples/windows.toml
with only the version, the ISO and what that version's ISO names differently
changed (the edition in install.wim; for XP/2003 BIOS and a key), through
`doit iso floppy`, and read back with real readers: the answer floppy with
mtools, the payload CD with xorriso (osirrox). Both must hold exactly the
answer file revive renders for that config. No QEMU: nothing boots."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from revive.config import load
from revive.guests.windows.answers import answer_file, floppy_files
from revive.guests.windows.settings import VERSIONS

from ..conftest import WINDOWS_EDITIONS as EDITION
from .conftest import REPO, executed

pytestmark = pytest.mark.integration
XP_KEY = "AAAAA-BBBBB-CCCCC-DDDDD-EEEEE"


def mirror_for(version: str, root: Path) -> Path:
    """The Cygwin fixture; XP/2003 install 32-bit Cygwin, whose setup
    program is setup-x86.exe (the fixture's archives are stand-ins)."""
    fixture = REPO / "tests" / "data" / "cygwin"
    if VERSIONS[version] != "nt5":
        return fixture
    mirror = root.parent / f"{version}-cygwin"
    shutil.copytree(fixture, mirror)
    shutil.copyfile(mirror / "setup-x86_64.exe", mirror / "setup-x86.exe")
    return mirror


def project_for(version: str, root: Path) -> Path:
    text = (REPO / "examples" / "windows.toml").read_text()
    lines = []
    for line in text.splitlines():
        key = line.split("=", 1)[0].strip()
        if key == "windows_version":
            line = f'windows_version = "{version}"'
        elif key == "iso":
            line = f'iso = "{root / (version + ".iso")}"'
        elif key == "cygwin_mirror":
            line = f'cygwin_mirror = "{mirror_for(version, root)}"'
        elif key == "packages":
            line = 'packages = ["gcc-core"]'
        elif key == "image":
            line = "" if VERSIONS[version] == "nt5" else f'image = "{EDITION[version]}"'
        elif key == "firmware" and VERSIONS[version] == "nt5":
            line = f'firmware = "bios"\nproduct_key = "{XP_KEY}"'
        elif key in ("memory", "cpus", "disk_size"):
            line = ""              # the version's own defaults
        lines.append(line)
    root.mkdir(parents=True)
    (root / "config.toml").write_text("\n".join(lines) + "\n")
    # The example's shares name examples/hello beside the config, which must
    # exist when the config loads.
    shutil.copytree(REPO / "examples" / "hello", root / "examples" / "hello")
    return root


def doit(root: Path, *args):
    env = dict(os.environ, REVIVE_CACHE=str(REPO / "artifacts" / "cache"))
    return subprocess.run([sys.executable, "-m", "doit", "-f", str(REPO / "dodo.py"),
                           "-d", str(root), *args], env=env, capture_output=True,
                          text=True, timeout=600, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("version", sorted(VERSIONS))
def test_every_versions_media_hold_its_answer_file(version, tmp_path):
    root = project_for(version, tmp_path / version)
    proc = doit(root, "iso", "floppy")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert {"payload", "iso", "floppy"} <= executed(proc.stdout)
    settings = load(root / "config.toml").guest_settings
    name, expected = answer_file(settings)
    media = root / "artifacts" / "media"
    on_floppy = subprocess.run(["mtype", "-i", media / "answers.img", f"::{name}"],
                               capture_output=True, check=True).stdout
    # mtype writes what the floppy holds, byte for byte
    assert on_floppy == expected
    listing = subprocess.run(["mdir", "-b", "-i", media / "answers.img", "::"],
                             capture_output=True, text=True, check=True).stdout
    assert {p.lstrip(":/").lower() for p in listing.split()} == \
        {n.lower() for n in floppy_files(settings)}
    extracted = tmp_path / "from-cd"
    subprocess.run(["osirrox", "-indev", media / "install.iso", "-extract", f"/{name}",
                    extracted], capture_output=True, check=True)
    assert extracted.read_bytes() == expected
    if name == "autounattend.xml":
        assert settings.product_key and settings.product_key.encode() in expected
        assert b"<UILanguageFallback>" in expected
