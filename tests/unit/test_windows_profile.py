import json
import re
import subprocess
from pathlib import Path

import pytest

from revive import inputs
from revive.config import load
from revive.guests.windows.profile import (OVMF_CODE, copy_ovmf_vars, cpu_model,
                                          device_model)
from revive.guests.windows.settings import from_table

REPO = Path(__file__).resolve().parents[2]
DISK = Path("/vm/base.qcow2")
INSTALL = Path("/isos/win.iso")
PAYLOAD = Path("/vm/payload.iso")


def settings(**overrides):
    base = {"iso": "w.iso", "iso_sha256": "a" * 64, "image": 1,
            "windows_version": "10", "cygwin_mirror": "m"}
    base.update(overrides)
    return from_table(base, Path("/cfg"))


def options(argv, flag):
    """Values of every ``flag`` in argv, each parsed into (first, {key: value})."""
    found = []
    for i, arg in enumerate(argv):
        if arg == flag:
            parts = re.split(r"(?<!,),(?!,)", argv[i + 1])
            props = dict(p.split("=", 1) for p in parts if "=" in p)
            first = parts[0] if "=" not in parts[0] else None
            found.append((first, {k: v.replace(",,", ",") for k, v in props.items()}))
    return found


def devices(argv, driver):
    return [props for first, props in options(argv, "-device") if first == driver]


def drive(argv, drive_id):
    [props] = [p for _, p in options(argv, "-drive") if p.get("id") == drive_id]
    return props


def machine_argv(*args, **kw):
    return device_model(*args, **kw).render()


def machine_type(argv):
    return single(argv, "-machine").split(",")[0]


def single(argv, flag):
    values = [argv[i + 1] for i, a in enumerate(argv) if a == flag]
    assert len(values) == 1, (flag, values)
    return values[0]


def bios_argv(**kw):
    return machine_argv(settings(), disk=DISK, install_iso=INSTALL, payload_iso=PAYLOAD,
                        smb_dir=Path("/vm/smb"), ssh_port=40022, **kw)


def test_bios_machine_disk_and_cdroms_on_ahci():
    argv = bios_argv()
    assert machine_type(argv) == "q35"
    assert options(argv, "-device").count(("ahci", {"id": "ahci"})) == 1
    [hd] = devices(argv, "ide-hd")
    assert (hd["drive"], hd["bus"], hd["bootindex"]) == ("disk0", "ahci.0", "1")
    assert (drive(argv, "disk0")["file"], drive(argv, "disk0")["format"]) == \
        (str(DISK), "qcow2")
    cds = devices(argv, "ide-cd")
    assert [(c["bus"], drive(argv, c["drive"])["file"]) for c in cds] == \
        [("ahci.1", str(INSTALL)), ("ahci.2", str(PAYLOAD))]
    assert all(drive(argv, c["drive"])["readonly"] == "on" for c in cds)
    assert [int(c["bootindex"]) for c in cds] == [2, 3]     # after the disk
    assert not [p for _, p in options(argv, "-drive") if p.get("if") == "pflash"]


def test_network_usb_and_clock():
    argv = bios_argv()
    [(kind, netdev)] = options(argv, "-netdev")
    assert kind == "user" and netdev["id"] == "net0"
    assert netdev["restrict"] == "on"
    assert netdev["smb"] == "/vm/smb"
    assert netdev["hostfwd"] == "tcp:127.0.0.1:40022-:22"
    [nic] = devices(argv, "e1000e")
    assert nic["netdev"] == "net0"
    [xhci] = devices(argv, "qemu-xhci")
    assert devices(argv, "usb-tablet") == [{"bus": f"{xhci['id']}.0"}]
    assert single(argv, "-rtc") == "base=localtime,clock=vm"
    argv = machine_argv(settings(rtc="utc"), disk=DISK)
    assert single(argv, "-rtc") == "base=utc,clock=vm"
    [(_, netdev)] = options(argv, "-netdev")
    assert "smb" not in netdev and "hostfwd" not in netdev and netdev["restrict"] == "on"


