"""Users are not root (CI is): the pipeline as a plain user.

A throwaway login user runs `doit build` on the tiny guest in a project it
owns, with its own download cache, and the Debian guest's root is made by
mmdebstrap in its unshare mode (user namespaces and /etc/subuid), which only
a user who is not root takes.
"""

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests import configs

from .conftest import CONFIG, REPO, executed, qemu_processes, system_user

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a user")]

USER = "revive-plain"


@pytest.fixture(scope="module")
def plain_user():
    return system_user(USER)


@pytest.fixture
def user_project(plain_user):
    # Not under pytest's own temporary folder: pytest keeps that root's
    # alone (0700), also when another pytest starts meanwhile.
    root = Path(tempfile.mkdtemp(prefix="revive-plain-"))
    os.chmod(root, 0o755)
    shutil.copytree(REPO / "examples" / "hello", root / "hello")
    (root / "other").mkdir()
    (root / "other" / "data.txt").write_text("other build's input\n")
    configs.write(root, CONFIG)
    # The pinned packages are the same for everyone: start from root's copy
    # so the test does not download them again.
    debs = REPO / "artifacts" / "cache" / "debs"
    if debs.is_dir():
        shutil.copytree(debs, root / "cache" / "debs")
    subprocess.run(["chown", "-R", f"{USER}:{USER}", root], check=True)
    yield root
    subprocess.run(["pkill", "-KILL", "-u", USER], check=False)
    shutil.rmtree(root, ignore_errors=True)


# The user cannot run root's interpreter (it may live under /root, as with
# pyenv): the system's Python of the same version, with the project's
# packages from the virtual environment, which everyone may read.
SYSTEM_PYTHON = Path("/usr/bin/python3")
SITE = Path(sys.prefix) / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" \
    / "site-packages"


def _same_python() -> bool:
    if not SYSTEM_PYTHON.exists():
        return False
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import sys; print(sys.version_info[:2])"],
                           capture_output=True, text=True)
    return probe.stdout.strip() == str(sys.version_info[:2])


def as_user(root: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    if not _same_python():
        pytest.skip(f"no {SYSTEM_PYTHON} of Python {sys.version_info[:2]} for the user")
    env = {"PATH": os.environ["PATH"], "HOME": pwd.getpwnam(USER).pw_dir,
           "LANG": "C.UTF-8", "REVIVE_CACHE": str(root / "cache"), "PYTHONPATH": str(SITE),
           "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(["runuser", "-u", USER, "--", "env", "-i",
                           *(f"{k}={v}" for k, v in env.items()),
                           SYSTEM_PYTHON, "-m", "doit", "-f", str(REPO / "dodo.py"),
                           "-d", str(root), *args],
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def test_the_whole_pipeline_runs_as_a_plain_user(user_project):
    proc = as_user(user_project, "build")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert {"payload", "install", "snapshot", "build:hello"} <= executed(proc.stdout)
    artifacts = user_project / "artifacts"
    result = json.loads((artifacts / "builds" / "hello" / "result.json").read_text())
    assert result["exit_code"] == 0
    uid = pwd.getpwnam(USER).pw_uid
    for made in (artifacts / "base.qcow2", artifacts / "snapshot" / "meta.json",
                 artifacts / "builds" / "hello" / "outputs" / "hello"):
        assert made.stat().st_uid == uid, made
    assert qemu_processes(str(user_project)) == []


@pytest.mark.debian
def test_the_debian_root_is_made_in_mmdebstrap_unshare_mode(user_project):
    config = user_project / "config.toml"
    config.write_text(config.read_text().replace('kind = "tiny"', 'kind = "debian"\n'
                                                  'packages = []'))
    proc = as_user(user_project, "payload", timeout=1200)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    log = (user_project / "artifacts" / "logs" / "payload.log").read_text()
    assert "chosen mode: unshare" in log, log[-2000:]
    listing = (user_project / "artifacts" / "payload" / "debian-packages.txt").read_text()
    assert "openssh-server" in listing
