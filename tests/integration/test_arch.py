"""The tiny guest on other architectures under real QEMU (TCG): arm64,
riscv64, armhf (32-bit), ppc64el and s390x (big-endian, virtio over
channel I/O) from an empty project to a first build (payload, install with
the installer booted directly and its media on virtio disks found by
serial, snapshot), a binary of that architecture run from a 9p share,
uname -m as the guest says it, a snapshot refused in one line by a QEMU
that cannot revive it, and by a host without the emulator; the build sent
to a real Dask cluster (a `dask scheduler` and `python -m
revive.cluster.worker` processes on loopback), where only the worker that
has the arch's emulator is given it, and without that worker it fails in
one line after `[cluster] wait_for_worker`; the same build over SSH with
both shares over SMB, a build that sleeps (the revived guest's timer
interrupts come: on riscv64 because the revive re-arms its timer through
the gdbstub; not on ppc64el, skipped), and a failed build's kept copy
reopened in `doit shell`.

One project per architecture (its own install and snapshot, about a minute
under TCG) and one cluster for them all; tests run in file order and put
back what they change.
"""

import contextlib
import json
import os
import re
import shutil
import signal
import time

import pytest

from revive.cluster import certs
from revive.guests import debs
from revive.guests.linux import installer, pins as linux_pins
from revive.qemu import gdbstub, process as qemu
from revive.qemu.devices import ARCHES
from tests import configs

from .cluster import Cluster, running
from .conftest import REPO, Project, qemu_processes
from .terminal import PROMPT, Terminal

pytestmark = pytest.mark.integration

CONFIG = """
[guest]
kind = "tiny"
arch = "{arch}"

[answers]
hostname = "{arch}-test"

[vm]
memory = "256M"

[timeouts]
install = "10m"
boot = "3m"
revive = "1m"

[shares.src]
guest = "/mnt/src"
host = "src"

[shares.xchg]
guest = "/mnt/xchg"
mode = "rw"

[builds.hello]
command = "uname -m > /mnt/xchg/arch.txt && /mnt/src/busybox echo ran from the share > /mnt/xchg/ran.txt && /usr/sbin/qemu-ga -V >> /mnt/xchg/ran.txt && grep ' /mnt/src ' /proc/mounts"
outputs = ["arch.txt", "ran.txt"]
timeout = "2m"
"""

STIP = 1 << 5       # riscv's mip bit: a supervisor timer interrupt is pending

SLEEPS = """
[builds.sleeps]
command = "sleep 1 && echo woke > /mnt/xchg/woke.txt"
outputs = ["woke.txt"]
timeout = "1m"
"""

# A revived ppc64el guest gets no timer interrupt, and revive cannot give it
# one (docs/architectures.md): its sleeps never end.
TIMERS_STOP = {"ppc64el": (
    "QEMU 7.2 does not migrate pseries' TCG decrementer (fixed in QEMU 8.1 by "
    "578912ad7312 \"target/ppc: Migrate DECR SPR\"), and its gdbstub writes DEC "
    "without arming it: a revived ppc64el guest's tick never comes, so sleep 1 never ends")}

FAILS_KEPT = """
[builds.post-mortem]
command = "echo left-behind > /tmp/post-mortem.txt; exit 4"
timeout = "1m"
keep_failed = true
"""


@pytest.fixture(scope="module", params=["arm64", "riscv64", "armhf", "ppc64el", "s390x"])
def project(request, tmp_path_factory):
    arch = ARCHES[request.param]
    # Short: the agent socket below it must fit a unix socket path (107 bytes).
    root = tmp_path_factory.mktemp(arch.name[:1])
    (root / "src").mkdir()
    # A static busybox of the guest's architecture, from its pinned package.
    own = linux_pins.BY_ARCH[arch.name]
    deb = debs.fetch([own.busybox], REPO / "artifacts" / "cache" / "debs",
                     root / "apt.log", suite=arch.suite)[own.busybox.package]
    debs.extract(deb, root / "unpacked", ["bin/busybox", "usr/bin/busybox"])
    (root / "src" / "busybox").write_bytes(installer.busybox_binary(root / "unpacked"))
    (root / "src" / "busybox").chmod(0o755)
    (root / "config.toml").write_text(CONFIG.format(arch=arch.name))
    project = Project(root)
    project.arch = arch
    start = time.monotonic()
    project.first_run = project.doit("build")
    project.first_seconds = time.monotonic() - start
    return project


