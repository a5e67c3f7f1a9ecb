"""The Windows acceptance run's report reaches the person who ran it
(issue 18, item 6). It is printed from a fixture's teardown, which
pytest-xdist (on by default: pytest.ini's -n 2) swallows when printed;
it now travels as the last test's user property to pytest's terminal
summary. Checked by running the real acceptance module under the default
options, with a stand-in ISO that cannot install: install fails at its
deadline, the later tests skip, and the report must still be in pytest's
output."""

import subprocess
import sys

import pytest

from .conftest import REPO

pytestmark = pytest.mark.integration


def test_the_acceptance_report_is_in_pytests_output_under_the_default_options(tmp_path):
    iso = tmp_path / "standin.iso"
    iso.write_bytes(b"\0" * 2048 * 64)
    workdir = tmp_path / "acceptance"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
         "tests/integration/test_windows_acceptance.py", "-m", "windows",
         "--windows-iso", str(iso), "--cygwin-mirror", str(REPO / "tests" / "data" / "cygwin"),
         "--windows-firmware", "bios", "--windows-accel", "tcg",
         "--windows-install-timeout", "20s", "--windows-workdir", str(workdir)],
        cwd=REPO, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    out = proc.stdout
    assert "created: 2/2 workers" in out or "2 workers [" in out, out[-3000:]
    assert proc.returncode != 0                      # the stand-in cannot install
    assert "revive Windows acceptance report" in out, out[-3000:]
    assert f"  project: {workdir}" in out
    assert "  FAILED: install" in out
    assert f"attach to a bug report: {workdir / 'report.tar.gz'}" in out
    assert (workdir / "report.tar.gz").is_file()
    assert (workdir / "report.txt").read_text().strip() in out


CONTROL = '''
import pytest
from tests.conftest import leave_report

CURRENT = []


@pytest.fixture(autouse=True)
def _current(request):
    CURRENT[:] = [request.node]


@pytest.fixture(scope="module")
def project():
    yield
    print("PRINTED-IN-TEARDOWN")
    leave_report(CURRENT[0], "LEFT-AS-REPORT")


def test_one(project):
    pass
'''


def test_under_xdist_a_teardowns_print_is_lost_and_the_left_report_is_not(tmp_path):
    """The control, in a second: the same module fixture under pytest.ini's
    options (-n 2) prints nothing of what it print()s, and the report it
    leaves is in the summary."""
    (tmp_path / "test_control.py").write_text(CONTROL)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-c", str(REPO / "pytest.ini"), "--rootdir",
         str(REPO), "-p", "tests.conftest", "-p", "no:cacheprovider",
         str(tmp_path / "test_control.py")],
        cwd=REPO, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "created: 2/2 workers" in proc.stdout
    assert "PRINTED-IN-TEARDOWN" not in proc.stdout + proc.stderr
    assert "revive report" in proc.stdout and "LEFT-AS-REPORT" in proc.stdout
