"""The fault matrix on real QEMU (tiny guest): a hostile build, a full host
disk under the VM, under the outputs and under the media, a QEMU that dies
mid-build, and what every revived copy must get (fresh randomness, the
host's time).

Every fault ends in one line without a traceback, leaves no QEMU running,
keeps its logs, leaves no target doit trusts (the plain rerun runs the task
again) and a plain rerun succeeds once the fault is gone. The project is
this module's own: the tests mount small filesystems into its artifacts/.
"""

import datetime
import fcntl
import json
import os
import re
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from tests import configs

from .conftest import Project, qemu_processes, stale

pytestmark = pytest.mark.integration

CONFIG = configs.tiny("revive-faults", builds={
    "hostile": configs.build(
        "cd /mnt/xchg && cp /bin/busybox suid && chmod 4755 suid &&\n"
        "cp /bin/busybox sgid && chmod 2755 sgid && ln -s /etc/shadow shadow && mkfifo fifo &&\n"
        "mknod null c 1 3 && ln -s /etc etc && mkdir -p tree/sub && echo ok > tree/sub/ok.txt &&\n"
        "chmod 1777 tree && ln -s /etc/shadow tree/shadow && mkfifo tree/fifo && ls -la . tree",
        outputs=["suid", "sgid", "shadow", "fifo", "null", "etc/passwd", "tree"]),
    "fill": configs.build("dd if=/dev/zero of=/root/fill bs=1M count=200 && sync && "
                          "rm /root/fill && echo filled", timeout="10m"),
    "bigout": configs.build("head -c 12000000 /dev/zero > /mnt/xchg/big && echo written",
                            outputs=["big"]),
    "dies": configs.build("echo started; sleep 15; echo done", timeout="10m"),
    "sparse": configs.build("truncate -s 2G /mnt/xchg/sparse && "
                            "head -c 3000000 /dev/urandom > /mnt/xchg/dense",
                            outputs=["sparse", "dense"], max_output_size="2M"),
    "agentkill": configs.build("echo started; kill -9 $(cat /run/qemu-ga.pid); sleep 40; "
                               "echo after"),
    "lost": configs.build("echo started; sleep 20; echo done"),
    "partner": configs.build("echo partner"),
    # What every revived copy must get afresh: randomness, the VM
    # generation ID, the host's time.
    **{f"copy{n}": configs.build(
        "head -c 16 /dev/urandom | od -An -tx1; ls /sys/bus/acpi/drivers/vmgenid | grep "
        "QEMUVGID; adjtimex | grep tv_; : > /mnt/xchg/stamp; stat -c 'host %y' "
        "/mnt/xchg/stamp") for n in (1, 2, 3)},
})


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Project:
    root = tmp_path_factory.mktemp("faults")
    (root / "src").mkdir()
    (root / "src" / "input.txt").write_text("input\n")
    configs.write(root, CONFIG)
    p = Project(root)
    p.doit("snapshot")
    yield p
    for mounted in _mounts_under(root):
        subprocess.run(["umount", "-l", mounted], check=False)


def _mounts_under(root: Path) -> "list[str]":
    return [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
            if line.split()[1].startswith(str(root))]


class small_filesystem:
    """A tmpfs of a few MB mounted over ``folder`` for the duration."""

    def __init__(self, folder: Path, size: str):
        self.folder, self.size = Path(folder), size

    def __enter__(self):
        self.folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.size}", "tmpfs",
                        str(self.folder)], check=True)
        return self.folder

    def __exit__(self, *exc):
        subprocess.run(["umount", str(self.folder)], check=True)


def one_line_failure(proc, *needles: str) -> str:
    """The doit run failed with one revive line holding every needle."""
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert "Traceback" not in text, text
    # The table of builds after doit's lines repeats a failure with no result.
    said = re.split(r"\n *builds *\n", proc.stdout)[0] + "\n" + proc.stderr
    hits = [l for l in said.splitlines() if all(n in l for n in needles)]
    assert len(hits) == 1, text
    return hits[0]


