"""XP and Server 2003's shares over SMB1 (issue 18, item 1), with real
Samba on both ends and no Windows: the smbd configuration and command line
are taken from the machine argv revive renders for an XP config (the
snapshot's template, filled as a revive fills it), and started the way
libslirp starts a ``guestfwd=…-cmd:`` (and QEMU's own ``smb=``): one
process per TCP connection, the command line split as a shell would, the
connection's socket on stdin, stdout and stderr, in a new session. Debian's
``smbclient -m NT1`` (a real SMB1 client, what XP speaks) then lists the
shares, reads the read-only one, writes the exchange share and is refused
a write to the read-only one. XP and 2003 configs are rendered up to
QEMU's launch (started paused, as tests/unit/test_guest_kinds.py does)."""

import dataclasses
import getpass
import os
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import threading
import tomllib
from pathlib import Path

import pytest

from revive import inputs
from revive.config import parse
from revive import qemu
from revive.machine import share_folders
from revive.qemu import Qemu, saved
from tasks.common import Paths

from .conftest import REPO, processes_mentioning, system_user

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not shutil.which("smbclient"), reason="needs smbclient")]
XP_KEY = "AAAAA-BBBBB-CCCCC-DDDDD-EEEEE"


def legacy_config(version: str, root: Path):
    """examples/windows.toml with only the version (and what XP/2003 cannot
    take) changed, its project in ``root``."""
    raw = tomllib.loads((REPO / "examples" / "windows.toml").read_text())
    raw["guest"].update(windows_version=version, firmware="bios", product_key=XP_KEY)
    del raw["guest"]["image"]
    del raw["vm"]["memory"], raw["vm"]["cpus"]
    raw["answers"] = {}
    cfg = parse(raw, REPO / "examples" / "config.toml")
    return dataclasses.replace(cfg, root=root)


def guestfwd_commands(argv: "list[str]") -> "dict[int, str]":
    """port -> command of each guestfwd in the rendered -netdev option."""
    netdev = argv[argv.index("-netdev") + 1]
    found = {}
    for m in re.finditer(r"guestfwd=tcp:10\.0\.2\.4:(\d+)-cmd:((?:[^,]|,,)*)", netdev):
        found[int(m.group(1))] = m.group(2).replace(",,", ",")
    return found


class SlirpExec:
    """What libslirp does for a guestfwd cmd: per connection, the command
    with the socket as its standard input, output and error."""

    def __init__(self, command: str, user=None):
        self.argv = shlex.split(command)
        # as QEMU's user would run it (None: this process's user)
        self.as_user = {} if user is None else {
            "user": user.pw_uid, "group": user.pw_gid, "extra_groups": [],
            "env": {"HOME": user.pw_dir, "PATH": "/usr/bin:/bin"}}
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.children: "list[subprocess.Popen]" = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                self.children.append(subprocess.Popen(
                    self.argv, stdin=conn.fileno(), stdout=conn.fileno(),
                    stderr=conn.fileno(), start_new_session=True, **self.as_user))

    def close(self):
        self.listener.close()
        self.thread.join(timeout=10)
        for child in self.children:
            try:
                child.wait(timeout=10)      # smbd leaves when its client hangs up
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(timeout=10)


@pytest.fixture
def xp_vm(tmp_path):
    """The snapshot template of an XP config, filled for one revived copy
    with the example's shares (src read-only with a file in it, xchg rw)."""
    return render_xp(tmp_path)


def render_xp(tmp_path):
    cfg = legacy_config("xp", tmp_path)
    record = inputs.for_stage(cfg, "snapshot")
    kind = record.guest_kind()
    template = kind.installed_devices(record).with_(
        machine="pc", accel="tcg", cpu=kind.cpu_model("tcg")).render()
    shares = list(cfg.value("shares").values())
    source = tmp_path / "input"
    source.mkdir()
    (source / "input.txt").write_text("revive input 42\n")
    work = tmp_path / "work"
    work.mkdir()
    folders = share_folders(shares, {"src": source}, work)
    values = {"artifacts": str(tmp_path / "artifacts"), "disk": str(tmp_path / "disk.qcow2"),
              "ram": str(work / "ram"), "ram-share": "off", "smb": str(work / "smb"),
              "port": "0", **kind.vm_values(tmp_path / "artifacts", work, shares)}
    return saved.fill(template, values), folders, work


