"""Pinned .deb handling: the cache and its sha256 check (apt-get replaced by
a fake), and unpacking real packages built here with dpkg-deb."""

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from revive.core.errors import UserError
from revive.guests import debs


def dpkg_deb() -> str:
    found = shutil.which("dpkg-deb")
    if found is None:
        pytest.skip("dpkg-deb not found: apt-get install dpkg")
    return found


def build_deb(tmp_path: Path, compression: str = "xz") -> Path:
    root = tmp_path / "pkg"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN/control").write_text(
        "Package: revive-test\nVersion: 1:1.0-1\nArchitecture: all\n"
        "Maintainer: revive <revive@example.invalid>\nDescription: test\n")
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/tool").write_text("#!/bin/sh\necho tool\n")
    (root / "usr/bin/tool").chmod(0o755)
    (root / "usr/bin/alias").symlink_to("tool")
    (root / "usr/share/doc/revive-test").mkdir(parents=True)
    (root / "usr/share/doc/revive-test/README").write_text("odd-sized: 123\n")
    (root / "usr/share/doc/revive-test/README").chmod(0o640)
    deb = tmp_path / f"revive-test-{compression}.deb"
    subprocess.run([dpkg_deb(), f"-Z{compression}", "--root-owner-group",
                    "--build", root, deb], check=True, capture_output=True)
    return deb


@pytest.mark.parametrize("compression", ["xz", "gzip", "zstd", "none"])
def test_extract_keeps_files_modes_and_symlinks(tmp_path, compression):
    if compression == "zstd" and shutil.which("zstd") is None:
        pytest.skip("zstd not found")
    deb = build_deb(tmp_path, compression)
    dest = tmp_path / "out"
    written = debs.extract(deb, dest)
    assert "usr/bin/tool" in written
    assert (dest / "usr/bin/tool").read_text() == "#!/bin/sh\necho tool\n"
    assert (dest / "usr/bin/tool").stat().st_mode & 0o777 == 0o755
    assert os.readlink(dest / "usr/bin/alias") == "tool"
    assert (dest / "usr/share/doc/revive-test/README").stat().st_mode & 0o777 == 0o640


def test_extract_only_the_members_asked_for(tmp_path):
    deb = build_deb(tmp_path)
    dest = tmp_path / "out"
    debs.extract(deb, dest, members=["usr/bin"])
    assert (dest / "usr/bin/tool").exists()
    assert not (dest / "usr/share").exists()


def test_ar_members_match_what_ar_lists(tmp_path):
    deb = build_deb(tmp_path)
    members = debs.ar_members(deb.read_bytes())
    assert list(members) == ["debian-binary", "control.tar.xz", "data.tar.xz"]
    assert members["debian-binary"] == b"2.0\n"


def test_paths_escaping_the_destination_are_refused():
    with pytest.raises(ValueError):
        debs.member_path("./usr/../../etc/passwd")


# --- fetch, with apt-get replaced ----------------------------------------

class FakeApt:
    """Stands in for revive.core.proc.run: "downloads" ``payload`` into cwd."""

    def __init__(self, payload: bytes = b"deb bytes", fail: bool = False):
        self.payload, self.fail, self.calls = payload, fail, []

    def __call__(self, argv, *, cwd=None, log=None, what=None, timeout=600):
        self.calls.append(list(map(str, argv)))
        if self.fail:
            raise UserError("apt-get failed (exit 100): E: Version '9' "
                            "for 'revive-test' was not found")
        Path(cwd, "revive-test_1%3a1.0-1_all.deb").write_bytes(self.payload)
        return ""


def pin_for(payload: bytes) -> debs.Pin:
    return debs.Pin("revive-test", "1:1.0-1", hashlib.sha256(payload).hexdigest(), "all")


def test_fetch_downloads_once_and_then_reuses_the_cache(tmp_path, monkeypatch):
    apt = FakeApt()
    monkeypatch.setattr(debs, "run", apt)
    pin = pin_for(apt.payload)
    first = debs.fetch([pin], tmp_path / "cache", tmp_path / "log")
    second = debs.fetch([pin], tmp_path / "cache", tmp_path / "log")
    assert first == second == {"revive-test": tmp_path / "cache" / pin.filename}
    assert first["revive-test"].read_bytes() == apt.payload
    assert apt.calls == [["apt-get", "download", "revive-test=1:1.0-1"]]
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [pin.filename]


def test_a_wrong_sha256_is_refused_and_nothing_is_cached(tmp_path, monkeypatch):
    monkeypatch.setattr(debs, "run", FakeApt(b"tampered"))
    pin = pin_for(b"what the pin expects")
    with pytest.raises(UserError) as err:
        debs.fetch([pin], tmp_path / "cache", tmp_path / "log", pinned_in="pins.py")
    message = str(err.value)
    assert "revive-test=1:1.0-1" in message and "pins.py" in message
    assert "\n" not in message
    assert list((tmp_path / "cache").iterdir()) == []


def test_a_stale_cached_file_is_downloaded_again(tmp_path, monkeypatch):
    apt = FakeApt()
    monkeypatch.setattr(debs, "run", apt)
    pin = pin_for(apt.payload)
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / pin.filename).write_bytes(b"truncated")
    paths = debs.fetch([pin], tmp_path / "cache", tmp_path / "log")
    assert paths["revive-test"].read_bytes() == apt.payload
    assert len(apt.calls) == 1


def test_a_version_the_archive_lacks_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(debs, "run", FakeApt(fail=True))
    with pytest.raises(UserError) as err:
        debs.fetch([pin_for(b"x")], tmp_path / "cache", tmp_path / "log",
                   pinned_in="revive/guests/tiny/pins.py")
    message = str(err.value)
    assert "revive-test=1:1.0-1" in message
    assert "apt-get update" in message and "revive/guests/tiny/pins.py" in message
    assert list((tmp_path / "cache").iterdir()) == []


def test_arch_specific_pins_ask_apt_for_that_arch():
    pin = debs.Pin("libc6", "2.36-9", "0" * 64, "amd64")
    assert pin.spec == "libc6:amd64=2.36-9"
    assert pin.filename == "libc6_2.36-9_amd64.deb"