def no_qemu(project: Project) -> None:
    deadline = time.monotonic() + 10
    while qemu_processes(str(project.root)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert qemu_processes(str(project.root)) == []


def test_a_hostile_build_brings_back_no_privilege_link_or_special_file(project):
    proc = project.doit("build:hostile", check=False)
    line = one_line_failure(proc, "build hostile: outputs refused")
    for name in ("shadow", "fifo", "null", "etc/passwd", "tree/shadow", "tree/fifo"):
        assert f"{name}: " in line
    no_qemu(project)
    target = project.artifacts / "builds" / "hostile"
    result = project.result("hostile")
    assert result["exit_code"] == 0 and result["outputs"] == ["suid", "sgid", "tree"]
    assert len(result["refused_outputs"]) == 6
    assert "suid" in (target / "log").read_text()
    outputs = target / "outputs"
    for entry in [outputs, *outputs.rglob("*")]:
        st = os.lstat(entry)
        assert stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode), entry
        assert not st.st_mode & (stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX), entry
        assert st.st_mode & 0o700 == (0o700 if stat.S_ISDIR(st.st_mode) else st.st_mode & 0o700)
    # The guest's modes, masked: busybox stays executable, loses setuid/setgid.
    assert stat.S_IMODE(os.stat(outputs / "suid").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(outputs / "sgid").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(outputs / "tree").st_mode) == 0o755
    assert (outputs / "tree" / "sub" / "ok.txt").read_text() == "ok\n"
    assert sorted(p.name for p in outputs.rglob("*")) == ["ok.txt", "sgid", "sub", "suid", "tree"]

    configs.edit(project.config, {"builds": {"hostile": {"outputs": ["suid", "tree/sub"]}}})
    rerun = project.doit("build:hostile")
    assert "build:hostile" in rerun.executed
    assert project.result("hostile")["outputs"] == ["suid", "tree/sub"]
    # Two runs, one line (qemu-img, or the copy of the overlay it made for
    # an earlier copy): the log is this run's, not a pile.
    img_log = (project.artifacts / "logs" / "build-hostile-qemu-img.log").read_text()
    assert img_log.count("+ ") == 1, img_log


def test_a_full_disk_under_the_vm_ends_the_build_at_once(project):
    work = project.artifacts / "work"
    with small_filesystem(work, "48M"):
        start = time.monotonic()
        proc = project.doit("build:fill", check=False)
        spent = time.monotonic() - start
        no_qemu(project)
    line = one_line_failure(proc, "build fill: the VM paused: no space left on the filesystem at "
                            f"{work}")
    assert "free space there and rerun" in line
    assert spent < 120, f"took {spent:.0f} s: waited for the deadline instead"
    result = project.result("fill")
    assert result["exit_code"] is None and result["failure"].startswith("the VM paused")
    assert result["vm_died"] is False and result["timed_out"] is False
    assert (project.artifacts / "builds" / "fill" / "log").exists()

    rerun = project.doit("build:fill")
    assert "build:fill" in rerun.executed
    assert "filled" in (project.artifacts / "builds" / "fill" / "log").read_text()


def test_outputs_that_do_not_fit_keep_the_log_and_result(project):
    builds = project.artifacts / "builds"
    with small_filesystem(builds, "4M"):
        proc = project.doit("build:bigout", check=False)
        no_qemu(project)
        line = one_line_failure(proc, "build bigout: no space left for the outputs: they "
                                "take 11.4 MB and 256.0 MB must stay free ([builds.bigout] "
                                f"keep_free) on the filesystem at {builds} (")
        result = project.result("bigout")
        assert result["exit_code"] == 0 and result["outputs"] == []
        assert "written" in (builds / "bigout" / "log").read_text()
        assert not (builds / "bigout" / "outputs").exists()
    rerun = project.doit("build:bigout")
    assert "build:bigout" in rerun.executed
    assert (builds / "bigout" / "outputs" / "big").stat().st_size == 12000000


def test_a_sparse_output_comes_back_sparse_within_the_build_cap(project):
    """A guest's `truncate -s 2G` came back dense: 2 GiB of the host's disk."""
    proc = project.doit("build:sparse", check=False)
    line = one_line_failure(proc, "build sparse: the outputs take 2.9 MB on disk (dense 2.9 MB")
    assert "over [builds.sparse] max_output_size = 2.0 MB; raise it" in line
    assert project.result("sparse")["outputs"] == []
    configs.edit(project.config, {"builds": {"sparse": {"max_output_size": "16M",
                                                         "keep_free": "30M"}}})
    builds = project.artifacts / "builds"
    with small_filesystem(builds, "32M"):
        proc = project.doit("build:sparse", check=False)
        no_qemu(project)
    one_line_failure(proc, "build sparse: no space left for the outputs: they take 2.9 MB "
                     "and 30.0 MB must stay free ([builds.sparse] keep_free)")
    configs.edit(project.config, {"builds": {"sparse": {"keep_free": "256M"}}})
    start = time.monotonic()
    project.doit("build:sparse")
    spent = time.monotonic() - start
    copy = builds / "sparse" / "outputs" / "sparse"
    assert copy.stat().st_size == 2 << 30
    assert copy.stat().st_blocks * 512 < (1 << 20), copy.stat()
    assert (builds / "sparse" / "outputs" / "dense").stat().st_size == 3000000
    assert spent < 60, f"{spent:.0f} s"


