"""The Windows guest's stages under doit, up to launching QEMU, with a
stand-in ISO (no Windows image is available here): media checked by real
readers, a wrong ISO refused in one line before anything boots, and a
launched install that misses its deadline leaves a screenshot.

The stand-in is laid out like Microsoft's ISOs where it matters for the
UEFI CD prompt: an EFI El Torito entry booting efi/microsoft/boot/efisys.bin,
with efisys_noprompt.bin beside it. Each FAT image holds a tiny EFI program
that prints which image OVMF started on the serial console, so the test
sees that the guest really boots the prompt-free one."""

import hashlib
import os
import shutil
import struct
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests import configs

from .conftest import REPO, executed, qemu_processes

pytestmark = pytest.mark.integration
NS = {"u": "urn:schemas-microsoft-com:unattend"}


NOPROMPT_BOOTED = "REVIVE-STEP booted-efisys_noprompt"
PROMPT_BOOTED = "REVIVE-STEP booted-efisys-with-prompt"


def efi_program(line: str) -> bytes:
    """A minimal PE32+ EFI application that writes ``line`` to COM1
    (port 0x3f8) and halts: position-independent code, no relocations."""
    msg = line.encode() + b"\r\n\0"
    code = (b"\x48\x8d\x35" + struct.pack("<i", 15)     # lea rsi, [rip+msg]
            + b"\x66\xba\xf8\x03"                      # mov dx, 0x3f8
            + b"\xac\x84\xc0\x74\x03\xee\xeb\xf8"      # lodsb; test; jz; out; jmp
            + b"\xf4\xeb\xfd" + msg)                    # hlt; jmp hlt
    dos = b"MZ".ljust(0x3C, b"\0") + struct.pack("<I", 0x40)
    coff = b"PE\0\0" + struct.pack("<HHIIIHH", 0x8664, 1, 0, 0, 0, 0xF0, 0x0022)
    optional = struct.pack("<HBBIIIIIQIIHHHHHHIIIIHHQQQQII", 0x20B, 0, 0, 0x200, 0, 0,
                           0x1000, 0x1000, 0x10000000, 0x1000, 0x200, 0, 0, 0, 0, 0, 0,
                           0, 0x2000, 0x200, 0, 10, 0, 0x10000, 0x1000, 0x10000, 0x1000,
                           0, 16) + b"\0" * 128
    section = struct.pack("<8sIIIIIIHHI", b".text", 0x200, 0x1000, 0x200, 0x200,
                          0, 0, 0, 0, 0x60000020)
    return (dos + coff + optional + section).ljust(0x200, b"\0") + code.ljust(0x200, b"\0")


def efi_boot_image(path: Path, line: str, work: Path) -> None:
    program = work / (path.name + ".efi")
    program.write_bytes(efi_program(line))
    for argv in (["mformat", "-C", "-f", "1440", "-i", path, "::"],
                 ["mmd", "-i", path, "::/EFI", "::/EFI/BOOT"],
                 ["mcopy", "-i", path, program, "::/EFI/BOOT/BOOTX64.EFI"]):
        subprocess.run([str(a) for a in argv], check=True, capture_output=True)


def windows_like_standin(root: Path) -> Path:
    tree = root / "standin-tree"
    boot = tree / "efi" / "microsoft" / "boot"
    boot.mkdir(parents=True)
    efi_boot_image(boot / "efisys.bin", PROMPT_BOOTED, root)
    efi_boot_image(boot / "efisys_noprompt.bin", NOPROMPT_BOOTED, root)
    (tree / "sources").mkdir()
    (tree / "sources" / "lang.ini").write_text("[Available UI Languages]\r\nen-US = 3\r\n")
    (tree / "sources" / "padding.bin").write_bytes(os.urandom(2048 * 64))
    standin = root / "standin.iso"
    subprocess.run(["genisoimage", "-quiet", "-o", str(standin), "-J", "-udf",
                    "-iso-level", "3", "-eltorito-alt-boot",
                    "-efi-boot", "efi/microsoft/boot/efisys.bin", "-no-emul-boot",
                    str(tree)], check=True, capture_output=True)
    return standin


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("windows")
    standin = windows_like_standin(root)
    shutil.copytree(REPO / "examples" / "hello", root / "examples" / "hello")
    example = tomllib.loads((REPO / "examples" / "windows.toml").read_text())
    configs.write(root, configs.merge(example, {
        "guest": {"iso": str(standin), "cygwin_mirror": str(REPO / "tests" / "data" / "cygwin"),
                  "packages": ["gcc-core"]},
        "vm": {"accel": "tcg"}, "timeouts": {"install": "40s"}}))
    return root


