"""A root made the foreign way (debootstrap --foreign, then the suite's
-updates and -security swapped in) for the host's own architecture, so its
second stage runs natively in a chroot: every package configures, dpkg
has exactly what the root's records say, and the packages the companions
updated are installed at their new versions. The arm64 and riscv64 roots
are made the same way; their second stage runs under TCG
(test_debian_arch.py). Needs root (chroot) and the host's Debian archive;
no QEMU, about 3 minutes.

    .venv/bin/pytest -n 0 tests/integration/test_foreign_root.py -q
"""

import os
import shutil
import subprocess

import pytest

from revive.guests import debian
from revive.guests.debian import apt, rootfs

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800),
              pytest.mark.skipif(os.geteuid() != 0, reason="the second stage needs chroot"),
              pytest.mark.skipif(not shutil.which("debootstrap", path="/usr/sbin:/usr/bin"),
                                 reason="debootstrap is not installed")]


def test_a_foreign_root_installs_the_updates_its_records_name(tmp_path):
    sources = apt.sources_for(debian.DEFAULT_SUITE, "host")
    if len(sources) < 2:
        pytest.skip("the host's apt sources carry no -updates or -security companion")
    packages = sorted(set(debian.REQUIRED) | set(debian.DEFAULT_PACKAGES))
    root = rootfs.build(debian.DEFAULT_SUITE, sources, packages, tmp_path / "cache",
                        tmp_path / "root.log", "amd64", rootfs.FOREIGN)
    target = tmp_path / "target"
    target.mkdir()
    subprocess.run(["tar", "-xzf", root.tarball, "-C", target], check=True, timeout=600)
    stage = subprocess.run(["chroot", target, "/debootstrap/debootstrap", "--second-stage"],
                           capture_output=True, text=True, timeout=1500)
    assert stage.returncode == 0, stage.stdout[-3000:] + stage.stderr[-2000:]
    installed = subprocess.run(
        ["chroot", target, "dpkg-query", "-W", "-f", "${Package}\t${Version}\n"],
        capture_output=True, text=True, check=True, timeout=120).stdout
    assert sorted(installed.splitlines()) == sorted(f"{n}\t{v}" for n, v in
                                                    root.info["installed"])
    assert subprocess.run(["chroot", target, "dpkg", "--audit"], capture_output=True,
                          text=True, timeout=120).stdout == ""
    versions = dict(line.split("\t") for line in installed.splitlines())
    # What a -security or -updates release replaced, at its new version (on
    # a bookworm mirror of 2026-12-03: 19 packages, libssl3 among them).
    for name, (_, new) in root.info["updated"].items():
        assert versions[name] == new
    read = {f.get("Codename") for f in root.info["releases"].values()}
    assert {s.suite for s in sources} <= read