def test_a_build_whose_qemu_dies_says_so(project):
    proc = project.spawn("build:dies")
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            logs = list((project.artifacts / "builds").glob(".dies.tmp-*/log"))
            if logs and "started" in logs[0].read_text():
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.2)
        else:
            pytest.fail("the build never started")
        victims = [p for p in Path("/proc").glob("[0-9]*")
                   if _is_qemu_of(p, project.root, "build-dies")]
        assert len(victims) == 1
        os.kill(int(victims[0].name), signal.SIGKILL)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    proc.stdout, proc.stderr = out, err
    line = one_line_failure(proc, "build dies: the VM died: QEMU exited (signal SIGKILL)")
    assert "log: " in line
    no_qemu(project)
    result = project.result("dies")
    assert result["vm_died"] is True and result["exit_code"] is None
    assert result["timed_out"] is False
    assert result["failure"].startswith("the VM died: QEMU exited (signal SIGKILL)")
    assert "started" in (project.artifacts / "builds" / "dies" / "log").read_text()
    rerun = project.doit("build:dies")
    assert "build:dies" in rerun.executed
    assert project.result("dies")["exit_code"] == 0


def test_the_agent_killed_in_the_guest_fails_the_build_at_once(project):
    """qemu-ga killed by the build's command: its virtio-serial port closes;
    the build waited 30 s for an answer, then failed without naming itself
    or writing result.json."""
    start = time.monotonic()
    proc = project.doit("build:agentkill", check=False)
    spent = time.monotonic() - start
    log = project.artifacts / "builds" / "agentkill" / "log"
    line = one_line_failure(proc, "build agentkill: the guest agent stopped inside the guest")
    assert f"log: {log}" in line
    assert "exit None" not in proc.stdout + proc.stderr
    assert spent < 25, f"took {spent:.0f} s: waited for an answer that could not come"
    result = project.result("agentkill")
    assert result["exit_code"] is None and result["vm_died"] is False
    assert result["failure"].startswith("the guest agent stopped inside the guest")
    assert log.read_text() == "started\n"
    no_qemu(project)
    assert not list((project.artifacts / "work").glob("build-agentkill-*"))


def test_a_base_image_damaged_beneath_its_stamp_makes_the_install_stale(project):
    """Bit rot in base.qcow2 under an unchanged stamp: qemu-img could not
    open the backing image on every rerun, and doit said install was up to
    date."""
    base = project.artifacts / "base.qcow2"
    record = project.artifacts / ".base.verified"
    original = base.read_bytes()[:512]
    with open(base, "r+b") as fh:
        fh.write(b"\0" * 512)                          # the qcow2 header gone
    # What bit rot leaves: the remembered stamp is the file's own.
    known = json.loads(record.read_text())
    st = base.stat()
    known["base.qcow2"][1:] = [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]
    record.write_text(json.dumps(known))
    try:
        proc = project.doit("build:copy2", check=False)
        line = one_line_failure(proc, f"build copy2: {base}: does not match its sha256")
        assert "the install is out of date now: run `doit build`" in line
        assert "install" in stale(project)
        no_qemu(project)
    finally:
        with open(base, "r+b") as fh:
            fh.write(original)
    assert "install" not in stale(project)


def test_a_killed_doit_worker_fails_its_build_and_doit_ends(project):
    """SIGKILL of a `doit -n 2` worker (what the OOM killer does): doit's
    runner waited for that worker's result forever, holding the lock."""
    proc = project.spawn("-n", "2", "build:lost", "build:partner")
    try:
        worker = _wait_for_build_worker(project, proc, "lost")
        os.kill(worker, signal.SIGKILL)
        killed = time.monotonic()
        try:
            out, err = proc.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            pytest.fail("doit still waits for the killed worker after 90 s")
        spent = time.monotonic() - killed
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    proc.stdout, proc.stderr = out, err
    line = one_line_failure(proc, f"build:lost: its doit worker (PID {worker}) was killed "
                            "(signal SIGKILL")
    assert f"partial log kept: {project.artifacts / 'logs' / 'build-lost.log'}" in line
    assert "started" in (project.artifacts / "logs" / "build-lost.log").read_text()
    assert spent < 60, f"doit took {spent:.0f} s to end after the worker died"
    # The other build finished; the table lists both.
    assert project.result("partner")["exit_code"] == 0
    table = out[out.index("\nbuilds"):]
    assert re.search(r"^ *lost +failed", table, re.M), table
    assert re.search(r"^ *partner +ok", table, re.M), table
    no_qemu(project)
    assert not list((project.artifacts / "work").glob(f"build-lost-{worker}"))
    assert not list((project.artifacts / "builds").glob(".lost.tmp-*"))
    with open(project.artifacts / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)       # free
    rerun = project.doit("build:lost")
    assert "build:lost" in rerun.executed