# Samba 4.17's client refuses SMB1 by default too; allowing it is the
# client's side, as XP (which knows nothing newer) is.
NT1 = ["smbclient", "-m", "NT1", "--option=client min protocol = NT1", "-N"]


def smbclient(port: int, share: str, command: str) -> subprocess.CompletedProcess:
    return subprocess.run([*NT1, "-p", str(port), f"//127.0.0.1/{share}", "-c", command],
                          capture_output=True, text=True, timeout=60)


def test_xp_shares_are_served_over_smb1_to_a_real_smb1_client(xp_vm, tmp_path):
    argv, folders, work = xp_vm
    netdev = argv[argv.index("-netdev") + 1]
    assert "restrict=on" in netdev and "smb=" not in netdev
    commands = guestfwd_commands(argv)
    assert sorted(commands) == [139, 445] and len(set(commands.values())) == 1
    command = commands[139]
    assert command == f"{shutil.which('smbd', path='/usr/sbin:/sbin')} -l {work / 'smb1'} " \
                      f"-s {work / 'smb1' / 'smb.conf'}"
    conf = (work / "smb1" / "smb.conf").read_text()
    assert "server min protocol = NT1" in conf
    served = SlirpExec(command)
    try:
        listing = subprocess.run([*NT1, "-p", str(served.port), "-L", "//127.0.0.1"],
                                 capture_output=True, text=True, timeout=60)
        assert listing.returncode == 0, listing.stdout + listing.stderr
        names = {line.split()[0] for line in listing.stdout.splitlines()
                 if line.strip().endswith("Disk") or " Disk " in line}
        assert {"src", "xchg"} <= names, listing.stdout

        ls = smbclient(served.port, "src", "ls")
        assert ls.returncode == 0 and "input.txt" in ls.stdout, ls.stdout + ls.stderr
        got = tmp_path / "got.txt"
        read = smbclient(served.port, "src", f"get input.txt {got}")
        assert read.returncode == 0, read.stdout + read.stderr
        assert got.read_text() == "revive input 42\n"

        out = tmp_path / "out.txt"
        out.write_text("written by the guest\n")
        write = smbclient(served.port, "xchg", f"put {out} result.txt")
        assert write.returncode == 0, write.stdout + write.stderr
        assert (folders["xchg"] / "result.txt").read_text() == "written by the guest\n"

        refused = smbclient(served.port, "src", f"put {out} sneaky.txt")
        assert "NT_STATUS_ACCESS_DENIED" in refused.stdout + refused.stderr \
            or "NT_STATUS_MEDIA_WRITE_PROTECTED" in refused.stdout + refused.stderr, \
            refused.stdout + refused.stderr
        assert not (folders["src"] / "sneaky.txt").exists()
    finally:
        served.close()
    assert all(child.returncode is not None for child in served.children)
    assert len(served.children) >= 5      # one smbd per connection, as slirp starts it
    # nothing of this VM's Samba outlives it (samba-dcerpcd, rpcd_* helpers)
    assert processes_mentioning(str(work)) == []


@pytest.fixture
def plain_user():
    return system_user("revive-smb1")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a user")
def test_smb1_shares_work_for_a_user_who_is_not_root(plain_user, monkeypatch):
    """Users are not root: the same VM's smbd, started as a plain user
    (smb.conf's force user is then that user), reads and writes."""
    root = Path(tempfile.mkdtemp(prefix="revive-smb1-"))
    try:
        monkeypatch.setattr(getpass, "getuser", lambda: plain_user.pw_name)
        argv, folders, work = render_xp(root)
        subprocess.run(["chown", "-R", f"{plain_user.pw_uid}:{plain_user.pw_gid}", root],
                       check=True)
        root.chmod(0o755)
        served = SlirpExec(guestfwd_commands(argv)[139], user=plain_user)
        try:
            read = smbclient(served.port, "src", "ls")
            assert read.returncode == 0 and "input.txt" in read.stdout, read.stdout + read.stderr
            out = root / "out.txt"
            out.write_text("plain\n")
            out.chmod(0o644)
            write = smbclient(served.port, "xchg", f"put {out} result.txt")
            assert write.returncode == 0, write.stdout + write.stderr
            assert (folders["xchg"] / "result.txt").stat().st_uid == plain_user.pw_uid
        finally:
            served.close()
        assert processes_mentioning(str(work)) == []
    finally:
        shutil.rmtree(root)


