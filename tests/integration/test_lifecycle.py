"""Faults of the doit process itself, under real QEMU: Ctrl-C, SIGTERM and
SIGKILL during `doit -n 2 build`, debris of a killed run, damaged snapshot
and base images. Each fault ends in one line per task, no traceback, no QEMU
or doit worker left, no temporary debris after the next run, no target doit
would trust, logs kept, and a plain rerun succeeds.

Runs on the session's project (conftest `built`) and puts back what it changes.
"""

import json
import os
import signal
import statistics
import subprocess
import time
from pathlib import Path

import pytest

from revive.core.files import stamp

from .conftest import interrupt, qemu_processes

pytestmark = pytest.mark.integration

SLOW_BUILDS = """
[builds.slow1]
command = "sh /mnt/src/slow.sh"
shares = { src = "slow" }
timeout = "2m"

[builds.slow2]
command = "sh /mnt/src/slow.sh"
shares = { src = "slow" }
timeout = "2m"
"""
SLOW = "echo started; sleep 30; echo done\n"
QUICK = "echo started; echo done\n"


@pytest.fixture
def slow(built):
    """Two builds whose command sleeps 30 s; afterwards the config is put
    back and their results removed."""
    original = built.config.read_text()
    (built.root / "slow").mkdir(exist_ok=True)
    (built.root / "slow" / "slow.sh").write_text(SLOW)
    built.config.write_text(original + SLOW_BUILDS)
    yield built
    built.config.write_text(original)
    for name in ("slow1", "slow2"):
        subprocess.run(["rm", "-rf", str(built.artifacts / "builds" / name)], check=True)


def doit_processes(root) -> "list[str]":
    """doit processes (the main one and its -n workers) of this project."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        line = b" ".join(args).decode(errors="replace")
        if "doit" in line and str(root) in line and "qemu-system" not in line:
            found.append(line)
    return found


def debris(artifacts: Path) -> "list[Path]":
    return sorted([*artifacts.glob(".*.tmp-*"), *artifacts.glob("builds/.*.tmp-*"),
                   *artifacts.glob("builds/.*.old-*"), *artifacts.glob("work/build-*"),
                   *artifacts.glob("snapshot/.verified.*")])


def gone(probe, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while probe() and time.monotonic() < deadline:
        time.sleep(0.1)
    return not probe()


def start_slow_builds(project) -> subprocess.Popen:
    """`doit -n 2 build:slow1 build:slow2`, returned once both commands run."""
    proc = project.spawn("-n", "2", "build:slow1", "build:slow2")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        # The log is opened as the command starts (and written out on close).
        if len(list(project.artifacts.glob("builds/.slow*.tmp-*/log"))) == 2:
            time.sleep(3)
            return proc
        if proc.poll() is not None:
            raise AssertionError(f"doit ended early:\n{proc.communicate()}")
        time.sleep(0.1)
    interrupt(proc, signal.SIGKILL)
    raise AssertionError("the slow builds never started their commands")


def revive_lines(text: str) -> "list[str]":
    return [l for l in text.splitlines() if l.startswith("revive: build:slow")]


def assert_clean_after(project, proc_out: str) -> None:
    assert "Traceback" not in proc_out
    assert gone(lambda: qemu_processes(str(project.root))), qemu_processes(str(project.root))
    assert gone(lambda: doit_processes(project.root)), doit_processes(project.root)
    for name in ("slow1", "slow2"):         # no target doit would trust
        assert not (project.artifacts / "builds" / name / "result.json").exists()


def rerun_quick(project) -> None:
    """The fault removed (a quick command), a plain rerun succeeds and
    leaves no debris."""
    (project.root / "slow" / "slow.sh").write_text(QUICK)
    proc = project.doit("-n", "2", "build")
    assert {"build:slow1", "build:slow2"} <= proc.executed
    assert project.result("slow1")["exit_code"] == 0
    assert debris(project.artifacts) == []


@pytest.mark.parametrize("sig, to_group", [(signal.SIGINT, True), (signal.SIGTERM, False)],
                         ids=["ctrl-c", "sigterm"])
def test_interrupting_parallel_builds_is_one_line_per_build(slow, sig, to_group):
    proc = start_slow_builds(slow)
    start = time.monotonic()
    if to_group:
        interrupt(proc, sig)                # a terminal's Ctrl-C: the whole group
    else:
        proc.send_signal(sig)               # `kill PID`: doit alone
    out, err = proc.communicate(timeout=60)
    assert time.monotonic() - start < 20    # not the commands' 30 s
    assert proc.returncode != 0
    lines = revive_lines(out + err)
    assert len(lines) == 2, out + err
    for name in ("slow1", "slow2"):
        log = slow.artifacts / "logs" / f"build-{name}.log"
        line = next(l for l in lines if l.startswith(f"revive: build:{name} "))
        # A Ctrl-C reaches every process of the group, and doit passes
        # SIGTERM on to its workers: a worker may see either one first.
        seen = {sig.name, "SIGTERM"}
        assert any(f"interrupted ({s}) during command" in line for s in seen), line
        assert line.endswith(f"partial log kept: {log}")
        assert log.read_text() == "started\n"
    assert_clean_after(slow, out + err)
    assert debris(slow.artifacts) == []     # cleaned up by the run itself
    rerun_quick(slow)
    # A successful build drops its stale partial log.
    assert not (slow.artifacts / "logs" / "build-slow1.log").exists()


def test_sigterm_ends_doit_whose_output_pipe_is_gone(slow):
    """`doit -n 2 build | head` whose reader went away, then `kill PID`:
    every write of doit's fails; it still stops, its workers and QEMU too."""
    proc = start_slow_builds(slow)
    proc.stdout.close()
    proc.stderr.close()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            interrupt(proc, signal.SIGKILL)
            proc.wait()
            raise AssertionError("doit ignored SIGTERM with its output pipe closed")
    assert proc.returncode != 0
    assert_clean_after(slow, "")
    rerun_quick(slow)


