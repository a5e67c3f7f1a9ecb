"""Acceptance run for a real Windows: whoever has an ISO and a machine with
KVM proves their Windows works with revive in one command::

    .venv/bin/pytest -m windows -s --windows-iso PATH --cygwin-mirror PATH \\
        [--windows-version 11 --windows-image "Windows 11 Pro"]

Skipped without --windows-iso. It installs, snapshots, then runs builds in
revived copies that compile and run a C program with Cygwin's gcc, read an
input from the read-only share, write outputs to the exchange share, exit
non-zero on purpose and time out on purpose. At the end (also after a
failure) it reports every stage's time and the paths of the logs and
screenshots in pytest's summary (also under pytest.ini's -n 2; kept as
report.txt), and packs them (no disk images) into report.tar.gz to attach
to a bug report.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import tomllib
from pathlib import Path

import pytest

from tests import configs

from ..conftest import leave_report
from .conftest import REPO, executed

pytestmark = [pytest.mark.windows, pytest.mark.timeout(0)]

HELLO_C = r"""#include <stdio.h>
int main(int argc, char **argv) {
    char line[256];
    FILE *in = argc > 1 ? fopen(argv[1], "r") : NULL;
    if (!in || !fgets(line, sizeof line, in)) { perror("input"); return 2; }
    printf("hello from Windows; the read-only share says: %s", line);
    return 0;
}
"""
INPUT = "revive input 42\n"

BUILDS = {
    "cc": configs.build("gcc -O2 -o /tmp/hello.exe /mnt/src/hello.c && /tmp/hello.exe "
                        "/mnt/src/input.txt > /mnt/xchg/output.txt && cp /tmp/hello.exe "
                        "/mnt/xchg/", outputs=["hello.exe", "output.txt"], timeout="15m",
                        shares={"src": "src"}),
    "fails": configs.build("echo failing on purpose; exit 7", timeout="5m",
                           shares={"src": "src"}),
    "times_out": configs.build("echo sleeping past the deadline; sleep 600", timeout="45s",
                               shares={"src": "src"}),
}


class Run:
    """The project, the stage times and what to attach when it fails."""

    def __init__(self, root: Path):
        self.root = root
        self.times: "dict[str, float]" = {}
        self.failed: "list[str]" = []

    def doit(self, stage: str, *args: str, timeout: float):
        env = dict(os.environ, REVIVE_CACHE=str(REPO / "artifacts" / "cache"))
        start = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "doit", "-f", str(REPO / "dodo.py"),
                               "-d", str(self.root), *args], env=env, capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        self.times[stage] = round(time.monotonic() - start, 1)
        proc.executed = executed(proc.stdout)
        (self.root / "doit-output").mkdir(exist_ok=True)
        (self.root / "doit-output" / f"{stage}.txt").write_text(proc.stdout + proc.stderr)
        return proc

    def attachments(self) -> "list[Path]":
        a = self.root / "artifacts"
        found = [self.root / "config.toml", *sorted((self.root / "doit-output").glob("*"))]
        found += sorted((a / "logs").glob("*")) if (a / "logs").is_dir() else []
        for small in (a / "base.json", a / "snapshot" / "meta.json",
                      a / "payload" / "manifest.json"):
            if small.is_file():
                found.append(small)
        found += sorted(a.glob("builds/*/result.json")) + sorted(a.glob("builds/*/log"))
        return [p for p in found if p.is_file()]

    def report(self) -> str:
        lines = ["", "revive Windows acceptance report",
                 f"  project: {self.root}",
                 f"  qemu: {subprocess.run(['qemu-system-x86_64', '--version'], capture_output=True, text=True).stdout.splitlines()[0]}"]
        lines += [f"  {stage:<12} {seconds:>9.1f} s" for stage, seconds in self.times.items()]
        for build in ("cc", "fails", "times_out"):
            result = self.root / "artifacts" / "builds" / build / "result.json"
            if result.is_file():
                r = json.loads(result.read_text())
                t = r["timings"]
                lines.append(f"  build {build:<10} exit {r['exit_code']}, timed out "
                             f"{r['timed_out']}, revive {t.get('revive')} s, command "
                             f"{t.get('command')} s, total {t.get('total')} s")
        if self.failed:
            lines.append("  FAILED: " + ", ".join(self.failed))
            shots = sorted((self.root / "artifacts" / "logs").glob("*.png"))
            lines += [f"  screenshot: {p}" for p in shots]
            lines.append(f"  logs: {self.root / 'artifacts' / 'logs'}")
        bundle = self.root / "report.tar.gz"
        with tarfile.open(bundle, "w:gz") as tar:
            for path in self.attachments():
                tar.add(path, arcname=str(path.relative_to(self.root)))
        lines.append(f"  attach to a bug report: {bundle}")
        return "\n".join(lines)


# The test running now: the module's teardown (after the last test) leaves
# the report on it, so the report reaches pytest's summary through xdist.
CURRENT = []


@pytest.fixture(autouse=True)
def _current_test(request):
    CURRENT[:] = [request.node]


@pytest.fixture(scope="module")
def project(request):
    option = request.config.getoption
    if not option("--windows-iso"):
        pytest.skip("no --windows-iso given (README: Windows guest, acceptance run)")
    iso = Path(option("--windows-iso")).resolve()
    mirror = option("--cygwin-mirror")
    if not iso.is_file() or not mirror:
        pytest.fail("--windows-iso must be a file and --cygwin-mirror a folder")
    # A fixed folder, not pytest's temporary one: that is pruned by later
    # pytest runs, and the report must outlive this one.
    root = Path(option("--windows-workdir") or REPO / "artifacts" / "windows-acceptance")
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    (root / "src").mkdir()
    (root / "src" / "hello.c").write_text(HELLO_C)
    (root / "src" / "input.txt").write_text(INPUT)
    sha = hashlib.sha256()
    with open(iso, "rb") as f:
        while chunk := f.read(1 << 20):
            sha.update(chunk)
    example = tomllib.loads((REPO / "examples" / "windows.toml").read_text())
    guest = dict(example["guest"], iso=str(iso), iso_sha256=sha.hexdigest(),
                 cygwin_mirror=str(Path(mirror).resolve()), packages=["gcc-core"],
                 windows_version=option("--windows-version"),
                 firmware=option("--windows-firmware"))
    image = option("--windows-image")
    guest["image"] = int(image) if image.isdigit() else image
    if option("--windows-product-key"):
        guest["product_key"] = option("--windows-product-key")
    if guest["windows_version"] in ("xp", "2003"):
        guest.pop("image")
    configs.write(root, {
        "guest": guest, "answers": {"disk_size": "64G"},
        "vm": {"memory": "4G", "cpus": 2, "accel": option("--windows-accel")},
        "timeouts": {"install": option("--windows-install-timeout"), "boot": "20m",
                     "revive": "5m"},
        "shares": configs.shares(), "builds": BUILDS})
    run = Run(root)
    yield run
    report = run.report()
    (root / "report.txt").write_text(report + "\n")
    leave_report(CURRENT[0], report)


def _stage(run: Run, stage: str, *args: str, timeout: float, ok: bool = True,
           needs=("install", "snapshot")):
    failed = [s for s in needs if s in run.failed]
    if failed:
        pytest.skip(f"needs {', '.join(failed)}, which failed")
    proc = run.doit(stage, *args, timeout=timeout)
    if ok and proc.returncode != 0:
        run.failed.append(stage)
        lines = [l for l in proc.stdout.splitlines() + proc.stderr.splitlines()
                 if l.startswith("revive:")]
        pytest.fail(f"{stage} failed: {lines[-1] if lines else proc.stderr[-2000:]}")
    return proc


def test_install(project):
    _stage(project, "install", "install", timeout=6 * 3600, needs=())
    base = json.loads((project.root / "artifacts" / "base.json").read_text())
    assert base["host_key"].startswith("ssh-")


def test_snapshot(project):
    _stage(project, "snapshot", "snapshot", timeout=3600, needs=("install",))
    meta = json.loads((project.root / "artifacts" / "snapshot" / "meta.json").read_text())
    assert meta["guest"] == "windows"


def test_a_c_program_compiles_reads_the_ro_share_and_writes_the_exchange(project):
    _stage(project, "build cc", "build:cc", timeout=3600)
    out = project.root / "artifacts" / "builds" / "cc" / "outputs"
    assert (out / "output.txt").read_text() == \
        f"hello from Windows; the read-only share says: {INPUT}"
    assert (out / "hello.exe").read_bytes()[:2] == b"MZ"


def test_a_failing_command_fails_the_build_with_its_exit_code(project):
    proc = _stage(project, "build fails", "build:fails", timeout=1800, ok=False)
    assert proc.returncode != 0
    result = json.loads((project.root / "artifacts" / "builds" / "fails" /
                         "result.json").read_text())
    assert result["exit_code"] == 7
    assert "failing on purpose" in (project.root / "artifacts" / "builds" / "fails" /
                                    "log").read_text()


def test_a_command_past_its_deadline_is_killed(project):
    proc = _stage(project, "build times_out", "build:times_out", timeout=1800, ok=False)
    assert proc.returncode != 0
    assert "did not finish within [builds.times_out] timeout = 45 s" in proc.stdout + proc.stderr
    result = json.loads((project.root / "artifacts" / "builds" / "times_out" /
                         "result.json").read_text())
    assert result["timed_out"] is True
