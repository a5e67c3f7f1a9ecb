"""The Debian example's sources:hello task for real: apt-get source under a
private apt configuration (the network to the apt archive, no QEMU), the
.dsc's sha256 recorded in revive.lock, and a later fetch that differs from
the lock refused in one line."""

import json

import pytest

from .conftest import REPO, Project

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


def test_the_debian_source_is_fetched_locked_and_a_changed_dsc_refused(tmp_path):
    example = (REPO / "examples" / "debian.toml").read_text()
    (tmp_path / "config.toml").write_text(example)
    project = Project(tmp_path)
    proc = project.doit("sources:hello")
    assert proc.executed == {"sources:hello"}
    folder = tmp_path / "artifacts" / "sources" / "hello"
    dsc = sorted(folder.glob("hello_*.dsc"))
    assert len(dsc) == 1 and list(folder.glob("hello_*.orig.tar.gz"))
    locked = json.loads((tmp_path / "revive.lock").read_text())["sources"]["hello"]
    record = json.loads((tmp_path / "artifacts" / "sources" / "hello.json").read_text())
    assert locked["dsc"] == dsc[0].name == record["dsc"]
    assert locked["dsc_sha256"] == record["files"][dsc[0].name]
    # The build reads the fetched folder and depends on the manifest.
    info = project.doit("info", "build:hello", check=False).stdout
    assert str(tmp_path / "artifacts" / "sources" / "hello.json") in info

    # Pretend the archive's .dsc changed since the lock was written.
    lock = tmp_path / "revive.lock"
    lock.write_text(lock.read_text().replace(locked["dsc_sha256"], "0" * 64))
    project.doit("forget", "sources:hello")
    proc = project.doit("sources:hello", check=False)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stdout + proc.stderr
    refusal = [line for line in proc.stdout.splitlines() if line.startswith("revive:")]
    assert refusal == [
        f"revive: revive.lock: [sources.hello] fetched dsc {dsc[0].name}, dsc_sha256 "
        f"{locked['dsc_sha256']}, but revive.lock records dsc {dsc[0].name}, dsc_sha256 "
        f"{'0' * 64}; if the new version is wanted, remove \"hello\" from {lock}"]
