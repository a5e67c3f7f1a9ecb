"""The whole pipeline on the tiny guest, under real QEMU: media checked by
real readers, builds collected, partial reruns, failures and Ctrl-C.

Tests run in file order on one project; each puts back what it changes.
"""

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import signal

from revive.qemu import version as qemu_version

from .conftest import REPO, interrupt, qemu_processes

pytestmark = pytest.mark.integration

STAGES = {"keys", "payload", "iso", "floppy", "install", "snapshot"}


def test_first_build_runs_every_stage_and_collects_outputs(built):
    assert built.first_run.executed == STAGES | {"build:hello", "build:other"}, \
        built.first_run.stdout
    table = built.first_run.stdout[built.first_run.stdout.index("\nbuilds"):]
    rows = {line.split()[0]: line.split() for line in table.splitlines()[1:] if line.split()}
    assert rows["hello"][1] == "ok" and "hello.txt" in rows["hello"]
    assert rows["other"][1] == "ok"
    hello = built.result("hello")
    assert hello["exit_code"] == 0 and hello["timed_out"] is False
    assert hello["outputs"] == ["hello", "hello.txt"]
    out = built.artifacts / "builds" / "hello" / "outputs"
    assert (out / "hello.txt").read_text() == "hello from revive-test, built in a revived VM\n"
    assert os.access(out / "hello", os.X_OK)      # the mode the guest gave it
    log = (built.artifacts / "builds" / "hello" / "log").read_text()
    assert "building hello on Linux" in log and "as root" in log
    assert set(hello["timings"]) >= {"revive", "connect", "prepare", "command", "collect", "total"}
    other = built.artifacts / "builds" / "other" / "outputs" / "copy.txt"
    assert other.read_text() == "other build's input\n"
    mounts = (built.artifacts / "builds" / "other" / "log").read_text()
    assert mounts.startswith("src /mnt/src 9p ro,")


def test_media_pass_real_readers(built):
    floppy = built.artifacts / "media" / "answers.img"
    listing = subprocess.run(["mdir", "-i", floppy, "::"], capture_output=True, text=True,
                             check=True).stdout
    assert "REVIVE" in listing and "AUTHKEYS" in listing
    answers = subprocess.run(["mtype", "-i", floppy, "::REVIVE.CFG"], capture_output=True,
                             text=True, check=True).stdout
    assert "REVIVE_HOSTNAME='revive-test'" in answers
    key = subprocess.run(["mtype", "-i", floppy, "::AUTHKEYS"], capture_output=True,
                         text=True, check=True).stdout
    assert key.strip() == (built.artifacts / "keys" / "id_ed25519.pub").read_text().strip()
    iso = built.artifacts / "media" / "install.iso"
    names = subprocess.run(["isoinfo", "-R", "-f", "-i", iso], capture_output=True,
                           text=True, check=True).stdout.split()
    assert {"/vmlinuz", "/install.img", "/isolinux/isolinux.bin"} <= set(names)
    for disk in ("base.qcow2", "snapshot/disk.qcow2"):
        subprocess.run(["qemu-img", "check", built.artifacts / disk], check=True,
                       capture_output=True)


def test_snapshot_meta_describes_the_machine(built):
    meta = json.loads((built.artifacts / "snapshot" / "meta.json").read_text())
    assert meta["qemu"] == qemu_version()
    assert meta["machine"].startswith("pc-i440fx-")
    assert meta["memory_mb"] == 256
    assert "-incoming" not in meta["argv"]
    assert set(meta["files"]) >= {"disk.qcow2", "state"}
    probe = json.loads((REPO / "artifacts" / "cache" / "accel.json").read_text())
    assert meta["accelerator"] == ("kvm" if probe["usable"] else "tcg")


def test_the_guest_is_revived_not_booted(built):
    """The build's console shows no kernel boot: the guest came from memory."""
    console = (built.artifacts / "logs" / "build-hello-serial.log").read_text(errors="replace")
    assert "Linux version" not in console
    assert built.result("hello")["timings"]["revive"] < 30


def test_nothing_changed_runs_nothing(built):
    proc = built.doit("build")
    assert proc.executed == set()


def test_one_source_file_reruns_only_that_build(built):
    data = built.root / "other" / "data.txt"
    data.write_text("changed input\n")
    info = built.doit("info", "build:other", check=False)
    assert str(data) in info.stdout
    proc = built.doit("build")
    assert proc.executed == {"build:other"}
    out = built.artifacts / "builds" / "other" / "outputs" / "copy.txt"
    assert out.read_text() == "changed input\n"


TREE_FILES = 5000