def doit(root: Path, *args):
    env = dict(os.environ, REVIVE_CACHE=str(REPO / "artifacts" / "cache"))
    proc = subprocess.run([sys.executable, "-m", "doit", "-f", str(REPO / "dodo.py"),
                           "-d", str(root), *args], env=env, capture_output=True,
                          text=True, timeout=600, stdin=subprocess.DEVNULL)
    proc.executed = executed(proc.stdout)
    return proc


def set_sha(root: Path, sha: str) -> None:
    configs.edit(root / "config.toml", {"guest": {"iso_sha256": sha}})


def test_a_wrong_iso_is_refused_in_one_line_before_anything_boots(project):
    proc = doit(project, "install")
    assert proc.returncode != 0
    assert proc.executed == {"keys", "payload", "iso", "floppy", "install"}
    failure = [l for l in proc.stdout.splitlines() if l.startswith("revive:")][-1]
    assert failure.startswith("revive: config.toml: [guest] iso_sha256: standin.iso has "
                              "sha256 ")
    assert "set iso_sha256 to its sha256sum" in failure
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (project / "artifacts" / "logs" / "install-qemu.log").exists()
    assert not (project / "artifacts" / "base.qcow2").exists()


def test_the_payload_cd_lists_with_its_joliet_names(project):
    iso = project / "artifacts" / "media" / "install.iso"
    names = subprocess.run(["isoinfo", "-J", "-j", "iso8859-1", "-f", "-i", iso],
                           capture_output=True, text=True, check=True).stdout.split()
    assert {"/autounattend.xml", "/revive/setup.cmd", "/revive/authorized_keys",
            "/cygwin/x86_64/setup.ini"} <= set(names)
    assert any(n.startswith("/cygwin/") and n.endswith(".tar.xz") for n in names)
    extracted = project / "extracted-autounattend.xml"
    subprocess.run(["osirrox", "-indev", iso, "-extract", "/autounattend.xml", extracted],
                   capture_output=True, check=True)
    root = ET.fromstring(extracted.read_bytes())
    names = root.findall(".//u:LocalAccount/u:Name", NS)
    assert [n.text for n in names] == ["revive"]


def test_the_floppy_carries_the_answer_file(project):
    floppy = project / "artifacts" / "media" / "answers.img"
    listing = subprocess.run(["mdir", "-i", floppy, "::"], capture_output=True,
                             text=True, check=True).stdout
    assert "autounattend.xml" in listing
    xml = subprocess.run(["mtype", "-i", floppy, "::autounattend.xml"],
                         capture_output=True, check=True).stdout
    settings = {c.get("pass") for c in ET.fromstring(xml).findall("u:settings", NS)}
    assert {"windowsPE", "specialize", "oobeSystem"} <= settings


def test_the_right_iso_launches_the_windows_machine_and_a_deadline_saves_the_screen(project):
    standin = project / "standin.iso"
    sha = hashlib.sha256(standin.read_bytes()).hexdigest()
    set_sha(project, sha)
    proc = doit(project, "install")
    assert proc.returncode != 0
    assert proc.executed == {"install"}
    logs = project / "artifacts" / "logs"
    failure = [l for l in proc.stdout.splitlines() if l.startswith("revive:")][-1]
    assert "no answer within 40 s" in failure
    assert f"screen saved as {logs / 'install-screen.png'}" in failure
    assert (logs / "install-screen.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    argv = (logs / "install-qemu.log").read_text().splitlines()[0]
    overlay = project / "artifacts" / "work" / "windows-install-cd.qcow2"
    for device in ("-machine q35", "ahci", "e1000e,netdev=net0", "usb-tablet",
                   "restrict=on", "if=pflash", "-rtc base=localtime,clock=vm",
                   "-cpu Nehalem-v1", f"format=qcow2,file={overlay}",
                   str(project / "artifacts" / "media" / "install.iso")):
        assert device in argv
    # The ISO is only the overlay's backing file, never written.
    assert hashlib.sha256(standin.read_bytes()).hexdigest() == sha
    install_log = (logs / "install.log").read_text()
    assert "UEFI CD prompt: none, efisys_noprompt.bin (1474560 bytes) written over " \
           "efisys.bin" in install_log
    # OVMF started the prompt-free image from the overlay, not the original.
    serial = (logs / "install-serial.log").read_text(errors="replace")
    assert NOPROMPT_BOOTED in serial and PROMPT_BOOTED not in serial
    assert not (project / "artifacts" / "base.qcow2").exists()
    assert qemu_processes(str(project)) == []