def test_killing_doit_outright_takes_its_workers_and_qemu_down(slow):
    proc = start_slow_builds(slow)
    assert len(doit_processes(slow.root)) >= 3      # doit and its two workers
    proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate(timeout=60)
    # Each worker dies with doit (PR_SET_PDEATHSIG), its QEMU with it.
    assert_clean_after(slow, out + err)
    for line in revive_lines(err):
        assert "interrupted (doit was killed) during command" in line
    # The project lock went with them: the next doit runs at once.
    rerun_quick(slow)


def test_debris_of_a_killed_run_is_swept_by_the_next(built):
    """What SIGKILL of a single-process doit leaves (its QEMU still dies:
    test_pipeline checks that), with a dead PID and with a live process that
    is not a doit of this project (PIDs are reused)."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    a = built.artifacts
    planted = [a / f".snapshot.tmp-{dead.pid}", a / "builds" / f".hello.tmp-{os.getpid()}",
               a / "builds" / f".hello.old-{dead.pid}", a / "work" / f"build-hello-{dead.pid}"]
    for path in planted:
        path.mkdir(parents=True)
        (path / "disk.qcow2").write_bytes(b"\0" * 1024)
    proc = built.doit("build")
    assert proc.executed == set()
    assert not any(p.exists() for p in planted)
    assert debris(a) == []


def damage(path: Path, keep_mtime: bool, at: "int | None" = None) -> None:
    """Overwrite 4 KiB of ``path`` (in its middle unless ``at`` is given)."""
    st = path.stat()
    path.chmod(0o644)
    with open(path, "r+b") as fh:
        fh.seek(st.st_size // 2 if at is None else at)
        fh.write(b"\xff" * 4096)
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    path.chmod(st.st_mode & 0o777)


def test_a_damaged_snapshot_makes_the_snapshot_stage_out_of_date(built):
    state = built.artifacts / "snapshot" / "state"
    damage(state, keep_mtime=True)
    info = built.doit("info", "snapshot", check=False)
    assert f"{state}: does not match its sha256 in meta.json" in info.stdout
    proc = built.doit("build")
    assert proc.executed == {"snapshot", "build:hello", "build:other"}
    assert built.doit("build").executed == set()


def test_a_state_damaged_beneath_its_stamp_names_qemus_reason(built):
    """Damage no stamp shows (bit rot; stood in for by rewriting the
    remembered stamp): QEMU refuses the state, and the line says why
    instead of "QMP query-status failed: Disconnected"."""
    folder = built.artifacts / "snapshot"
    damage(folder / "state", keep_mtime=True, at=0)      # the stream's header
    record = json.loads((folder / ".verified").read_text())
    record["state"] = [record["state"][0], *stamp(folder / "state")]
    (folder / ".verified").write_text(json.dumps(record))
    data = built.root / "other" / "data.txt"
    original = data.read_text()
    data.write_text("a build that must run\n")
    proc = built.doit("build:other", check=False)
    data.write_text(original)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out and "Disconnected" not in out
    line = next(l for l in out.splitlines() if l.startswith("revive: reviving the snapshot"))
    assert "load of migration failed" in line
    assert f"{folder / 'state'}: does not match its sha256 in meta.json" in line
    assert "run `doit snapshot`" in line
    assert gone(lambda: qemu_processes(str(built.root)))
    # The advice works: the next run re-hashes, finds the damage, re-snapshots.
    proc = built.doit("build")
    assert proc.executed == {"snapshot", "build:hello", "build:other"}
    assert built.result("hello")["exit_code"] == 0


def test_a_modified_base_image_makes_the_install_stage_out_of_date(built):
    base = built.artifacts / "base.qcow2"
    damage(base, keep_mtime=True)
    info = built.doit("info", "install", check=False)
    assert f"{base}: does not match its sha256 in base.json" in info.stdout
    proc = built.doit("build")
    assert proc.executed == {"install", "snapshot", "build:hello", "build:other"}
    assert built.doit("build").executed == set()


def process_tree(root_pid: int) -> "dict[int, str]":
    """Every process descended from ``root_pid`` (itself included): pid → comm."""
    parent, comm = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name, rest = text.split(" (", 1)[1].rsplit(")", 1)
        parent[int(stat.parent.name)], comm[int(stat.parent.name)] = int(rest.split()[1]), name
    tree, grew = {root_pid}, True
    while grew:
        more = {p for p, pp in parent.items() if pp in tree} - tree
        grew = bool(more)
        tree |= more
    return {p: comm.get(p, "?") for p in tree}


def open_files(pids) -> int:
    count = 0
    for pid in pids:
        try:
            count += len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            pass
    return count


def disk_usage(folder: Path) -> int:
    """Bytes allocated under ``folder``, symlinks (the shared cache) not followed."""
    total = 0
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                pass
    return total


SOAK_BUILDS = int(os.environ.get("REVIVE_SOAK_BUILDS", "20"))


@pytest.mark.soak
def test_soak_many_builds_under_n2_leak_nothing(built, monkeypatch):
    """SOAK_BUILDS builds (20 by default; REVIVE_SOAK_BUILDS=200 for the long
    soak) under `doit -n 2`, twice: open files of doit and its workers and
    their process count stay flat during the run, and disk under artifacts/
    and the temporary folder is flat from one run to the next."""
    original = built.config.read_text()
    (built.root / "soak").mkdir(exist_ok=True)
    (built.root / "soak" / "round").write_text("1\n")
    tables = "".join(f"""