def test_a_big_share_is_read_from_its_image_and_a_change_reruns_its_build(built):
    """A read-only share of 5,000 files comes as an ext2 image on a CD drive
    (the small shares above stay on 9p): the guest reads every file as the
    host has it, and a changed file reruns the build and is named."""
    tree = built.root / "tree"
    for i in range(TREE_FILES):
        folder = tree / f"d{i // 100:03d}"
        if i % 100 == 0:
            folder.mkdir(parents=True)
        (folder / f"f{i:05d}.c").write_text(f"/* file {i} */\n" + "int x;\n" * (i % 40))
    (tree / "link").symlink_to("d000/f00000.c")
    before = built.config.read_text()
    built.config.write_text(before + f"""
[builds.tree]
command = "cd /mnt/src && find . -type f | sort | xargs md5sum > /mnt/xchg/sums.txt && grep ' /mnt/src ' /proc/mounts > /mnt/xchg/mount.txt"
outputs = ["sums.txt", "mount.txt"]
timeout = "5m"
shares = {{ src = "{tree}" }}
""")
    try:
        assert built.doit("build:tree").executed == {"build:tree"}
        out = built.artifacts / "builds" / "tree" / "outputs"
        assert (out / "mount.txt").read_text().split()[1:3] == ["/mnt/src", "ext2"]
        assert _sums(out / "sums.txt") == _host_sums(tree)
        images = list((built.artifacts / "trees" / "images").glob("*.ext2"))
        assert len(images) == 1

        changed = tree / "d042" / "f04217.c"
        changed.write_text("/* changed */\n")
        info = built.doit("info", "build:tree", check=False)
        assert f"{changed} changed" in info.stdout, info.stdout
        assert built.doit("build").executed == {"build:tree"}
        sums = _sums(out / "sums.txt")
        assert sums["./d042/f04217.c"] == hashlib.md5(b"/* changed */\n").hexdigest()
        assert sums == _host_sums(tree)
        # The image of the tree as it was is gone; the new one is kept.
        assert [p.name for p in (built.artifacts / "trees" / "images").glob("*.ext2")] \
            != [p.name for p in images]
        assert len(list((built.artifacts / "trees" / "images").glob("*.ext2"))) == 1
        assert built.doit("build").executed == set()
        built.doit("clean", "build:tree")
        assert not list((built.artifacts / "trees" / "images").glob("*.ext2"))
    finally:
        built.config.write_text(before)


def _sums(listing) -> "dict[str, str]":
    return {name: digest for digest, name in
            (line.split(None, 1) for line in listing.read_text().splitlines())}


def _host_sums(tree) -> "dict[str, str]":
    return {f"./{p.relative_to(tree)}": hashlib.md5(p.read_bytes()).hexdigest()
            for p in tree.rglob("*") if p.is_file() and not p.is_symlink()}


def test_doit_info_names_the_changed_config_key(built):
    built.edit_config('command = "sh /mnt/src/build.sh"', 'command = "sh /mnt/src/build.sh "')
    try:
        info = built.doit("info", "build:hello", check=False)
        assert "builds.hello" in info.stdout
        assert "command: 'sh /mnt/src/build.sh' -> 'sh /mnt/src/build.sh '" in info.stdout
    finally:
        built.edit_config('command = "sh /mnt/src/build.sh "', 'command = "sh /mnt/src/build.sh"')
    assert built.doit("build").executed == set()


def test_changing_shares_reruns_snapshot_and_builds_only(built):
    built.edit_config('guest = "/mnt/xchg"', 'guest = "/mnt/exchange"')
    built.edit_config('cat /mnt/src/data.txt > /mnt/xchg/copy.txt',
                      'cat /mnt/src/data.txt > /mnt/exchange/copy.txt')
    (built.root / "hello" / "build.sh").write_text(
        (built.root / "hello" / "build.sh").read_text().replace("out=/mnt/xchg", "out=/mnt/exchange"))
    info = built.doit("info", "snapshot", check=False)
    assert "shares.xchg.guest: '/mnt/xchg' -> '/mnt/exchange'" in info.stdout
    proc = built.doit("build")
    assert proc.executed == {"snapshot", "build:hello", "build:other"}
    assert built.result("hello")["exit_code"] == 0
    # The run's JUnit report: both builds passed, with their times and logs.
    cases = junit_cases(built)
    assert set(cases) == {"hello", "other"}
    for name, case in cases.items():
        assert case.find("failure") is None
        assert float(case.get("time")) == pytest.approx(
            built.result(name)["timings"]["total"], abs=0.001)
    assert "building hello on Linux" in cases["hello"].findtext("system-out")


def test_a_failing_build_collects_everything_then_fails_in_one_line(built):
    built.config.write_text(built.config.read_text() + """
[builds.fails]
command = "echo partial > /mnt/exchange/partial.txt; echo to stderr >&2; exit 3"
outputs = ["partial.txt"]
timeout = "1m"
""")
    proc = built.doit("build:fails", check=False)
    assert proc.returncode != 0
    log = built.artifacts / "builds" / "fails" / "log"
    assert f"revive: build fails: the command exited with code 3; log: {log}" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    # The table of builds after the run, also when the build failed.
    table = proc.stdout[proc.stdout.index("\nbuilds"):]
    row = next(line.split() for line in table.splitlines() if line.split()[:1] == ["fails"])
    assert row[1:3] == ["exit", "3"] and "partial.txt" in row
    result = built.result("fails")
    assert result["exit_code"] == 3
    assert "to stderr" in log.read_text()
    assert (built.artifacts / "builds" / "fails" / "outputs" / "partial.txt").read_text() == "partial\n"
    assert not list((built.artifacts / "work").glob("build-fails-*"))
    case = junit_cases(built)["fails"]
    assert case.find("failure").get("message") == \
        f"revive: build fails: the command exited with code 3; log: {log}"
    assert "to stderr" in case.findtext("system-out")


