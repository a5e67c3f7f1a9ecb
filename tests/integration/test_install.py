"""revive as a user installs it (issue 15): the clone installed with pip,
not editable, into a fresh virtual environment; then, in an empty folder,
`revive init` and `revive build` give the demo's result, and doit's own
commands work through the `revive` command.

The install reuses pip's cache (warm after setup.sh) with the versions
requirements.txt pins, and compiles no bytecode, so it takes seconds rather
than minutes; the clone's own pip installs into the new environment
(`pip --python`), which then needs no pip of its own.
"""

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from .conftest import REPO, qemu_processes

pytestmark = pytest.mark.integration


def clone_files() -> "list[str]":
    """The files a fresh clone of this tree holds: what git tracks, plus
    what is new and not ignored (uncommitted work counts)."""
    out = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others",
                          "--exclude-standard"], capture_output=True, check=True).stdout
    return [name for name in out.decode().split("\0") if name and (REPO / name).is_file()]


class Installed:
    def __init__(self, venv: Path):
        self.venv = venv
        self.site = next(venv.glob("lib/python3*/site-packages"))

    def revive(self, folder: Path, *args: str, timeout: float = 900):
        env = {k: v for k, v in os.environ.items() if k not in ("REVIVE_CONFIG", "PYTHONPATH")}
        env["REVIVE_CACHE"] = str(REPO / "artifacts" / "cache")     # the downloads, shared
        return subprocess.run([str(self.venv / "bin" / "revive"), *args], cwd=folder, env=env,
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    root = tmp_path_factory.mktemp("install")
    clone = root / "clone"
    for name in clone_files():
        (clone / name).parent.mkdir(parents=True, exist_ok=True)
        (clone / name).write_bytes((REPO / name).read_bytes())
        (clone / name).chmod((REPO / name).stat().st_mode)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    pip = Path(sys.executable).with_name("pip")
    proc = subprocess.run([str(pip), "--python", str(venv / "bin" / "python"), "install",
                           "--no-compile", "-c", str(REPO / "requirements.txt"), str(clone)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return Installed(venv)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("own-project")


def test_only_revive_lands_in_site_packages_with_its_data(installed):
    info = next(installed.site.glob("revive-*.dist-info"))
    files = [line.rsplit(",", 2)[0] for line in (info / "RECORD").read_text().splitlines()]
    tops = {Path(f).parts[0] for f in files}
    assert tops == {"revive", info.name, ".."}, tops
    assert [f for f in files if f.startswith("..")] == ["../../../bin/revive"]
    # Every file the guests and the examples read at run time is installed.
    clone = {name for name in clone_files()
             if name.startswith(("revive/guests/", "examples/")) and not name.endswith(".py")}
    wheel = {f.replace("revive/examples/", "examples/", 1) for f in files}
    assert clone <= wheel, clone - wheel
    assert "revive/tasks/dodo.py" in files
    # The installed command runs the installed code, not the clone's.
    where = subprocess.run([str(installed.venv / "bin" / "python"), "-c",
                            "import revive.tasks.dodo as d; print(d.__file__)"],
                           cwd="/", capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(installed.site))


def test_without_a_config_revive_says_so_in_one_line(installed, tmp_path):
    proc = installed.revive(tmp_path, "build")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        f"revive: no config at {tmp_path / 'config.toml'}: run 'revive init' here to write "
        "one, or name yours with -c PATH"]
    assert list(tmp_path.iterdir()) == []          # nothing made where there is no project


def test_init_writes_a_project_and_will_not_overwrite_it(installed, project):
    proc = installed.revive(project, "init")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in project.iterdir()) == ["config.toml", "hello"]
    written = (project / "config.toml").read_text()
    again = installed.revive(project, "init")
    assert again.returncode == 2 and "Traceback" not in again.stderr
    assert again.stderr.splitlines() == [
        f"revive: revive init: {project / 'config.toml'} exists already; "
        "move it away to start anew"]
    assert (project / "config.toml").read_text() == written


def test_build_in_the_new_project_gives_the_demos_result(installed, project):
    proc = installed.revive(project, "-n", "2", "build")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    # What the clone's demo prints: its hello.in run with the project's hostname.
    host = tomllib.loads((project / "config.toml").read_text())["answers"]["hostname"]
    script = (REPO / "examples" / "hello" / "hello.in").read_text().replace("@HOST@", host)
    expected = subprocess.run(["sh", "-c", script], capture_output=True, text=True,
                              check=True).stdout
    out = project / "artifacts" / "builds" / "hello" / "outputs" / "hello.txt"
    assert out.read_text() == expected
    assert (project / "artifacts" / "snapshot" / "meta.json").is_file()
    assert qemu_processes(str(project) + "/") == []


def test_doits_commands_work_through_revive(installed, project):
    listing = installed.revive(project, "list")
    assert listing.returncode == 0
    assert {"build", "snapshot", "shell", "shell:hello"} <= {
        line.split()[0] for line in listing.stdout.splitlines() if line.strip()}
    info = installed.revive(project, "info", "build:hello")
    assert info.returncode == 0 and "status     : up-to-date" in info.stdout, info.stdout
    assert installed.revive(project, "forget", "build:hello").returncode == 0
    status = installed.revive(project, "list", "--all", "--status").stdout
    assert "R build:hello" in status and "U snapshot" in status, status
    # From another folder, naming the config.
    clean = installed.revive(project.parent, "-c", str(project / "config.toml"), "clean")
    assert clean.returncode == 0, clean.stderr
    assert not (project / "artifacts" / "builds" / "hello").exists()