[builds.soak{i}]
command = "cat /mnt/src/round > /mnt/xchg/out.txt && echo build {i}"
shares = {{ src = "soak" }}
outputs = ["out.txt"]
timeout = "2m"
""" for i in range(SOAK_BUILDS))
    tmp = built.root / "tmp"
    tmp.mkdir(exist_ok=True)
    monkeypatch.setenv("TMPDIR", str(tmp))
    built.config.write_text(original + tables)
    try:
        samples, disk = [], []
        for round_ in (1, 2):
            (built.root / "soak" / "round").write_text(f"{round_}\n")
            proc = built.spawn("-n", "2", "build")
            while proc.poll() is None:
                tree = process_tree(proc.pid)
                doit = [p for p, name in tree.items() if name.startswith("python")]
                samples.append((round_, len(tree), open_files(doit)))
                time.sleep(0.2)
            out, err = proc.communicate()
            assert proc.returncode == 0, out + err
            assert out.count("revive: build soak") == SOAK_BUILDS
            disk.append((disk_usage(built.artifacts), disk_usage(tmp)))
        for i in (0, SOAK_BUILDS - 1):
            assert (built.artifacts / "builds" / f"soak{i}" / "outputs" / "out.txt").read_text() == "2\n"
        # Once doit and both workers run; a quarter of those samples early
        # and late in the first run.
        first = [s for s in samples if s[0] == 1 and s[1] >= 3]
        quarter = max(1, len(first) // 4)
        early, late = first[:quarter], first[-quarter:]
        # doit, 2 workers, and per worker a QEMU with its short-lived helpers
        # (qemu-img, QEMU's `sh -c cat` for the state): a leak grows with builds.
        assert max(s[1] for s in samples) <= 3 + 2 * 4, max(samples, key=lambda s: s[1])
        # A leak raises the usual count (the median); a sample may catch both
        # workers at their busiest moment at once (a CI run saw 70 once
        # among samples of 45–47), so single peaks are not compared.
        files_early = statistics.median(s[2] for s in early)
        files_late = statistics.median(s[2] for s in late)
        assert files_late <= files_early + 4, (early, late)
        print(f"soak: {SOAK_BUILDS} builds x2, processes max {max(s[1] for s in samples)}, "
              f"open files early {files_early} late {files_late}, "
              f"artifacts {disk[0][0]} -> {disk[1][0]} bytes, tmp {disk[0][1]} -> {disk[1][1]}")
        # A second identical run adds at most log lines, never overlays or folders.
        assert disk[1][0] - disk[0][0] < 1 << 20, disk
        assert disk[1][1] == 0 and not list(tmp.iterdir())
        assert debris(built.artifacts) == []
        assert gone(lambda: qemu_processes(str(built.root)))
    finally:
        built.config.write_text(original)
        subprocess.run(["sh", "-c", f"rm -rf {built.artifacts}/builds/soak*"], check=True)