def junit_cases(project) -> dict:
    """The last run's artifacts/junit.xml, parsed: its test cases by name."""
    root = ET.parse(project.artifacts / "junit.xml").getroot()
    return {case.get("name"): case for case in root.iter("testcase")}


def test_a_build_past_its_deadline_is_stopped(built):
    built.edit_config('timeout = "1m"\n', 'timeout = "3s"\n')
    built.edit_config("exit 3", "sleep 60")
    start = time.monotonic()
    proc = built.doit("build:fails", check=False)
    assert proc.returncode != 0 and time.monotonic() - start < 40
    assert "did not finish within [builds.fails] timeout = 3 s" in proc.stdout
    assert built.result("fails")["timed_out"] is True


def test_ctrl_c_during_a_build_leaves_no_qemu_and_no_target(built):
    built.edit_config('timeout = "3s"\n', 'timeout = "5m"\n')
    proc = built.spawn("build:fails")
    try:
        deadline = time.monotonic() + 60
        while not qemu_processes(str(built.root)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert qemu_processes(str(built.root)), "the build never started QEMU"
        time.sleep(2)                       # into the command's `sleep 60`
        interrupt(proc)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert qemu_processes(str(built.root)) == []
    assert not list((built.artifacts / "work").glob("build-fails-*"))
    assert not list((built.artifacts / "builds").glob(".fails.tmp-*"))


def test_killing_doit_outright_still_takes_qemu_down(built):
    proc = built.spawn("build:fails")
    try:
        deadline = time.monotonic() + 60
        while not qemu_processes(str(built.root)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert qemu_processes(str(built.root))
        interrupt(proc, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # PR_SET_PDEATHSIG: the kernel kills QEMU when its parent dies.
    deadline = time.monotonic() + 10
    while qemu_processes(str(built.root)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert qemu_processes(str(built.root)) == []


@pytest.fixture
def short_tmp():
    """A TMPDIR for doit as short as /tmp's: smbd's sockets below it (in
    QEMU's qemu-smb.XXXXXX) must fit a UNIX socket's 108 bytes, which
    pytest's own temporary folders under xdist do not leave room for."""
    folder = Path(tempfile.mkdtemp(prefix="rv-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_smb_shares_work_on_the_linux_guest(built, short_tmp):
    text = built.config.read_text()
    text = text[:text.index("[builds.fails]")]
    for guest in ('guest = "/mnt/src"\n', 'guest = "/mnt/exchange"\n'):
        text = text.replace(guest, guest + 'transport = "smb"\n', 1)
    built.config.write_text(text)
    proc = built.doit("build", env={"TMPDIR": str(short_tmp)})
    assert proc.executed == {"snapshot", "build:hello", "build:other"}
    # QEMU's smb= writes smbd's files to a qemu-smb.XXXXXX of its TMPDIR and
    # removes them only when it quits; a revived copy is killed.
    assert list(short_tmp.iterdir()) == []
    meta = json.loads((built.artifacts / "snapshot" / "meta.json").read_text())
    assert any(",smb=@smb@" in arg for arg in meta["argv"])
    # Only the guest agent's output share is 9p.
    assert not any("virtio-9p" in arg and "revive_log" not in arg for arg in meta["argv"])
    mounts = (built.artifacts / "builds" / "other" / "log").read_text()
    assert mounts.startswith("//10.0.2.4/qemu/src /mnt/src cifs ro,")
    copy = built.artifacts / "builds" / "other" / "outputs" / "copy.txt"
    assert copy.read_text() == "changed input\n"
    hello = built.artifacts / "builds" / "hello" / "outputs" / "hello.txt"
    assert hello.read_text() == "hello from revive-test, built in a revived VM\n"


def test_changing_an_answer_reinstalls(built):
    built.edit_config('hostname = "revive-test"', 'hostname = "renamed"\nuser = "builder"')
    info = built.doit("info", "floppy", check=False)
    assert "hostname: 'revive-test' -> 'renamed'" in info.stdout
    assert "user: 'root' -> 'builder'" in info.stdout
    proc = built.doit("build")
    assert proc.executed == {"floppy", "install", "snapshot", "build:hello", "build:other"}
    out = built.artifacts / "builds" / "hello" / "outputs" / "hello.txt"
    assert out.read_text() == "hello from renamed, built in a revived VM\n"
    # The build ran as the configured user and could write the exchange folder.
    assert "as builder" in (built.artifacts / "builds" / "hello" / "log").read_text()
    assert os.access(built.artifacts / "builds" / "hello" / "outputs" / "hello", os.X_OK)
