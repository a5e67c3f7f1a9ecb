"""[guest] arch: one table row per architecture decides the machine; the
config refuses what it does not know; a foreign guest never asks for KVM;
foreign packages come from the host's own archive, at their release."""

import pytest

from revive.core.errors import UserError
from revive.guests.debian import apt
from revive.guests.tiny import TinyKind, TinySettings
from revive.qemu import accel
from revive.qemu.devices import ARCHES, DeviceModel, Disk


def test_the_arch_key_is_checked_in_one_line():
    assert TinySettings.from_table({"kind": "tiny"}).arch == "amd64"
    assert TinySettings.from_table({"kind": "tiny", "arch": "riscv64"}).arch == "riscv64"
    with pytest.raises(UserError) as err:
        TinySettings.from_table({"kind": "tiny", "arch": "sparc"})
    assert "[guest] arch" in str(err.value) and "arm64" in str(err.value)
    with pytest.raises(UserError):
        TinySettings.from_table({"kind": "tiny", "suite": "trixie"})


@pytest.mark.parametrize("name", ["arm64", "riscv64", "armhf", "ppc64el", "s390x"])
def test_a_foreign_guest_boots_its_installer_from_virtio_media(name, tmp_path):
    from types import SimpleNamespace
    kind = TinyKind(TinySettings(arch=name))
    paths = SimpleNamespace(iso=tmp_path / "install.iso", floppy=tmp_path / "answers.img",
                            payload=tmp_path / "payload")
    devices = kind.install_devices(None, paths, tmp_path / "base.qcow2")
    argv = devices.render()
    assert devices.binary == ARCHES[name].qemu and kind.iso_boot is None
    assert "-boot" not in argv and not any("if=ide" in a or "if=floppy" in a for a in argv)
    blk = "virtio-blk-ccw" if name == "s390x" else "virtio-blk-pci"
    # Each virtio disk's serial is its drive id; the installer finds the
    # ISO and the answers by it (the command line) and the target disk too
    # (the answers), whatever order the board numbers them in.
    drives = [a.split(",", 1)[1] for a in argv if a.startswith(blk)]
    assert drives == ["drive=disk0,serial=disk0", "drive=cd0,serial=cd0",
                      "drive=floppy0,serial=floppy0"]
    assert not any("-pci" in a for a in argv) if name == "s390x" else True
    assert "revive.cd=serial:cd0 revive.answers=serial:floppy0" in devices.kernel.append
    assert f"console={ARCHES[name].console}" in devices.kernel.append
    answers = kind.floppy_files({"answers.hostname": "h", "answers.user": "u"},
                                "ssh-ed25519 AAAA")["REVIVE.CFG"].decode()
    assert "REVIVE_DISK='serial:disk0'" in answers


def test_s390x_puts_every_virtio_device_on_channel_io_without_the_pci_driver():
    from revive.guests.linux import installer
    from revive.qemu.devices import NinePShare, Nic, SerialPort
    argv = DeviceModel(arch="s390x", machine="s390-ccw-virtio", disks=(Disk("d.qcow2"),),
                       nic=Nic(ARCHES["s390x"].device("net")),
                       shares=(NinePShare("src", "/src", True),),
                       serial_ports=(SerialPort("p", "/s"),)).render()
    devices = [argv[i + 1].split(",")[0] for i, a in enumerate(argv) if a == "-device"]
    assert devices == ["virtio-blk-ccw", "virtio-net-ccw", "virtio-9p-ccw",
                       "virtio-serial-ccw", "virtserialport"]
    assert installer.for_arch(installer.BOOT_MODULES, ARCHES["s390x"]) == \
        ["virtio_blk", "ext4"]
    assert installer.for_arch(installer.BOOT_MODULES, ARCHES["armhf"]) == \
        installer.BOOT_MODULES


def test_amd64_keeps_isolinux_the_ide_cd_and_the_floppy(tmp_path):
    from types import SimpleNamespace
    kind = TinyKind(TinySettings())
    paths = SimpleNamespace(iso=tmp_path / "i.iso", floppy=tmp_path / "f.img",
                            payload=tmp_path / "payload")
    argv = kind.install_devices(None, paths, tmp_path / "b.qcow2").render()
    assert ["-boot", "d"] == argv[argv.index("-boot"):argv.index("-boot") + 2]
    assert any("if=floppy" in a for a in argv) and any("if=ide" in a for a in argv)
    assert kind.iso_boot is not None


