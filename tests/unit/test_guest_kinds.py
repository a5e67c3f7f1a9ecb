"""Every registered guest kind keeps the contract, from its example config.

For each kind: the install, snapshot and revive device models render to
argv that a real QEMU accepts (started paused, asked its state, stopped);
the snapshot's template names only tokens a revive fills in; the commands a
build sends (after revive, the build command, share preparation) parse in
the guest's shell; and every config key a kind says a stage reads exists.
"""

import dataclasses
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from revive import inputs, starter
from tasks.common import Paths
from revive.config import load, settings
from revive.guests import KINDS, base, kind_for
from revive import qemu
from revive.qemu import Qemu
from revive.qemu import saved

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = {"tiny": REPO / "config.toml", "debian": REPO / "examples" / "debian.toml",
            "windows": REPO / "examples" / "windows.toml"}
# What a revive (revive.machine) and the snapshot stage fill in.
TOKENS = {"artifacts", "disk", "ram", "ram-share", "smb", "port", "ovmf-vars",
          "agent-socket", "agent-stream"}

needs_qemu = pytest.mark.skipif(not shutil.which(qemu.BINARY), reason="needs QEMU")


def test_every_kind_has_an_example():
    assert set(EXAMPLES) == set(KINDS)


# The tiny guest again on the other architectures ([guest] arch).
ARCH_VARIANTS = ["tiny-arm64", "tiny-riscv64"]


@pytest.fixture(params=sorted(KINDS) + ARCH_VARIANTS)
def project(request, tmp_path):
    """The kind's example config, its artifacts in a scratch folder, and the
    files its machines open."""
    kind, _, arch = request.param.partition("-")
    if kind == "windows":
        # Its share folder is the demo's, which `revive init` copies along.
        starter.write(tmp_path, "windows")
        cfg = load(tmp_path / "config.toml")
    else:
        cfg = load(EXAMPLES[kind])
    cfg = dataclasses.replace(cfg, root=tmp_path)
    if arch:
        cfg = dataclasses.replace(cfg, guest_settings=cfg.guest_settings.from_table(
            {"kind": kind, "arch": arch}))
    paths = Paths(cfg)
    for folder in (paths.logs, paths.iso.parent, paths.payload / "boot"):
        folder.mkdir(parents=True, exist_ok=True)
    paths.iso.write_bytes(b"\0" * 2048 * 16)
    paths.floppy.write_bytes(b"\0" * 1474560)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", paths.base, "64M"], check=True)
    return cfg, paths


def installed_settings(record, tmp_path):
    """The record, with any install ISO the settings name made to exist."""
    if getattr(record.guest, "iso", None) is not None:
        iso = tmp_path / "install.iso"
        iso.write_bytes(b"\0" * 2048 * 16)
        return dataclasses.replace(record, guest=dataclasses.replace(record.guest, iso=iso))
    return record


def accepted(argv, logs: Path, name: str, binary: str = qemu.BINARY) -> str:
    """Start QEMU paused with ``argv``; return the run state it reports."""
    with Qemu(argv + ["-S"], name=name, logdir=logs, binary=binary) as vm:
        vm.launch()
        return vm.status()


def test_the_kind_is_a_guest_kind_with_its_settings(project):
    cfg, _ = project
    kind = kind_for(cfg)
    assert isinstance(kind, base.GuestKind) and kind.name == cfg.guest_kind
    assert isinstance(cfg.guest_settings, kind.Settings)
    stages = set(inputs.STAGES) | {"build:NAME", "sources:NAME"}
    for row in settings.table([type(kind)]):
        assert set(row.stages_for(kind.name)) <= stages, row.key
    # Every [guest] key is a row, kept in the Settings field of its name.
    assert all(r.section == "guest" for r in kind.keys)
    assert {r.attr for r in kind.keys} == {f.name for f in dataclasses.fields(kind.Settings)}


@needs_qemu
def test_install_machine_starts(project, tmp_path):
    cfg, paths = project
    record = installed_settings(inputs.for_stage(cfg, "install"), tmp_path)
    kind = record.guest_kind()
    devices = kind.install_devices(record, paths, paths.base).with_(
        accel="tcg", cpu=kind.cpu_model("tcg"))
    argv = devices.render()
    assert argv.count("-machine") == 1
    assert any(str(paths.iso) in a for a in argv), "the payload CD is attached"
    if devices.kernel is not None:
        # Direct kernel boot of the payload's installer (not made here).
        assert devices.kernel.kernel == str(paths.payload / "iso" / "vmlinuz")
        argv = devices.with_(kernel=None).render()
    assert accepted(argv, paths.logs, "install", devices.binary) == "prelaunch"


