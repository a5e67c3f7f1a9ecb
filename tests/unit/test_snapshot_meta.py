"""Snapshot metadata: argv templates, and refusing snapshots that don't match."""


import pytest
from pathlib import Path

from revive.core.errors import UserError
from revive import qemu
from revive.qemu import saved


def test_fill_replaces_tokens_once():
    out = saved.fill(["file=@disk@,if=none", "-m", "512M", "path=@share.src@"],
                    {"disk": "/a/@port@/d.qcow2", "share.src": "/s", "port": 1})
    assert out == ["file=/a/@port@/d.qcow2,if=none", "-m", "512M", "path=/s"]


def test_fill_refuses_a_missing_value():
    with pytest.raises(UserError, match="@ram@"):
        saved.fill(["mem-path=@ram@"], {})


def test_method_follows_the_capabilities():
    assert saved.choose_method("auto", {"x-ignore-shared", "xbzrle"}) == "file"
    assert saved.choose_method("auto", {"xbzrle"}) == "zstd"
    assert saved.choose_method("zstd", {"x-ignore-shared"}) == "zstd"


def make_snapshot(folder, method="zstd"):
    for name in saved.state_files(method):
        (folder / name).write_bytes(name.encode() * 100)
    saved.write_meta(folder, {"qemu": qemu.version(), "save_method": method})
    return saved.read_meta(folder)


def test_an_intact_snapshot_passes_and_is_not_rehashed(tmp_path, monkeypatch):
    meta = make_snapshot(tmp_path)
    saved.check(tmp_path, meta)
    calls = []
    monkeypatch.setattr(saved, "sha256_file", lambda p: calls.append(p))
    saved.check(tmp_path, meta)
    assert calls == []


def test_a_changed_file_is_refused(tmp_path):
    meta = make_snapshot(tmp_path)
    saved.check(tmp_path, meta)
    (tmp_path / saved.DISK).write_bytes(b"tampered" * 100)
    with pytest.raises(UserError, match="does not match its sha256"):
        saved.check(tmp_path, meta)


def test_another_qemu_version_is_refused(tmp_path):
    meta = make_snapshot(tmp_path)
    meta["qemu"] = "1.0.0"
    with pytest.raises(UserError, match="made with QEMU 1.0.0"):
        saved.check(tmp_path, meta)


def test_missing_meta_says_what_to_run(tmp_path):
    with pytest.raises(UserError, match="doit snapshot"):
        saved.read_meta(tmp_path)


def test_missing_qemu_says_what_to_install(monkeypatch):
    qemu.binary.cache_clear()
    monkeypatch.setenv("PATH", "/nonexistent")
    try:
        with pytest.raises(UserError, match="apt-get install qemu-system-x86"):
            qemu.binary()
    finally:
        qemu.binary.cache_clear()


def test_an_arm64_snapshot_is_checked_against_the_arm64_emulator(tmp_path, monkeypatch):
    meta = make_snapshot(tmp_path)
    meta["arch"] = "arm64"
    asked = []
    monkeypatch.setattr(saved, "version", lambda name=qemu.BINARY: asked.append(name) or "7.2.0")
    meta["qemu"] = "7.2.0"
    saved.check(tmp_path, meta)
    assert asked and set(asked) == {"qemu-system-aarch64"}
    meta["qemu"] = "8.0.0"
    with pytest.raises(UserError, match="made with QEMU 8.0.0 and this qemu-system-aarch64 is 7.2.0"):
        saved.check(tmp_path, meta)


def test_an_unknown_arch_and_a_missing_emulator_are_one_line(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="architecture 'sparc'"):
        saved.arch_of({"arch": "sparc"})
    qemu.binary.cache_clear()
    monkeypatch.setenv("PATH", "/nonexistent")
    try:
        with pytest.raises(UserError, match="qemu-system-riscv64 not found; .*apt-get install "
                                            "qemu-system-misc"):
            qemu.binary("qemu-system-riscv64")
    finally:
        qemu.binary.cache_clear()


