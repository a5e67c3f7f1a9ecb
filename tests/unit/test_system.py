"""The system packages revive calls: one list (revive/system-packages.txt)
that setup.sh installs and the revive command checks, saying in one line
what is missing and the apt-get command that installs it."""

import os
import subprocess
import sys
from pathlib import Path

from revive import system

REPO = Path(__file__).resolve().parents[2]
REVIVE = Path(sys.executable).with_name("revive")


def test_setup_sh_installs_exactly_the_listed_packages():
    # setup.sh's own lines that read the list, run as setup.sh runs them.
    lines = [l for l in (REPO / "setup.sh").read_text().splitlines()
             if "system-packages.txt" in l and not l.startswith("#")]
    script = "\n".join(lines) + '\nprintf "%s\\n" "${packages[@]}"\n'
    out = subprocess.run(["bash", "-c", script], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == [p.name for p in system.packages()]
    assert {"qemu-system-x86", "qemu-utils", "zstd"} <= set(out)


def test_this_machine_has_every_package_a_project_needs():
    # setup.sh ran here: nothing the stages call is missing.
    assert system.missing({"all", "debian", "windows", "tests"}) == []


def revive(folder: Path, *args: str, path: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "REVIVE_CONFIG"}
    env["PATH"] = path
    return subprocess.run([str(REVIVE), *args], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_revive_names_the_missing_packages_and_the_command_in_one_line(tmp_path):
    assert revive(tmp_path, "init", path=os.environ["PATH"]).returncode == 0
    empty = tmp_path / "bin"          # a PATH without QEMU, qemu-img or zstd
    empty.mkdir()
    proc = revive(tmp_path, "build", path=str(empty))
    assert proc.returncode == 2 and proc.stdout == ""
    sudo = "" if os.geteuid() == 0 else "sudo "
    assert proc.stderr.splitlines() == [
        "revive: missing system packages qemu-system-x86 qemu-utils zstd: install with "
        f"'{sudo}apt-get install qemu-system-x86 qemu-utils zstd' (or run setup.sh in "
        "revive's source)"]
    assert not (tmp_path / "artifacts").exists()          # no stage started
    # The same for doit's other commands: loading the tasks asks QEMU already.
    assert revive(tmp_path, "list", path=str(empty)).stderr == proc.stderr

def test_a_file_path_and_a_kind_of_their_own(tmp_path):
    listed = tmp_path / "packages.txt"
    listed.write_text("# a comment\n"
                      "real-one   sh                      all      # found on PATH\n"
                      "firmware   /no/such/firmware.fd    windows\n"
                      "gone       no-such-command-here    all\n"
                      "helper     -                       setup\n")
    assert system.missing({"all"}, listed) == ["gone"]
    assert system.missing({"all", "windows"}, listed) == ["firmware", "gone"]   # in the list's order
    assert system.missing({"setup"}, listed) == []