def test_bios_floppy_on_q35_needs_an_isa_controller():
    argv = bios_argv(floppy=Path("/vm/answers.img"))
    [fdc] = devices(argv, "isa-fdc")
    [fd] = devices(argv, "floppy")
    assert fd["bus"] == f"{fdc['id']}.0"
    assert drive(argv, fd["drive"]) == {"if": "none", "id": fd["drive"],
                                       "format": "raw", "readonly": "on",
                                       "file": "/vm/answers.img"}


def test_uefi_pflash_code_readonly_and_vars_copy(tmp_path):
    source = tmp_path / "OVMF_VARS_4M.fd"
    source.write_bytes(b"\x00vars" * 100)
    vars_copy = copy_ovmf_vars(tmp_path / "vm-vars.fd", source)
    assert vars_copy.read_bytes() == source.read_bytes() and vars_copy != source
    argv = machine_argv(settings(firmware="uefi"), disk=DISK, ovmf_vars=vars_copy)
    flash = sorted((p for _, p in options(argv, "-drive") if p.get("if") == "pflash"),
                   key=lambda p: p["unit"])
    assert [(p["unit"], p.get("readonly"), p["file"]) for p in flash] == \
        [("0", "on", str(OVMF_CODE)), ("1", None, str(vars_copy))]
    assert machine_type(argv) == "q35"


def test_uefi_refuses_floppy_and_needs_vars():
    with pytest.raises(ValueError):
        machine_argv(settings(firmware="uefi"), disk=DISK, ovmf_vars=Path("/v"),
                     floppy=Path("/f.img"))
    with pytest.raises(ValueError):
        machine_argv(settings(firmware="uefi"), disk=DISK)


def test_xp_uses_pc_ide_rtl8139_and_uhci_tablet():
    xp = settings(windows_version="xp", image=None,
                  product_key="AAAAA-BBBBB-CCCCC-DDDDD-EEEEE")
    argv = machine_argv(xp, disk=DISK, install_iso=INSTALL, payload_iso=PAYLOAD,
                        floppy=Path("/vm/winnt.img"))
    assert machine_type(argv) == "pc"
    assert not devices(argv, "ahci") and not devices(argv, "e1000e")
    [hd] = devices(argv, "ide-hd")
    assert (hd["bus"], hd["unit"]) == ("ide.0", "0")
    assert [(c["bus"], c["unit"]) for c in devices(argv, "ide-cd")] == \
        [("ide.1", "0"), ("ide.1", "1")]
    assert devices(argv, "rtl8139") == [{"netdev": "net0"}]
    assert "-usb" in argv and devices(argv, "usb-tablet") == [{}]
    [floppy] = [p for _, p in options(argv, "-drive") if p.get("if") == "floppy"]
    assert floppy["file"] == "/vm/winnt.img"


def test_commas_in_paths_are_escaped():
    argv = machine_argv(settings(), disk=Path("/vm/a,b.qcow2"), smb_dir=Path("/s,m"))
    assert "file=/vm/a,,b.qcow2" in single(argv, "-drive")
    assert drive(argv, "disk0")["file"] == "/vm/a,b.qcow2"
    assert options(argv, "-netdev")[0][1]["smb"] == "/s,m"


# --- the CPU (issue 12, point 5) ------------------------------------------------