def overlay_info(path):
    import json
    import subprocess
    out = subprocess.run(["qemu-img", "info", "--output=json", str(path)], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def test_a_copys_overlay_comes_from_the_first_ones_template_until_the_disk_changes(tmp_path):
    import subprocess
    disk = tmp_path / "snapshot" / saved.DISK
    disk.parent.mkdir()
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "64M"], check=True)
    templates, log = tmp_path / "overlays", tmp_path / "qemu-img.log"
    saved.overlay(disk, tmp_path / "a.qcow2", templates=templates, log=log)
    made = list(templates.glob("overlay-*.qcow2"))
    assert len(made) == 1 and made[0].read_bytes() == (tmp_path / "a.qcow2").read_bytes()
    log.write_text("")
    saved.overlay(disk, tmp_path / "b.qcow2", templates=templates, log=log)
    assert log.read_text().startswith(f"+ cp {made[0]} ")      # no qemu-img
    info = overlay_info(tmp_path / "b.qcow2")
    assert info["backing-filename"] == str(disk) and info["virtual-size"] == 64 << 20
    # A new saved disk (another size): a new template, made by qemu-img.
    disk.unlink()
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "128M"], check=True)
    saved.overlay(disk, tmp_path / "c.qcow2", templates=templates, log=log)
    assert "qemu-img create" in log.read_text()
    assert overlay_info(tmp_path / "c.qcow2")["virtual-size"] == 128 << 20
    assert len(list(templates.iterdir())) == 2


def test_saved_disks_in_use_at_once_keep_their_templates_and_old_ones_go(tmp_path):
    """A kept failed copy's disk and the snapshot's, used in turn, each
    keep their template; beyond KEEP_TEMPLATES the least recently used go."""
    import subprocess
    templates, log = tmp_path / "overlays", tmp_path / "qemu-img.log"
    disks = []
    for i in range(saved.KEEP_TEMPLATES + 2):
        disk = tmp_path / f"saved{i}" / saved.DISK
        disk.parent.mkdir()
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "64M"],
                       check=True)
        disks.append(disk)
    saved.overlay(disks[0], tmp_path / "a.qcow2", templates=templates, log=log)
    saved.overlay(disks[1], tmp_path / "b.qcow2", templates=templates, log=log)
    log.write_text("")
    for turn in range(3):       # the two disks in turn: no qemu-img any more
        for disk in disks[:2]:
            saved.overlay(disk, tmp_path / f"t{turn}.qcow2", templates=templates, log=log)
    assert "qemu-img" not in log.read_text()
    for disk in disks[2:]:
        saved.overlay(disk, tmp_path / "n.qcow2", templates=templates, log=log)
    assert len(list(templates.iterdir())) == saved.KEEP_TEMPLATES
    log.write_text("")
    saved.overlay(disks[-1], tmp_path / "last.qcow2", templates=templates, log=log)
    assert "qemu-img" not in log.read_text()
    saved.overlay(disks[0], tmp_path / "first.qcow2", templates=templates, log=log)
    assert "qemu-img create" in log.read_text()         # the oldest went


def test_a_missing_saved_disk_is_one_line_from_qemu_img(tmp_path):
    from revive.core.errors import UserError
    with pytest.raises(UserError) as err:
        saved.overlay(tmp_path / "snapshot" / saved.DISK, tmp_path / "a.qcow2",
                      templates=tmp_path / "overlays", log=tmp_path / "log")
    assert "qemu-img create" in str(err.value) and "\n" not in str(err.value)


def test_a_relative_backing_path_gets_no_template(tmp_path, monkeypatch):
    import subprocess
    (tmp_path / "snapshot").mkdir()
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2",
                    str(tmp_path / "snapshot" / saved.DISK), "64M"], check=True)
    monkeypatch.chdir(tmp_path)
    templates = tmp_path / "overlays"
    saved.overlay(Path("snapshot") / saved.DISK, tmp_path / "a.qcow2",
                  templates=templates, log=tmp_path / "log")
    assert overlay_info(tmp_path / "a.qcow2")["backing-filename"] == "snapshot/disk.qcow2"
    assert not templates.exists()