def test_a_modern_client_limited_to_smb2_is_still_answered(xp_vm):
    """min protocol NT1 lowers the floor only: SMB2 clients keep working."""
    argv, _, _ = xp_vm
    served = SlirpExec(guestfwd_commands(argv)[445])
    try:
        proc = subprocess.run(["smbclient", "-m", "SMB3", "-N", "-p", str(served.port),
                               "//127.0.0.1/xchg", "-c", "ls"], capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    finally:
        served.close()


def test_without_the_nt1_floor_smbd_refuses_what_xp_speaks(xp_vm):
    """The control: the same smbd and shares with Samba's default floor
    (what QEMU's smb= writes) turn an SMB1-only client away."""
    argv, _, work = xp_vm
    conf = work / "smb1" / "smb.conf"
    conf.write_text(conf.read_text().replace("server min protocol = NT1\n", ""))
    served = SlirpExec(guestfwd_commands(argv)[139])
    try:
        proc = smbclient(served.port, "xchg", "ls")
        assert proc.returncode != 0
        assert "NT_STATUS" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    finally:
        served.close()


needs_qemu = pytest.mark.skipif(not shutil.which(qemu.BINARY), reason="needs QEMU")


@needs_qemu
@pytest.mark.parametrize("version", ["xp", "2003"])
def test_xp_and_2003_render_up_to_qemus_launch(version, tmp_path):
    """The install machine and a revived copy's machine, with the SMB1
    guest forwards, are accepted by a real QEMU (started paused)."""
    cfg = legacy_config(version, tmp_path)
    paths = Paths(cfg)
    for folder in (paths.logs, paths.iso.parent):
        folder.mkdir(parents=True, exist_ok=True)
    paths.iso.write_bytes(b"\0" * 2048 * 16)
    paths.floppy.write_bytes(b"\0" * 1474560)
    iso = tmp_path / "xp.iso"
    iso.write_bytes(b"\0" * 2048 * 16)
    record = inputs.for_stage(cfg, "install")
    record = dataclasses.replace(record, guest=dataclasses.replace(record.guest, iso=iso))
    kind = record.guest_kind()
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", paths.base, "64M"], check=True)
    install = kind.install_devices(record, paths, paths.base).with_(
        accel="tcg", cpu=kind.cpu_model("tcg")).render()
    assert install[install.index("-m") + 1] == "512M" and install[install.index("-smp") + 1] == "1"
    assert "if=floppy" in " ".join(install) and "-machine" in install
    with Qemu(install + ["-S"], name="install", logdir=paths.logs) as vm:
        vm.launch()
        assert vm.status() == "prelaunch"

    snapshot = inputs.for_stage(cfg, "snapshot")
    kind = snapshot.guest_kind()
    shares = list(cfg.value("shares").values())
    work = tmp_path / "work"
    share_folders(shares, {"src": tmp_path}, work)
    features = qemu.features(paths.logs)
    template = kind.installed_devices(snapshot).with_(
        machine=features[kind.machine_alias()], accel="tcg", cpu=kind.cpu_model("tcg")).render()
    values = {"artifacts": str(paths.artifacts), "disk": str(paths.base),
              "ram": str(work / "ram"), "ram-share": "off", "smb": str(work / "smb"),
              "port": "0", **kind.vm_values(paths.artifacts, work, shares)}
    argv = saved.fill(template, values)
    assert sorted(guestfwd_commands(argv)) == [139, 445]
    with Qemu(argv + ["-S", "-incoming", "defer"], name="revive", logdir=paths.logs) as vm:
        vm.launch()
        assert vm.status() == "inmigrate"