def test_first_build_reports_the_guest_architecture_and_runs_its_binaries(project):
    assert project.first_run.executed >= {"payload", "install", "snapshot", "build:hello"}
    print(f"{project.arch.name}: empty project to first build in "
          f"{project.first_seconds:.1f} s")
    result = project.result("hello")
    assert result["exit_code"] == 0, (project.artifacts / "builds/hello/log").read_text()
    out = project.artifacts / "builds" / "hello" / "outputs"
    assert (out / "arch.txt").read_text().strip() == project.arch.uname
    ran = (out / "ran.txt").read_text()
    assert ran.startswith("ran from the share\n") and "QEMU Guest Agent" in ran
    log = (project.artifacts / "builds" / "hello" / "log").read_text()
    assert log.startswith("src /mnt/src 9p ro,")
    meta = json.loads((project.artifacts / "snapshot" / "meta.json").read_text())
    assert meta["arch"] == project.arch.name and meta["accelerator"] == "tcg"
    assert meta["qemu"] == qemu.version(project.arch.qemu)
    assert meta["machine"].startswith(project.arch.machine)
    assert result["timings"]["revive"] < 30
    console = (project.artifacts / "logs" / "build-hello-serial.log").read_text(errors="replace")
    assert "Linux version" not in console          # revived, not booted


def test_a_snapshot_another_qemu_made_is_refused_in_one_line(project):
    meta_path = project.artifacts / "snapshot" / "meta.json"
    saved = meta_path.read_text()
    meta = json.loads(saved)
    meta["qemu"] = "6.2.0"
    meta_path.write_text(json.dumps(meta))
    try:
        proc = project.doit("build:hello", check=False)
    finally:
        meta_path.write_text(saved)
    assert proc.returncode != 0
    line = next(l for l in proc.stdout.splitlines() if "QEMU 6.2.0" in l)
    assert (f"the snapshot was made with QEMU 6.2.0 and this {project.arch.qemu} is "
            f"{qemu.version(project.arch.qemu)}; run `doit snapshot`") in line
    assert "Traceback" not in proc.stdout + proc.stderr
    assert qemu_processes(str(project.root)) == []