def test_a_foreign_guest_runs_under_tcg_without_a_kvm_probe(tmp_path):
    def probe():
        raise AssertionError("no KVM probe for a foreign guest")
    name, why = accel.choose("auto", probe, tmp_path / "accel.json", ARCHES["arm64"],
                             host="x86_64")
    assert name == "tcg" and "arm64" in why
    with pytest.raises(UserError) as err:
        accel.choose("kvm", probe, tmp_path / "accel.json", ARCHES["riscv64"], host="x86_64")
    assert "[vm] accel" in str(err.value)
    assert accel.default_cpu("tcg", ARCHES["arm64"]) == "max,pauth-impdef=on"


def test_another_release_comes_from_the_host_archive_renamed():
    host = apt.parse_deb822(
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\n\nTypes: deb\nURIs: http://mirror.example/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n")
    found = apt.release_sources("trixie", host)
    assert [(s.uri, s.suite) for s in found] == [
        ("http://mirror.example/debian", "trixie"),
        ("http://mirror.example/debian", "trixie-updates"),
        ("http://mirror.example/debian-security", "trixie-security")]
    assert apt.release_sources("bookworm", host) == host
    with pytest.raises(UserError):
        apt.sources_for("trixie", "host", host)        # the Debian guest still asks


def test_media_on_virtio_disks_render_read_only():
    argv = DeviceModel(arch="arm64", machine="virt", disks=(Disk("d.qcow2"),),
                       cdroms=(Disk("i.iso", "raw"),), floppy="f.img").render()
    assert "if=none,id=cd0,format=raw,readonly=on,file=i.iso" in argv
    assert "if=none,id=floppy0,format=raw,readonly=on,file=f.img" in argv


def test_an_arm64_project_needs_the_arm_emulator(tmp_path, monkeypatch):
    import shutil
    from revive import system
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for package in system.packages():
        found = shutil.which(package.file) if not package.file.startswith("/") else None
        if package.needed_by == "all" and found:
            (bin_dir / package.file).symlink_to(found)
    monkeypatch.setenv("PATH", str(bin_dir))
    assert system.missing({"all", "tiny", "amd64"}) == []
    assert system.missing({"all", "tiny", "arm64"}) == ["qemu-system-arm"]
    assert system.missing({"all", "tiny", "riscv64"}) == ["qemu-system-misc"]
    assert system.missing({"all", "tiny", "armhf"}) == ["qemu-system-arm"]
    assert system.missing({"all", "tiny", "ppc64el"}) == ["qemu-system-ppc"]
    assert system.missing({"all", "tiny", "s390x"}) == ["qemu-system-misc"]


def test_a_timeout_in_a_copy_whose_timers_qemu_loses_says_so(tmp_path):
    """QEMU before 8.1 loses a revived ppc64el copy's decrementer: a build
    that sleeps runs until its deadline, and the one line says why."""
    from types import SimpleNamespace

    from tasks.build import _report

    ppc = ARCHES["ppc64el"]
    assert "lose its timer interrupts under QEMU 7.2.22" in ppc.lost_timers("7.2.22")
    assert ppc.lost_timers("8.1.0") is None and ppc.lost_timers("10.2.1") is None
    assert all(arch.lost_timers("7.2.22") is None for name, arch in ARCHES.items()
               if name != "ppc64el")
    result = {"timings": {}, "exit_code": None, "timed_out": True, "vm_died": False,
              "failure": "the command did not finish within 60 s",
              "lost_timers": ppc.lost_timers("7.2.22")}
    request = SimpleNamespace(name="sleepy", timeout=60)
    with pytest.raises(UserError) as err:
        _report(request, tmp_path, result)
    text = str(err.value)
    assert "\n" not in text and "[builds.sleepy] timeout = 60 s" in text
    assert "ppc64el copy can lose its timer interrupts" in text and "fixed in 8.1" in text
    result["lost_timers"] = None
    with pytest.raises(UserError) as err:
        _report(request, tmp_path, result)
    assert "timer" not in str(err.value)
