"""The Debian guest on another architecture (arm64, riscv64) under TCG,
from examples/debian.toml with `arch` set: the root made on the host by
debootstrap --foreign (no binfmt_misc, no qemu-user), its second stage run
inside the emulated guest at install, snapshotted, and three builds in
revived copies: `uname -m`, a C program compiled and run, and GNU hello
from its Debian source package with `make check`.

Not in the default run (35 minutes on arm64, 28 on riscv64 here): marker
`debian_arch`, selected by the architecture to test:

    /work/heavy .venv/bin/pytest -n 0 tests/integration/test_debian_arch.py \\
        --debian-arch arm64 -q
"""

import json
import time

import pytest

from revive.qemu.devices import ARCHES

from .conftest import REPO, Project

pytestmark = [pytest.mark.integration, pytest.mark.debian_arch,
              # The first test waits for the whole first run: the root, an
              # install whose second stage configures every package under
              # TCG (~12 minutes on arm64), the snapshot and hello's build.
              pytest.mark.timeout(5400)]

# ELF e_machine by architecture (the hello binary the guest built).
E_MACHINE = {"arm64": 183, "riscv64": 243}

BUILDS = """
[builds.uname]
shares = { src = "{empty}" }     # the example's src share has no host folder
command = "uname -m > /mnt/xchg/uname.txt"
outputs = ["uname.txt"]
timeout = "5m"

[builds.c]
shares = { src = "{empty}" }
command = \"\"\"
set -eu
cd /tmp
cat > sum.c <<'EOF'
#include <stdio.h>
int main(void) { long s = 0; for (int i = 1; i <= 100; i++) s += i; printf("sum %ld\\\\n", s); return 0; }
EOF
cc -O2 -o sum sum.c
./sum > /mnt/xchg/sum.txt
\"\"\"
outputs = ["sum.txt"]
timeout = "10m"
"""


@pytest.fixture(scope="module")
def arch(request) -> str:
    return request.config.getoption("--debian-arch")


@pytest.fixture(scope="module")
def built(tmp_path_factory, arch) -> Project:
    root = tmp_path_factory.mktemp(f"debian-{arch}")
    example = (REPO / "examples" / "debian.toml").read_text()
    # The arch's own suite (riscv64: trixie) and install timeout (60m): the
    # defaults, so the example's explicit values go.
    for line in ('suite = "bookworm"', 'install = "20m"'):
        assert line in example
        example = "\n".join(l for l in example.splitlines() if not l.startswith(line)) + "\n"
    example = example.replace('kind = "debian"', f'kind = "debian"\narch = "{arch}"')
    (root / "empty").mkdir()
    (root / "config.toml").write_text(example + BUILDS.replace("{empty}", str(root / "empty")))
    project = Project(root)
    start = time.monotonic()
    # --continue: the builds that do not need hello's source run when its
    # fetch fails (see the last test).
    project.first_run = project.doit("-n", "2", "--continue", "build", check=False,
                                     timeout=5400)
    project.first_run_seconds = time.monotonic() - start
    return project


def test_the_guest_reports_its_architecture(built, arch):
    proc = built.first_run
    assert (built.artifacts / "builds/uname/result.json").is_file(), \
        proc.stdout[-3000:] + proc.stderr[-3000:]
    assert built.result("uname")["exit_code"] == 0
    out = built.artifacts / "builds" / "uname" / "outputs" / "uname.txt"
    assert out.read_text().strip() == ARCHES[arch].uname
    manifest = json.loads((built.artifacts / "payload" / "manifest.json").read_text())
    assert manifest["arch"] == arch
    assert manifest["root"]["made_by"].startswith("debootstrap ")
    installer = (built.artifacts / "logs" / "install-serial.log").read_text(errors="replace")
    assert "debootstrap --second-stage" in installer
    # The ready marker came over this board's console.
    console = (built.artifacts / "logs" / "snapshot-serial.log").read_text(errors="replace")
    assert "REVIVE-READY" in console and "login:" not in console


def test_a_c_program_compiles_and_runs(built):
    result = built.result("c")
    assert result["exit_code"] == 0, (built.artifacts / "builds/c/log").read_text()[-3000:]
    assert (built.artifacts / "builds/c/outputs/sum.txt").read_text() == "sum 5050\n"


def test_gnu_hello_builds_from_its_debian_source_and_passes_make_check(built, arch):
    fetch = built.artifacts / "logs" / "sources-hello.log"
    if not (built.artifacts / "builds/hello/result.json").is_file() and fetch.is_file() \
            and "404  Not Found" in fetch.read_text(errors="replace"):
        # This host's mirror lacks trixie's hello_2.10-5.debian.tar.xz (seen
        # on riscv64); the failure is the archive's, named here.
        pytest.skip("the host's Debian mirror answered 404 for a file of hello's source "
                    f"package ({fetch})")
    assert built.first_run.returncode == 0, built.first_run.stdout[-3000:]
    result = built.result("hello")
    assert result["exit_code"] == 0, (built.artifacts / "builds/hello/log").read_text()[-3000:]
    out = built.artifacts / "builds" / "hello" / "outputs"
    report = (out / "test-suite.log").read_text()
    assert "# FAIL:  0" in report and "# PASS:  0" not in report
    assert "Testsuite summary for GNU Hello" in (built.artifacts / "builds/hello/log").read_text()
    elf = (out / "hello").read_bytes()
    assert elf[:4] == b"\x7fELF"
    assert int.from_bytes(elf[18:20], "little") == E_MACHINE[arch]