@needs_qemu
def test_snapshot_template_fills_and_revives(project, tmp_path):
    cfg, paths = project
    record = inputs.for_stage(cfg, "snapshot")
    kind = record.guest_kind()
    features = qemu.features(paths.logs, kind.arch().qemu)
    method = saved.choose_method("auto", features["capabilities"])
    devices = kind.installed_devices(record).with_(
        machine=features[kind.machine_alias()], accel="tcg", cpu=kind.cpu_model("tcg"),
        ram_file="@ram@" if method == "file" else None, ram_share="@ram-share@")
    template = devices.render()
    used = set(re.findall(r"@([a-z][a-z0-9.-]*)@", " ".join(template)))
    shares = {f"share.{n}" for n in cfg.shares}
    assert used - shares <= TOKENS, used
    assert any("restrict=on" in a for a in template), "the guest has no way out"
    work = tmp_path / "work"
    (work / "smb").mkdir(parents=True)
    values = {"artifacts": str(paths.artifacts), "disk": str(paths.base),
              "ram": str(work / "ram"), "ram-share": "on", "smb": str(work / "smb"),
              "port": "0", **{s: str(work) for s in shares}}
    if "agent-socket" in used:
        from revive.channel import agent
        values.update(agent.argv_values(work))
    if "ovmf-vars" in used:
        values["ovmf-vars"] = str(shutil.copyfile(
            "/usr/share/OVMF/OVMF_VARS_4M.fd", work / "vars.fd"))
    # The payload's kernel is not made here; the rest of the machine is real.
    argv = saved.fill(devices.with_(kernel=None).render(), values)
    assert accepted(argv, paths.logs, "snapshot", devices.binary) == "prelaunch"
    values["ram-share"] = "off"
    revive = saved.fill(devices.with_(kernel=None).render(), values) + ["-incoming", "defer"]
    assert accepted(revive, paths.logs, "revive", devices.binary) == "inmigrate"


def test_the_kind_declares_every_file_a_revive_reads(project, tmp_path):
    """A cluster worker gets exactly what ``revive_files`` names: every file
    of artifacts/ the template names through @artifacts@ is declared, and
    ``vm_values`` finds what it copies among the declared files alone."""
    cfg, _ = project
    record = inputs.for_stage(cfg, "snapshot")
    kind = record.guest_kind()
    template = " ".join(kind.installed_devices(record).render())
    named = set(re.findall(r"@artifacts@/([^,\s]+)", template))
    declared = set(kind.revive_files())
    assert named <= declared
    artifacts, work = tmp_path / "only-declared", tmp_path / "vm"
    work.mkdir()
    for rel in declared:
        (artifacts / rel).parent.mkdir(parents=True, exist_ok=True)
        (artifacts / rel).write_bytes(b"x")
    kind.vm_values(artifacts, work, record["shares"].values())
    # A declared file the template does not name is one vm_values reads.
    for rel in declared - named:
        (artifacts / rel).unlink()
        with pytest.raises(OSError):
            kind.vm_values(artifacts, work, record["shares"].values())
        (artifacts / rel).write_bytes(b"x")


def test_build_commands_parse_in_the_guest_shell(project):
    cfg, _ = project
    kind = kind_for(cfg)
    shell = "bash" if kind.drive_letters else "sh"
    shares = list(cfg.value("shares").values())
    # A big read-only share comes from its image in tree drive 0.
    trees = {s.name: 0 for s in shares if s.mode == "ro"}
    commands = [kind.after_revive(shares, 1764000000.25), kind.prepare_shares(shares),
                kind.after_revive(shares, 1764000000.25, trees),
                kind.before_keep(shares),
                kind.command_line("make -j2 all && echo 'done; really'",
                                  {"CC": "gcc -O2", "A_B": "x'y"}, "builder", shares)]
    for command in commands:
        check = subprocess.run([shell, "-n", "-c", command], capture_output=True, text=True)
        assert check.returncode == 0, (command, check.stderr)
