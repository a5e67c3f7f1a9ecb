"""The Debian guest under real QEMU, from examples/debian.toml as a user
copies it: a root made from Debian packages on the host, installed by the
tiny guest's installer, snapshotted, and GNU hello built in revived copies
from its Debian source package (fetched by the example's sources:hello task
through apt at test time, cached): one `doit build`, nothing run by hand.

One project for the module; the tests run in file order. The first run
builds three things in parallel: hello as the example has it, hello with a
test patched to fail in the build command, and a look at the guest.
"""

import json
import subprocess
import time

import pytest

from tasks.core.errors import UserError
from tasks.guests.debian import from_table, sources

from .conftest import REPO, Project

pytestmark = [pytest.mark.integration, pytest.mark.debian,
              # The first test waits for the whole first run (install,
              # snapshot, two builds of hello under TCG).
              pytest.mark.timeout(2400)]

STAGES = {"sources:hello", "keys", "payload", "iso", "floppy", "install", "snapshot"}

# The example's build, with one of hello's tests made to expect another
# greeting: the sources on the share stay as they are.
BREAK_A_TEST = ("tar -xf /mnt/src/hello_*.orig.tar.gz\n",
                "tar -xf /mnt/src/hello_*.orig.tar.gz\n"
                "sed -i 's/^Nothing happens here.$/Something happens here./' "
                "hello-*/tests/greeting-1\n")

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
\"\"\"
outputs = ["written.txt"]
timeout = "5m"
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Project:
    root = tmp_path_factory.mktemp("debian")
    example = (REPO / "examples" / "debian.toml").read_text()
    build = example[example.index("[builds.hello]"):]
    broken = build.replace("[builds.hello]", "[builds.hello-broken]").replace(*BREAK_A_TEST)
    assert broken.count("sed -i") == 1
    (root / "config.toml").write_text(example.replace('hostname = "revive-debian"',
                                                      'hostname = "debian-test"')
                                      + "\n" + broken + PROBE)
    return Project(root)


@pytest.fixture(scope="module")
def built(project) -> Project:
    start = time.monotonic()
    project.first_run = project.doit("-n", "3", "--continue", "build", check=False,
                                     timeout=2400)
    project.first_run_seconds = time.monotonic() - start
    return project


def test_the_example_builds_and_checks_gnu_hello(built):
    proc = built.first_run
    assert proc.executed == STAGES | {"build:hello", "build:hello-broken", "build:probe"}, \
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


def test_a_failing_make_check_fails_the_task_with_the_guest_exit_code_and_log(built):
    proc = built.first_run
    assert proc.returncode != 0
    log = built.artifacts / "builds" / "hello-broken" / "log"
    assert (f"revive: build hello-broken: the command exited with code 2; log: {log}"
            in proc.stdout)
    assert "Traceback" not in proc.stdout + proc.stderr
    result = built.result("hello-broken")
    assert result["exit_code"] == 2 and result["timed_out"] is False
    assert "FAIL: tests/greeting-1" in log.read_text()
    report = built.artifacts / "builds" / "hello-broken" / "outputs" / "test-suite.log"
    assert "FAIL: tests/greeting-1" in report.read_text()
    assert "# FAIL:  1" in report.read_text()
    # The other builds of the same run were not stopped by this one.
    assert built.result("hello")["exit_code"] == 0


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
    # (A failed task always runs again, so hello-broken is left out.)
    proc = built.doit("build:hello", "build:probe")
    assert proc.executed == set()


def test_changing_the_package_list_reruns_media_install_snapshot_and_builds(built):
    built.edit_config('packages = ["build-essential"]', 'packages = ["build-essential", "hello"]')
    info = built.doit("info", "payload", check=False)
    assert "guest.packages" in info.stdout and "'hello'" in info.stdout
    proc = built.doit("build:probe")
    assert proc.executed == {"payload", "iso", "install", "snapshot", "build:probe"}
    log = (built.artifacts / "builds" / "probe" / "log").read_text()
    assert "/usr/bin/hello" in log
    listing = (built.artifacts / "payload" / "debian-packages.txt").read_text()
    assert "\nhello\t2.10" in listing
    info = built.doit("info", "build:hello", check=False)
    assert "snapshot/meta.json" in info.stdout


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
