"""The Windows guest's stages under doit, up to launching QEMU, with a
stand-in ISO (no Windows image is available here): media checked by real
readers, a wrong ISO refused in one line before anything boots, and a
launched install that misses its deadline leaves a screenshot."""

import hashlib
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from .conftest import REPO, executed, qemu_processes

pytestmark = pytest.mark.integration
NS = {"u": "urn:schemas-microsoft-com:unattend"}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("windows")
    standin = root / "standin.iso"
    standin.write_bytes(os.urandom(2048 * 64))
    shutil.copytree(REPO / "examples" / "hello", root / "examples" / "hello")
    text = (REPO / "examples" / "windows.toml").read_text()
    text = (text.replace("/srv/iso/Win11_24H2_English_x64.iso", str(standin))
                .replace("/srv/cygwin-mirror", str(REPO / "tests" / "data" / "cygwin"))
                .replace('packages = ["make", "gcc-core", "git"]', 'packages = ["gcc-core"]')
                .replace('accel = "auto"', 'accel = "tcg"')
                .replace('install = "2h"', 'install = "20s"')
                .replace('memory = "4G"', 'memory = "1G"'))
    (root / "config.toml").write_text(text)
    return root


def doit(root: Path, *args):
    env = dict(os.environ, REVIVE_CACHE=str(REPO / "artifacts" / "cache"))
    proc = subprocess.run([sys.executable, "-m", "doit", "-f", str(REPO / "dodo.py"),
                           "-d", str(root), *args], env=env, capture_output=True,
                          text=True, timeout=600, stdin=subprocess.DEVNULL)
    proc.executed = executed(proc.stdout)
    return proc


def set_sha(root: Path, sha: str) -> None:
    config = root / "config.toml"
    lines = [f'iso_sha256 = "{sha}"' if l.startswith("iso_sha256") else l
             for l in config.read_text().splitlines()]
    config.write_text("\n".join(lines) + "\n")


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
    set_sha(project, hashlib.sha256(standin.read_bytes()).hexdigest())
    proc = doit(project, "install")
    assert proc.returncode != 0
    assert proc.executed == {"install"}
    logs = project / "artifacts" / "logs"
    failure = [l for l in proc.stdout.splitlines() if l.startswith("revive:")][-1]
    assert "no answer within 20 s" in failure
    assert f"screen saved as {logs / 'install-screen.png'}" in failure
    assert (logs / "install-screen.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    argv = (logs / "install-qemu.log").read_text().splitlines()[0]
    for device in ("-machine q35", "ahci", "e1000e,netdev=net0", "usb-tablet",
                   "restrict=on", "if=pflash", "-rtc base=localtime,clock=vm",
                   str(standin), str(project / "artifacts" / "media" / "install.iso")):
        assert device in argv
    assert not (project / "artifacts" / "base.qcow2").exists()
    assert qemu_processes(str(project)) == []