def test_a_host_without_the_emulator_is_told_which_package_has_it(project, tmp_path,
                                                                   monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))      # nothing on it
    proc = project.doit("build:hello", check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    line = next(l for l in out.splitlines() if "not found" in l)
    assert f"{project.arch.qemu} not found" in line and project.arch.qemu_package in line
    assert "Traceback" not in out


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A real `dask scheduler` and two workers on loopback, shared by every
    architecture's project: "any", which offers every emulator installed
    here, and "x86", whose PATH has qemu-system-x86_64 alone, so that it
    offers amd64 snapshots only."""
    root = tmp_path_factory.mktemp("cl")
    certs.make(root / "certs")
    x86 = root / "x86-only"
    x86.mkdir()
    for tool in ("qemu-system-x86_64", "qemu-img"):
        (x86 / tool).symlink_to(shutil.which(tool))
    with running(Cluster(root)) as c:
        c.start_scheduler()
        c.start_worker("any", 1)
        c.start_worker("x86", 1, env=dict(os.environ, PATH=str(x86)))
        c.wait_workers(["any", "x86"])
        yield c


@contextlib.contextmanager
def on_the_cluster(project, cluster):
    """The project's builds go to ``cluster`` inside the block (``[cluster]``
    in its config.toml, REVIVE_SCHEDULER), to this host again after it."""
    before = configs.edit(project.config, {"cluster": {
        "scheduler": "tls://127.0.0.1:9", "store": f"file://{cluster.root / 'store'}",
        "certs": str(cluster.root / "certs"), "wait_for_worker": "8s"}})
    try:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("REVIVE_SCHEDULER", cluster.address)
            yield
    finally:
        configs.write(project.root, before)


def fetched(cluster, label: str) -> list:
    """What the worker ``label`` fetched from the store into its cache."""
    objects = cluster.root / label / "objects"
    return sorted(objects.iterdir()) if objects.exists() else []


def wanted(project) -> str:
    return f"qemu-{qemu.version(project.arch.qemu)}-tcg-{project.arch.uname}"


def test_the_build_lands_on_the_worker_that_can_revive_its_architecture(project, cluster):
    if "any" not in cluster.procs:          # the previous architecture's test below stopped it
        cluster.names.pop("any", None)
        cluster.start_worker("any", 1)
        cluster.wait_workers(["any", "x86"])
    with on_the_cluster(project, cluster):
        assert project.doit("forget", "build:hello").returncode == 0
        proc = project.doit("build:hello")
    assert proc.executed == {"build:hello"}          # the snapshot made here is the one sent
    # What each worker said it offers, as it started.
    assert f'"{wanted(project)}": 1' in (cluster.root / "any.log").read_text()
    assert wanted(project) not in (cluster.root / "x86.log").read_text()
    name = cluster.names["any"]
    assert f"build hello: placed on {name} (tls://" in proc.stdout
    remote = project.result("hello")
    assert remote["exit_code"] == 0 and remote["worker"]["name"] == name
    out = project.artifacts / "builds" / "hello" / "outputs"
    remote_out = {p.name: p.read_bytes() for p in out.iterdir()}
    assert remote_out["arch.txt"].decode().strip() == project.arch.uname
    assert (project.artifacts / "builds" / "hello" / "log").read_text().startswith(
        "src /mnt/src 9p ro,")
    # The worker fetched the snapshot into its own cache; the other never did.
    assert fetched(cluster, "any") and fetched(cluster, "x86") == []

    # The same build on this host: the same outputs and result, but where it ran.
    assert project.doit("forget", "build:hello").returncode == 0
    local = project.doit("build:hello")
    assert "placed on" not in local.stdout
    here = project.result("hello")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == remote_out
    assert set(remote) - set(here) == {"worker"}
    assert {k: remote[k] for k in here if k != "timings"} == \
        {k: here[k] for k in here if k != "timings"}


def test_no_worker_that_can_revive_the_architecture_is_one_line(project, cluster):
    cluster.kill("any", signal.SIGTERM)      # "x86" is left: it offers x86_64 only
    with on_the_cluster(project, cluster):
        assert project.doit("forget", "build:hello").returncode == 0
        start = time.monotonic()
        proc = project.doit("build:hello", check=False, timeout=120)
        took = time.monotonic() - start
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "placed on" not in out, out
    assert (f"revive: build hello: no worker of {cluster.address} offered {wanted(project)}, vm "
            f"within 8 s ([cluster] wait_for_worker); workers offer: {cluster.names['x86']}: "
            f"qemu-{qemu.version()}-tcg-x86_64. Start one") in out, out
    assert 8 <= took < 40 and "Traceback" not in out
    assert fetched(cluster, "x86") == []


def test_the_gdbstub_rearms_the_riscv64_timer_of_a_paused_cpu(tmp_path):
    """QEMU 7.2 does not migrate riscv64's Sstc timer; the revive writes
    stimecmp back through the gdbstub, which arms it, or raises the timer
    interrupt (mip.STIP) when its time has passed: as here, a CPU held at
    reset whose stimecmp is 0."""
    riscv = ARCHES["riscv64"]
    machine = qemu.Qemu(["-M", riscv.machine, "-cpu", riscv.tcg_cpu, "-m", "64M", "-S"],
                        name="gdbstub", logdir=tmp_path, binary=riscv.qemu)

    def mip() -> int:
        text = machine.cmd("human-monitor-command", **{"command-line": "info registers"})
        return int(re.search(r"\bmip\s+([0-9a-f]+)", text).group(1), 16)
    try:
        machine.launch()
        assert not mip() & STIP
        gdbstub.rearm(machine, riscv.timer_csr)
        assert mip() & STIP
        assert machine.status() in ("prelaunch", "paused")     # it did not run
        # The gdbstub and its chardev are gone: a second re-arm sets up anew.
        gdbstub.rearm(machine, riscv.timer_csr)
    finally:
        machine.shutdown(graceful=False)
    assert [a.timer_csr for a in ARCHES.values() if a.timer_csr] == ["stimecmp"]


def test_a_build_that_sleeps_finishes_in_a_revived_copy(project):
    """The revived guest's timer interrupts come (a sleep ends), on riscv64
    because the revive re-arms its timer."""
    if project.arch.name in TIMERS_STOP:
        pytest.skip(TIMERS_STOP[project.arch.name])
    saved = project.config.read_text()
    project.config.write_text(saved + SLEEPS)
    try:
        proc = project.doit("build:sleeps", check=False)
    finally:
        project.config.write_text(saved)
    assert proc.returncode == 0, proc.stdout
    out = project.artifacts / "builds" / "sleeps" / "outputs"
    assert (out / "woke.txt").read_text() == "woke\n"


def test_a_failed_build_keeps_its_copy_and_the_shell_reopens_it(project):
    project.config.write_text(project.config.read_text() + FAILS_KEPT)
    proc = project.doit("build:post-mortem", check=False)
    assert proc.returncode != 0
    kept = sorted((project.artifacts / "kept").glob("post-mortem-*"))
    assert len(kept) == 1, proc.stdout
    term = Terminal(project, "shell:post-mortem", "--kept", kept[0].name)
    try:
        term.expect("leave with exit", timeout=120)
        term.expect(PROMPT, timeout=60)
        assert term.run("cat /tmp/post-mortem.txt").strip() == "left-behind"
        assert term.run("uname -m").strip() == project.arch.uname
        if project.arch.name not in TIMERS_STOP:
            # The guest's timers run: on riscv64 they stopped in a kept
            # copy until its timer was re-armed at revive (qemu.gdbstub).
            assert term.run("sleep 1; echo slept").strip() == "slept"
        term.type("exit\r")
        assert term.wait() == 0
    finally:
        term.kill()
    assert qemu_processes(str(project.root)) == []
    if project.arch.name in TIMERS_STOP:
        pytest.skip(f"all but a sleep in the kept copy passed; {TIMERS_STOP[project.arch.name]}")


def test_the_same_build_over_ssh_with_both_shares_over_smb(project):
    text = project.config.read_text().replace('memory = "256M"',
                                              'memory = "256M"\nchannel = "ssh"')
    for guest in ('guest = "/mnt/src"\n', 'guest = "/mnt/xchg"\n'):
        text = text.replace(guest, guest + 'transport = "smb"\n', 1)
    project.config.write_text(text)
    proc = project.doit("build:hello")
    assert proc.executed == {"snapshot", "build:hello"}
    out = project.artifacts / "builds" / "hello" / "outputs"
    assert (out / "arch.txt").read_text().strip() == project.arch.uname
    assert (out / "ran.txt").read_text().startswith("ran from the share\n")
    assert project.result("hello")["exit_code"] == 0
    log = (project.artifacts / "builds" / "hello" / "log").read_text()
    assert log.startswith("//10.0.2.4/qemu/src /mnt/src cifs ro,")
