"""Debris of a killed doit is swept; hashes are remembered by stamp and
re-checked when a file changes, also behind a restored mtime."""

import json
import os
import subprocess
import sys
import tempfile

from tasks.common import interrupted_line
from revive.core import interrupts
from revive.core.files import matches_sha256, sha256_file, sweep_stale


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_sweep_removes_names_of_dead_and_foreign_processes(tmp_path, monkeypatch):
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))   # not the machine's
    a = tmp_path / "artifacts"
    for d in ("builds", "work", "snapshot", "cache", "media", "overlays"):
        (a / d).mkdir(parents=True)
    dead, foreign = dead_pid(), os.getppid()
    debris = [a / f".snapshot.tmp-{dead}", a / "builds" / f".hello.tmp-{foreign}",
              a / "overlays" / f".overlay-0123456789abcdef.qcow2.tmp-{dead}",
              a / "builds" / f".hello.old-{dead}", a / "work" / f"build-hello-{dead}",
              a / "snapshot" / f".verified.{dead}", a / "media" / f".install.iso.tmp-{dead}",
              a / "work" / "snapshot"]
    for path in debris:
        path.mkdir()
        (path / "disk.qcow2").write_bytes(b"x" * 100)
    keep = [a / "builds" / "hello", a / "cache" / f".x.tmp-{dead}", a / "base.qcow2",
            a / ".base.verified", a / "builds" / f"build-hello-{dead}"]
    for path in keep:
        path.mkdir()
    # A live process holding the project's lock is a running doit: its names stay.
    (a / ".lock").touch()
    holder = subprocess.Popen([sys.executable, "-c", "import sys,time; f=open(sys.argv[1]); "
                               "print(1, flush=True); time.sleep(30)", str(a / ".lock")],
                              stdout=subprocess.PIPE)
    try:
        holder.stdout.readline()
        live = a / "work" / f"build-other-{holder.pid}"
        live.mkdir()
        removed = sweep_stale(a)
    finally:
        holder.kill()
        holder.wait()
    assert sorted(removed) == sorted(debris)
    assert not any(p.exists() for p in debris)
    assert all(p.exists() for p in keep) and live.exists()


def test_qemu_temporary_folders_of_dead_processes_are_swept(tmp_path, monkeypatch):
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    dead = dead_pid()
    gone = temp / f"revive-qemu-{dead}-abcd1234"
    (gone / "qemu-smb.XYZ").mkdir(parents=True)
    (gone / "qemu-smb.XYZ" / "smb.conf").write_text("x")
    alive = [temp / f"revive-qemu-{os.getpid()}-a", temp / f"revive-qemu-{os.getppid()}-b",
             temp / f"other-{dead}-c"]
    for path in alive:
        path.mkdir()
    (tmp_path / "artifacts").mkdir()
    assert sweep_stale(tmp_path / "artifacts") == [gone]
    assert not gone.exists() and all(p.exists() for p in alive)


def test_hashes_are_remembered_by_stamp_and_rechecked_after_any_write(tmp_path):
    f = tmp_path / "state"
    f.write_bytes(b"a" * 4096)
    record = tmp_path / ".verified"
    good = sha256_file(f)
    assert matches_sha256(f, good, record)
    assert json.loads(record.read_text())["state"][0] == good
    # Remembered: the second check only compares the stamp.
    assert matches_sha256(f, good, record)
    st = f.stat()
    with open(f, "r+b") as fh:
        fh.seek(100)
        fh.write(b"b")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))     # damage behind the mtime
    assert f.stat().st_mtime_ns == st.st_mtime_ns
    assert not matches_sha256(f, good, record)
    assert not matches_sha256(tmp_path / "missing", good, record)


def test_an_interrupt_is_one_line_naming_the_phase_and_the_kept_log():
    err = interrupts.Interrupted("SIGTERM")
    err.phase, err.log = "command", "/p/artifacts/logs/build-x.log"
    line = interrupted_line("build:x", err)
    assert "\n" not in line
    assert line.startswith("revive: build:x interrupted (SIGTERM) during command;")
    assert line.endswith("partial log kept: /p/artifacts/logs/build-x.log")
    # A cleanup that failed because of the interrupt still names it.
    try:
        try:
            raise err
        except KeyboardInterrupt:
            raise EOFError()
    except EOFError as later:
        assert interrupts.find(later) is err
    assert interrupts.find(ValueError()) is None
