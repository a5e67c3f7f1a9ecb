"""The Debian guest under real QEMU, from examples/debian.toml as a user
copies it: a root made from Debian packages on the host, installed by the
tiny guest's installer, snapshotted, and GNU hello built in revived copies
from its Debian source package (fetched by the example's sources:hello task
through apt at test time, cached): one `doit build`, nothing run by hand.

One project for the module; the tests run in file order. The first run
builds two things in parallel: hello as the example has it and a look at
the guest. (A failing build's exit code and log are the tiny guest's tests:
a second configure of hello under TCG costs this module ~3 minutes.)
"""

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from revive.core.errors import UserError
from revive.guests.debian import from_table, sources
from revive.guests.linux import pins

from .conftest import REPO, Project, qemu_processes, stale
from .terminal import PROMPT, Terminal

pytestmark = [pytest.mark.integration, pytest.mark.debian,
              # The first test waits for the whole first run (install,
              # snapshot, a build of hello under TCG).
              pytest.mark.timeout(2400)]

STAGES = {"sources:hello", "keys", "payload", "iso", "floppy", "install", "snapshot"}

PROBE = """
[builds.probe]
shares = { src = "sources:hello" }
command = \"\"\"
. /etc/os-release; echo "os: $ID $VERSION_CODENAME"
echo "init: $(cat /proc/1/comm) $(systemctl is-system-running)"
echo "kernel: $(uname -r)"
echo "host: $(hostname)"
grep -E ' /mnt/(src|xchg) ' /proc/mounts
touch /mnt/src/new 2>/dev/null && echo "src: writable" || echo "src: read-only"
echo written > /mnt/xchg/written.txt
command -v hello || echo "no hello package"
echo "prelude: $(/usr/lib/revive/busybox | head -n 1 | cut -d' ' -f1,2)"
echo "prelude interpreters: $(readelf -l /usr/lib/revive/busybox | grep -c INTERP)"
date +%s > /mnt/xchg/clock
\"\"\"
outputs = ["written.txt", "clock"]
timeout = "5m"
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Project:
    root = tmp_path_factory.mktemp("debian")
    example = (REPO / "examples" / "debian.toml").read_text()
    (root / "config.toml").write_text(example.replace('hostname = "revive-debian"',
                                                      'hostname = "debian-test"')
                                      + PROBE)
    return Project(root)


@pytest.fixture(scope="module")
def built(project) -> Project:
    start = time.monotonic()
    project.first_run = project.doit("-n", "2", "build", check=False, timeout=2400)
    project.first_run_seconds = time.monotonic() - start
    return project


def test_the_example_builds_and_checks_gnu_hello(built):
    proc = built.first_run
    assert proc.executed == STAGES | {"build:hello", "build:probe"}, \
        proc.stdout + proc.stderr
    result = built.result("hello")
    assert result["exit_code"] == 0, (built.artifacts / "builds/hello/log").read_text()[-3000:]
    assert result["outputs"] == ["hello", "test-suite.log"]
    out = built.artifacts / "builds" / "hello" / "outputs"
    report = (out / "test-suite.log").read_text()
    assert "# PASS:  4" in report and "# FAIL:  0" in report
    log = (built.artifacts / "builds" / "hello" / "log").read_text()
    assert "Testsuite summary for GNU Hello 2.10" in log
    binary = out / "hello"
    assert binary.read_bytes()[:4] == b"\x7fELF"
    # Built against the guest's bookworm glibc: it runs on a Debian 12 host.
    ran = subprocess.run([binary, "--greeting=built in a revived Debian"],
                         capture_output=True, text=True)
    assert ran.stdout == "built in a revived Debian\n"


def test_the_guest_is_debian_on_systemd_with_the_shares_mounted(built):
    log = (built.artifacts / "builds" / "probe" / "log").read_text()
    manifest = json.loads((built.artifacts / "payload" / "manifest.json").read_text())
    assert "os: debian bookworm" in log
    assert "init: systemd running" in log
    assert f"kernel: {manifest['kernel_release']}" in log
    assert "host: debian-test" in log
    assert "src /mnt/src 9p ro," in log and "xchg /mnt/xchg 9p rw," in log
    assert "src: read-only" in log
    assert "no hello package" in log
    # It ran over QEMU's guest agent, started by udev and systemd in the guest.
    meta = json.loads((built.artifacts / "snapshot" / "meta.json").read_text())
    assert meta["channel"]["kind"] == "agent" and "agent_sync" in meta["timings"]
    written = built.artifacts / "builds" / "probe" / "outputs" / "written.txt"
    assert written.read_text() == "written\n"


def test_the_steps_after_a_revive_ran_with_the_pinned_static_busybox(built):
    """The clock and the shares were set after the revive by the payload's
    pinned busybox (no dynamic loader for TCG to translate again), not by
    Debian's date and util-linux's mount."""
    log = (built.artifacts / "builds" / "probe" / "log").read_text()
    # 1:1.35.0-4+deb12u1+b1 → "BusyBox v1.35.0"
    upstream = pins.BY_ARCH["amd64"].busybox.version.split(":")[-1].split("-")[0]
    assert f"prelude: BusyBox v{upstream}" in log
    assert "prelude interpreters: 0" in log
    # Mounted by it (test above), and the clock set by it: the guest's
    # time when the probe wrote the file is the host's (a revived copy's
    # clock is the snapshot's until set).
    clock = built.artifacts / "builds" / "probe" / "outputs" / "clock"
    assert abs(int(clock.read_text()) - (built.artifacts / "builds" / "probe" / "log")
               .stat().st_mtime) < 5


def test_the_guest_was_revived_and_its_console_stays_quiet(built):
    console = (built.artifacts / "logs" / "snapshot-serial.log").read_text(errors="replace")
    assert "REVIVE-READY" in console
    assert "login:" not in console
    build_console = (built.artifacts / "logs" / "build-probe-serial.log").read_text(
        errors="replace")
    assert "Linux version" not in build_console
    assert built.result("probe")["timings"]["revive"] < 30
    installer = (built.artifacts / "logs" / "install-serial.log").read_text(errors="replace")
    base = json.loads((built.artifacts / "base.json").read_text())
    assert f"REVIVE-HOSTKEY {base['host_key']}" in installer


def test_a_shell_on_debian_is_bash_over_openssh_with_the_build_shares(built):
    """`doit shell:NAME` on the Debian guest: OpenSSH's sshd (not the tiny
    guest's dropbear), a real pty, the build's shares, and no copy left."""
    term = Terminal(built, "shell:probe", rows=33, cols=111)
    try:
        term.expect("leave with exit", timeout=180)
        term.expect(PROMPT, timeout=120)
        assert term.run(". /etc/os-release; echo $ID-$VERSION_CODENAME").strip() \
            == "debian-bookworm"
        assert term.run("ps -o comm= -p $PPID").strip() == "sshd"
        assert term.run("stty size").strip() == "33 111"
        assert term.run("grep -c ' /mnt/src 9p ro,' /proc/mounts").strip() == "1"
        assert "hello_" in term.run("ls /mnt/src")
        assert term.run("id -un").strip() == "root"
        term.type("exit\r")
        assert term.wait(timeout=120) == 0
    finally:
        term.kill()
    assert b"shell ended; the copy is gone" in term.seen
    assert qemu_processes(str(built.root)) == []
    assert not list((built.artifacts / "work").glob("shell-*"))


def test_the_payload_records_the_mirror_state_it_was_made_from(built):
    listing = (built.artifacts / "payload" / "debian-packages.txt").read_text()
    assert "# Release " in listing and " dated " in listing
    installed = dict(line.split("\t") for line in listing.splitlines()
                     if not line.startswith("#"))
    assert {"openssh-server", "systemd", "build-essential", "gcc"} <= set(installed)
    manifest = json.loads((built.artifacts / "payload" / "manifest.json").read_text())
    assert manifest["packages"] == installed
    assert manifest["releases"] and all("Date" in r for r in manifest["releases"].values())
    assert "build-essential" in manifest["requested"]
    # No SSH host key comes from the cached root: each install makes its own.
    names = subprocess.run(["tar", "-tzf", built.artifacts / "payload/iso/system.tar.gz"],
                           capture_output=True, text=True, check=True).stdout
    assert "ssh_host_" not in names and "./usr/sbin/sshd" in names


def test_nothing_changed_runs_nothing(built):
    proc = built.doit("build:hello", "build:probe")
    assert proc.executed == set()


def test_changing_the_package_list_makes_the_payload_stale(built):
    # Only the payload hashes the list; the ISO, install, snapshot and builds
    # follow from its files, as every kind's do (test_stage_inputs reinstalls
    # for real). The first run proved that listed packages land in the guest
    # (build-essential built hello); a second mmdebstrap, install and
    # snapshot under TCG (~3 min) would prove nothing more.
    text = built.config.read_text()
    built.edit_config('packages = ["build-essential"]', 'packages = ["build-essential", "hello"]')
    try:
        info = built.doit("info", "payload", check=False)
        assert "guest.packages" in info.stdout and "'hello'" in info.stdout
        assert "payload" in stale(built)
    finally:
        built.config.write_text(text)
    assert "payload" not in stale(built)


def test_a_mistake_in_the_guest_table_is_one_line(built):
    # Last but one: a failed payload task leaves doit no record of its run.
    text = built.config.read_text()
    built.edit_config('packages = [', 'packages = ["build essential", ')
    try:
        proc = built.doit("payload", check=False)
        assert proc.returncode != 0
        # Found while the config loads: one line on stderr, no task runs.
        assert ("revive: config.toml: [guest] packages: 'build essential' is not a "
                "Debian package name") in proc.stderr
        assert "Traceback" not in proc.stdout + proc.stderr
    finally:
        built.config.write_text(text)


def test_an_unknown_source_package_is_one_line(built, tmp_path):
    settings = from_table({})
    with pytest.raises(UserError) as err:
        sources.fetch("no-such-package-revive", tmp_path / "x", suite=settings.suite,
                      sources=settings.sources(), cache=REPO / "artifacts" / "cache",
                      log=tmp_path / "sources.log")
    assert "apt-get source no-such-package-revive" in str(err.value)


def test_smb_shares_mount_on_debian_with_the_payloads_busybox(built):
    """Both shares over SMB (the kernel's cifs client, mounted by busybox's
    mount after the revive): the snapshot is retaken, the probe reads the
    sources and writes the exchange folder. Last: it leaves the config as
    it was but the snapshot an SMB one."""
    text = built.config.read_text()
    smb = text
    for guest in ('guest = "/mnt/src"\n', 'guest = "/mnt/xchg"\n'):
        smb = smb.replace(guest, guest + 'transport = "smb"\n', 1)
    assert smb.count('transport = "smb"') == 2
    # smbd's sockets go below QEMU's TMPDIR: short enough for a UNIX socket.
    short = Path(tempfile.mkdtemp(prefix="rv-", dir="/tmp"))
    built.config.write_text(smb)
    try:
        proc = built.doit("build:probe", env={"TMPDIR": str(short)}, timeout=900)
        assert proc.executed == {"snapshot", "build:probe"}, proc.stdout + proc.stderr
    finally:
        built.config.write_text(text)
        shutil.rmtree(short, ignore_errors=True)
    log = (built.artifacts / "builds" / "probe" / "log").read_text()
    assert "//10.0.2.4/qemu/src /mnt/src cifs ro," in log
    assert "//10.0.2.4/qemu/xchg /mnt/xchg cifs rw," in log
    assert "src: read-only" in log
    written = built.artifacts / "builds" / "probe" / "outputs" / "written.txt"
    assert written.read_text() == "written\n"
