"""Output collection on real files: what a hostile guest can leave in the
exchange folder never comes back as privilege, a link or a special file."""

import os
import socket
import stat

import pytest

from revive.core.collect import Limits, check_output_name, collect_outputs
from revive.core.errors import UserError


@pytest.fixture
def xchg(tmp_path):
    x = tmp_path / "xchg"
    x.mkdir()
    return x


def test_setuid_setgid_sticky_and_group_write_are_dropped(xchg, tmp_path):
    (xchg / "suid").write_bytes(b"\x7fELF")
    os.chmod(xchg / "suid", 0o6777)
    (xchg / "d").mkdir()
    os.chmod(xchg / "d", 0o1777)
    got = collect_outputs(xchg, ["suid", "d"], tmp_path / "out")
    assert got.collected == ["suid", "d"] and not got.refused
    assert stat.S_IMODE(os.stat(tmp_path / "out" / "suid").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(tmp_path / "out" / "d").st_mode) == 0o755


def test_mapped_xattr_mode_is_honoured_but_masked(xchg, tmp_path):
    f = xchg / "prog"
    f.write_text("x")
    os.chmod(f, 0o600)
    try:
        os.setxattr(f, "user.virtfs.mode", (0o104755).to_bytes(4, "little"))
    except OSError:
        pytest.skip("no user xattrs on this filesystem")
    collect_outputs(xchg, ["prog"], tmp_path / "out")
    assert stat.S_IMODE(os.stat(tmp_path / "out" / "prog").st_mode) == 0o755


def test_owner_can_always_read_files_and_traverse_folders(xchg, tmp_path):
    (xchg / "d").mkdir()
    (xchg / "d" / "f").write_text("x")
    os.chmod(xchg / "d" / "f", 0o000)
    os.chmod(xchg / "d", 0o000)
    collect_outputs(xchg, ["d"], tmp_path / "out")
    assert stat.S_IMODE(os.stat(tmp_path / "out" / "d").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(tmp_path / "out" / "d" / "f").st_mode) == 0o600
    os.chmod(xchg / "d", 0o700)


def test_links_and_special_files_are_refused(xchg, tmp_path):
    os.symlink("/etc/shadow", xchg / "shadow")
    os.mkfifo(xchg / "fifo")
    os.mknod(xchg / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(xchg / "sock"))
    (xchg / "tree").mkdir()
    (xchg / "tree" / "ok").write_text("ok")
    os.symlink("/etc", xchg / "tree" / "etc")
    os.mkfifo(xchg / "tree" / "fifo")
    got = collect_outputs(xchg, ["shadow", "fifo", "null", "sock", "tree"], tmp_path / "out")
    sock.close()
    assert got.collected == ["tree"]
    refused = "\n".join(got.refused)
    for name in ("shadow", "fifo", "null", "sock", "tree/etc", "tree/fifo"):
        assert f"{name}: " in refused
    out = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*"))
    assert out == ["tree", "tree/ok"]


def test_a_symlinked_parent_folder_does_not_lead_out(xchg, tmp_path):
    os.symlink("/etc", xchg / "a")
    got = collect_outputs(xchg, ["a/passwd", "a/../a/hostname"], tmp_path / "out")
    assert got.collected == []
    assert got.refused[0].startswith("a/passwd: a is not a folder")
    assert not (tmp_path / "out" / "a").exists()


def test_hard_links_are_copied_as_bytes(xchg, tmp_path):
    (xchg / "one").write_text("data")
    os.link(xchg / "one", xchg / "two")
    collect_outputs(xchg, ["one", "two"], tmp_path / "out")
    assert os.stat(tmp_path / "out" / "two").st_nlink == 1
    (tmp_path / "out" / "two").write_text("changed")
    assert (xchg / "one").read_text() == "data"


def test_missing_outputs_are_reported(xchg, tmp_path):
    got = collect_outputs(xchg, ["nope", "d/nope"], tmp_path / "out")
    assert got.missing == ["nope", "d/nope"]


@pytest.mark.parametrize("name", ["", ".", "./", "a/..", "/etc", "../x", "a/../../x"])
def test_names_that_leave_or_are_the_exchange_folder_are_refused(name):
    assert check_output_name(name)


def test_a_sparse_output_comes_back_sparse(xchg, tmp_path):
    """A guest's `truncate -s 2G` took 2 GiB of the host's disk (and 17 s)."""
    sparse = xchg / "sparse"
    with open(sparse, "wb") as fh:
        fh.write(b"head")
        fh.seek(1 << 30)
        fh.write(b"middle")
        fh.truncate(2 << 30)
    collect_outputs(xchg, ["sparse"], tmp_path / "out")
    copy = tmp_path / "out" / "sparse"
    assert copy.stat().st_size == 2 << 30
    assert copy.stat().st_blocks * 512 < (1 << 20)       # holes stayed holes
    with open(copy, "rb") as fh:
        assert fh.read(4) == b"head"
        fh.seek(1 << 30)
        assert fh.read(6) == b"middle"
        fh.seek((1 << 30) - 4)
        assert fh.read(4) == b"\0" * 4


def test_outputs_over_the_build_cap_are_one_line_naming_them(xchg, tmp_path):
    (xchg / "dense").write_bytes(os.urandom(3 << 20))
    (xchg / "small").write_bytes(b"x")
    with pytest.raises(UserError) as err:
        collect_outputs(xchg, ["small", "dense"], tmp_path / "out",
                        Limits(max_size=2 << 20, setting="[builds.b]"))
    message = str(err.value)
    assert "dense 3.0 MB" in message and "[builds.b] max_output_size = 2.0 MB" in message
    assert "\n" not in message
    assert not (tmp_path / "out" / "dense").exists()


def test_outputs_must_leave_keep_free_on_the_host(xchg, tmp_path):
    (xchg / "out.bin").write_bytes(b"x" * 4096)
    vfs = os.statvfs(tmp_path)
    free = vfs.f_bavail * vfs.f_frsize
    with pytest.raises(UserError) as err:
        collect_outputs(xchg, ["out.bin"], tmp_path / "out",
                        Limits(keep_free=free, setting="[builds.b]"))
    message = str(err.value)
    assert message.startswith("no space left for the outputs: they take 4.0 KB")
    assert "([builds.b] keep_free) on the filesystem at" in message
    assert "\n" not in message


def test_a_mapped_xattr_symlink_or_device_is_refused(xchg, tmp_path):
    """Over 9p mapped-xattr the guest's symlink is a plain host file holding
    the target, its type in the xattr."""
    (xchg / "link").write_text("/etc/shadow")
    (xchg / "dev").write_text("")
    try:
        os.setxattr(xchg / "link", "user.virtfs.mode", (stat.S_IFLNK | 0o777).to_bytes(4, "little"))
        os.setxattr(xchg / "dev", "user.virtfs.mode", (stat.S_IFCHR | 0o666).to_bytes(4, "little"))
    except OSError:
        pytest.skip("no user xattrs on this filesystem")
    got = collect_outputs(xchg, ["link", "dev"], tmp_path / "out")
    assert got.collected == []
    assert got.refused[0].startswith("link: a symbolic link")
    assert got.refused[1].startswith("dev: a device node")