def qemu_cpu_flags(model: str, flags=("popcnt", "sse4.2")) -> dict:
    """Ask QEMU itself: instantiate ``model`` under TCG with enforce=on (QEMU
    refuses to start when TCG cannot provide one of its features), stopped
    before the first instruction, and read the CPU's flags over QMP."""
    lines = ['{"execute":"qmp_capabilities"}']
    lines += ['{"execute":"qom-get","arguments":{"path":"/machine/unattached/device[0]",'
              f'"property":"{flag}"}}}}' for flag in flags]
    lines.append('{"execute":"quit"}')
    proc = subprocess.run(["qemu-system-x86_64", "-machine", "q35", "-accel", "tcg",
                           "-cpu", f"{model},check=on,enforce=on", "-S", "-nodefaults",
                           "-display", "none", "-qmp", "stdio"],
                          input="\n".join(lines) + "\n", capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr, proc.stderr
    answers = [json.loads(l) for l in proc.stdout.splitlines() if '"return"' in l]
    return dict(zip(flags, (a["return"] for a in answers[1:])))


def test_windows_11_under_tcg_gets_a_cpu_with_sse42_and_popcnt(tmp_path):
    from revive import starter
    starter.write(tmp_path, "windows")      # with the demo folder its build shares
    cfg = load(tmp_path / "config.toml")
    record = inputs.for_stage(cfg, "snapshot")
    kind = record.guest_kind()
    assert kind.s.windows_version == "11"
    cpu = kind.cpu_model("tcg")
    argv = kind.installed_devices(record).with_(machine="pc-q35-7.2", accel="tcg",
                                                cpu=cpu).render()
    assert single(argv, "-cpu") == cpu == "Nehalem-v1"
    assert qemu_cpu_flags(cpu) == {"popcnt": True, "sse4.2": True}


def test_qemu64_is_what_windows_11_cannot_boot_on():
    # The probe can fail: QEMU's old default lacks both.
    assert qemu_cpu_flags("qemu64") == {"popcnt": False, "sse4.2": False}


def test_cpu_per_version_and_accelerator():
    assert cpu_model(settings(windows_version="11"), "kvm") == "host"
    for version in ("vista", "7", "10", "2022", "2025"):
        assert cpu_model(settings(windows_version=version), "tcg") == "Nehalem-v1"
    xp = settings(windows_version="xp", image=None,
                  product_key="AAAAA-BBBBB-CCCCC-DDDDD-EEEEE")
    assert cpu_model(xp, "tcg") == "qemu64"


def test_install_cd_may_be_a_qcow2_overlay():
    argv = machine_argv(settings(firmware="uefi"), disk=DISK, install_iso=Path("/w/cd.qcow2"),
                        install_iso_format="qcow2", payload_iso=PAYLOAD,
                        ovmf_vars=Path("/vm/vars.fd"))
    assert (drive(argv, "cd0")["format"], drive(argv, "cd0")["file"]) == \
        ("qcow2", "/w/cd.qcow2")
    assert drive(argv, "cd1")["format"] == "raw"
    # The disk boots first: with a prompt-free CD, Setup must not start again
    # once the disk holds Windows.
    [hd] = devices(argv, "ide-hd")
    assert hd["bootindex"] == "1"


# --- XP/2003: their own SMB1 smbd through a guest forward (issue 18) ---------------

def test_xp_snapshot_machine_forwards_smb_to_its_own_smbd_and_nothing_else():
    from revive.guests.windows.kind import WindowsKind
    from revive.qemu import smb1
    s = settings(windows_version="xp", answer_format="winnt", firmware="bios",
                 product_key="AAAAA-BBBBB-CCCCC-DDDDD-EEEEE", image=None)
    argv = WindowsKind(s).installed_devices({"vm.memory": 512, "vm.cpus": 1}).render()
    netdev = argv[argv.index("-netdev") + 1]
    assert netdev.startswith("user,id=net0,restrict=on,")
    assert "smb=" not in netdev
    command = smb1.command("@smbd@", "@smb1@")
    assert f"guestfwd=tcp:10.0.2.4:139-cmd:{command}," in netdev
    assert f"guestfwd=tcp:10.0.2.4:445-cmd:{command}," in netdev


def test_smb1_configuration_and_its_refusals(tmp_path):
    from revive.core.errors import UserError
    from revive.qemu import smb1
    conf = smb1.config(tmp_path, {"src": (tmp_path / "a,b", True), "xchg": (tmp_path / "x", False)},
                       user="builder")
    sections = conf.split("\n\n")
    assert "server min protocol = NT1" in sections[0]
    assert f"[src]\npath = {tmp_path / 'a,b'}\nread only = yes\nguest ok = yes\n" \
           "force user = builder" == sections[1]
    assert "read only = no" in sections[2]
    with pytest.raises(UserError, match=r"\[shares.global\]: Samba reserves"):
        smb1.config(tmp_path, {"global": (tmp_path, False)})
    with pytest.raises(UserError, match="holds a space or quote"):
        smb1.command("/usr/sbin/smbd", "/my work/smb1")
    with pytest.raises(UserError, match="shorter path"):
        smb1.command("/usr/sbin/smbd", "/" + "d" * 500)
    assert smb1.command("/usr/sbin/smbd", "/w/smb1") == "/usr/sbin/smbd -l /w/smb1 -s /w/smb1/smb.conf"
