"""A throwaway revive project for the integration tests: one install and
snapshot per test session, shared by the tests that follow (they run in
file order and put back what they change)."""

import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import configs

REPO = Path(__file__).resolve().parents[2]
DOIT = [sys.executable, "-m", "doit", "-f", str(REPO / "dodo.py")]

# The session's project: the demo's build and one reading another folder.
CONFIG = configs.tiny("revive-test", src="hello", builds={
    "hello": configs.build("sh /mnt/src/build.sh", outputs=["hello", "hello.txt"],
                           shares={"src": "hello"}),
    "other": configs.build("cat /mnt/src/data.txt > /mnt/xchg/copy.txt && "
                           "grep ' /mnt/src ' /proc/mounts",
                           outputs=["copy.txt"], shares={"src": "other"}),
})


class Project:
    def __init__(self, root: Path):
        self.root = root
        self.artifacts = root / "artifacts"
        self.config = root / "config.toml"

    def doit(self, *args, check=True, timeout=900, env=None):
        env = dict(os.environ, REVIVE_CACHE=str(REPO / "artifacts" / "cache"), **(env or {}))
        proc = subprocess.run([*DOIT, "-d", str(self.root), *args], env=env,
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
        proc.executed = executed(proc.stdout)
        if check and proc.returncode != 0:
            raise AssertionError(f"doit {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def spawn(self, *args):
        env = dict(os.environ, REVIVE_CACHE=str(REPO / "artifacts" / "cache"))
        return subprocess.Popen([*DOIT, "-d", str(self.root), *args], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL, start_new_session=True)

    def result(self, build: str) -> dict:
        return json.loads((self.artifacts / "builds" / build / "result.json").read_text())

    def edit_config(self, old: str, new: str) -> None:
        text = self.config.read_text()
        assert old in text
        self.config.write_text(text.replace(old, new, 1))


def executed(doit_stdout: str) -> "set[str]":
    """The tasks doit ran: it prints '.  name' for those, '-- name' for the rest."""
    return {m.group(1) for m in re.finditer(r"^\.  (\S+)", doit_stdout, re.M)}


def stale(project) -> "set[str]":
    """The tasks doit would run now, by its own up-to-date checks."""
    listing = project.doit("list", "--all", "--status").stdout
    return {m.group(1) for m in re.finditer(r"^R (\S+)", listing, re.M)} - {"build"}


def wait_until(check, timeout: float, what: str, every: float = 0.1):
    """``check()``'s first true answer, polled every ``every`` s; ``what``
    (what was waited for) fails the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, what
        time.sleep(every)
    return found


def processes_mentioning(marker: str) -> "list[str]":
    """Command lines of running processes that mention ``marker`` (read
    from /proc: ps cuts long command lines)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            line = cmdline.read_bytes().rstrip(b"\0").replace(b"\0", b" ").decode(
                errors="replace")
        except OSError:
            continue
        if marker in line:
            found.append(line)
    return found


def qemu_processes(marker: str) -> "list[str]":
    """Running QEMU processes whose command line mentions ``marker``."""
    return [line for line in processes_mentioning(marker)
            if "qemu-system" in line.split(" ", 1)[0]]


@pytest.fixture(scope="session")
def fresh_project(tmp_path_factory) -> Project:
    root = tmp_path_factory.mktemp("project")
    shutil.copytree(REPO / "examples" / "hello", root / "hello")
    (root / "other").mkdir()
    (root / "other" / "data.txt").write_text("other build's input\n")
    configs.write(root, CONFIG)
    return Project(root)


@pytest.fixture(scope="session")
def built(fresh_project) -> Project:
    """The project after its first full `doit build`, with builds run in
    parallel (two copies revived from one snapshot at once)."""
    proc = fresh_project.doit("-n", "2", "build")
    fresh_project.first_run = proc
    return fresh_project


@pytest.fixture(autouse=True)
def no_qemu_left_behind(request):
    """After every test that used a project: none of its QEMU processes run."""
    yield
    for name in ("fresh_project", "project", "cluster"):
        if name not in request.fixturenames:
            continue
        value = request.getfixturevalue(name)
        # A fixture gives a Project/Cluster or the folder itself. Not
        # getattr(value, "root"): a Path's .root is "/", which matched every
        # QEMU on the machine (another xdist worker's included).
        folder = value if isinstance(value, Path) else value.root
        assert folder.is_absolute() and len(folder.parts) > 2, folder
        # With its slash: pytest-1/… must not match pytest-12/…
        root = str(folder).rstrip("/") + "/"
        deadline = time.monotonic() + 10
        while qemu_processes(root) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert qemu_processes(root) == []


def interrupt(proc: subprocess.Popen, sig=signal.SIGINT) -> None:
    """What a terminal's Ctrl-C does: the signal to the whole process group."""
    os.killpg(proc.pid, sig)


def system_user(name: str) -> "pwd.struct_passwd":
    """A plain user of this machine, made if missing. One name per module:
    a module's teardown kills every process of its user (pkill -u), which
    must not reach another module's test running meanwhile on the other
    xdist worker (test_windows_smb1's smbd once lost its helpers so, and
    its tree connect failed with NT_STATUS_NO_MEMORY)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            pass
        # useradd fails while another one holds /etc/passwd's lock.
        made = subprocess.run(["useradd", "--create-home", name], capture_output=True, text=True)
        if made.returncode != 0 and time.monotonic() > deadline:
            raise AssertionError(f"useradd {name} failed for 30 s: {made.stderr.strip()}")
        if made.returncode != 0:
            time.sleep(0.5)