def _wait_for_build_worker(project, proc, name: str) -> int:
    """The PID of the doit worker running build NAME (its work folder is
    work/build-NAME-PID), once the command printed 'started'."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        logs = list((project.artifacts / "builds").glob(f".{name}.tmp-*/log"))
        work = list((project.artifacts / "work").glob(f"build-{name}-*"))
        if logs and work and "started" in logs[0].read_text():
            return int(work[0].name.rsplit("-", 1)[1])
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    pytest.fail(f"build {name} never started")


def _is_qemu_of(proc_dir: Path, root: Path, name: str) -> bool:
    try:
        args = (proc_dir / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    line = b" ".join(args).decode(errors="replace")
    return bool(args) and b"qemu-system" in args[0] and str(root) in line and name in line


def test_every_copy_gets_fresh_randomness_and_the_host_time(project):
    project.doit("build:copy1", "build:copy2", "build:copy3")
    randoms, offsets = [], []
    for n in (1, 2, 3):
        log = (project.artifacts / "builds" / f"copy{n}" / "log").read_text()
        randoms.append(log.splitlines()[0].strip())
        sec = int(re.search(r"time\.tv_sec:\s*(\d+)", log).group(1))
        usec = int(re.search(r"time\.tv_usec:\s*(\d+)", log).group(1))
        guest = sec + usec / 1e6
        # The stamp file's mtime was set by the host's kernel (9p creates it
        # on the host) right after the guest read its clock.
        stamp = re.search(r"host (\S+ \S+) ([+-]\d{4})", log)
        day, frac = stamp.group(1).split(".")
        host = datetime.datetime.strptime(f"{day} {stamp.group(2)}", "%Y-%m-%d %H:%M:%S %z")
        offsets.append(guest - (host.timestamp() + float("0." + frac)))
    assert all(re.fullmatch(r"([0-9a-f]{2} ){15}[0-9a-f]{2}", r) for r in randoms), randoms
    assert len(set(randoms)) == 3, randoms
    # The kernel's vmgenid driver is bound to QEMU's device in every copy.
    assert all("QEMUVGID" in (project.artifacts / "builds" / f"copy{n}" / "log").read_text()
               for n in (1, 2, 3))
    assert all(abs(o) < 1.0 for o in offsets), offsets
    print(f"guest clock minus host clock: {[round(o, 3) for o in offsets]}")


def test_a_full_disk_under_the_media_is_one_line(project):
    target = project.artifacts / "media"
    project.doit("forget", "iso")
    with small_filesystem(target, "1M"):
        proc = project.doit("iso", check=False)
        assert not (target / "install.iso").exists()
    line = one_line_failure(proc, f"no space left on the filesystem at {target}")
    assert "free space there and rerun" in line
    rerun = project.doit("iso")
    assert "iso" in rerun.executed


def test_a_full_disk_under_the_snapshot_says_no_space_left(project):
    """artifacts/ on a filesystem too small for the RAM file: QEMU died of
    SIGBUS and the line said nothing about the disk."""
    artifacts = project.artifacts
    keep = [p for p in artifacts.iterdir() if p.name not in ("snapshot", "builds", "work")]
    used = sum(f.stat().st_size for p in keep for f in ([p] if p.is_file() else p.rglob("*"))
               if f.is_file())
    saved = artifacts.with_name("artifacts-saved")
    saved.mkdir()
    try:
        subprocess.run(["cp", "-a", *map(str, keep), str(saved)], check=True)
        # The installed project without its snapshot, on a filesystem with
        # 24 MB to spare: less than the RAM the guest touches while it boots.
        with small_filesystem(artifacts, f"{(used >> 20) + 24}M"):
            subprocess.run(["cp", "-a", *[str(saved / p.name) for p in keep], str(artifacts)],
                           check=True)
            proc = project.doit("snapshot", check=False)
            line = one_line_failure(proc, "revive: no space left for the snapshot: it needs "
                                    "320 MB ([vm] memory = 256 MB")
            assert f"on the filesystem at {artifacts} (" in line
            assert "SIGBUS" not in proc.stdout + proc.stderr
            no_qemu(project)
            assert not (artifacts / "snapshot").exists()
            assert not (artifacts / "work" / "snapshot").exists()
            assert not list(artifacts.glob(".snapshot.tmp-*"))
    finally:
        subprocess.run(["rm", "-rf", str(saved)], check=True)
