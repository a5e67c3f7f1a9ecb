"""Options for the Windows acceptance run (tests/integration/
test_windows_acceptance.py): without --windows-iso it is skipped; and the
groups the suite's two xdist workers take."""

import pytest


def pytest_addoption(parser):
    parser.getgroup("debian_arch", "the Debian guest on another architecture "
                    "(marker: debian_arch)").addoption(
        "--debian-arch", choices=("arm64", "riscv64"), default=None, metavar="ARCH",
        help="run tests/integration/test_debian_arch.py for ARCH (arm64 or riscv64); "
             "without it they are deselected (25-35 minutes each under TCG)")
    parser.getgroup("tiny_arches", "the tiny guest on other architectures").addoption(
        "--tiny-arches", default="arm64,riscv64", metavar="ARCH,...|all",
        help="the architectures tests/integration/test_arch.py runs a project for "
             "(default arm64,riscv64, what CI runs; 'all' adds armhf, ppc64el and s390x, "
             "about 3 minutes more)")
    group = parser.getgroup("windows", "Windows acceptance run (marker: windows)")
    group.addoption("--windows-iso", metavar="PATH",
                    help="your Windows install ISO; without it the windows tests are skipped")
    group.addoption("--cygwin-mirror", metavar="PATH",
                    help="a Cygwin mirror folder with gcc-core (README: Windows guest)")
    group.addoption("--windows-version", default="11", metavar="V",
                    help="windows_version of the ISO (default 11)")
    group.addoption("--windows-image", default="Windows 11 Pro", metavar="NAME|INDEX",
                    help="edition in install.wim (default 'Windows 11 Pro')")
    group.addoption("--windows-firmware", default="uefi", choices=("uefi", "bios"),
                    help="firmware (default uefi)")
    group.addoption("--windows-product-key", default=None, metavar="KEY",
                    help="product key, when the edition's generic key is not enough")
    group.addoption("--windows-accel", default="auto", choices=("auto", "kvm", "tcg"),
                    help="accelerator (default auto; Windows needs KVM in practice)")
    group.addoption("--windows-workdir", default=None, metavar="PATH",
                    help="the project folder, emptied first "
                         "(default artifacts/windows-acceptance)")
    group.addoption("--windows-install-timeout", default="3h", metavar="DURATION",
                    help="[timeouts] install (default 3h)")


# pytest.ini runs the suite on two xdist workers (`-n 2 --dist loadgroup`):
# the Debian guest's modules and three long tiny ones (foreign
# architectures, the cluster's separate hosts, the unprivileged user's
# pipeline) on one, the other tiny modules on the
# other, so that both take about as long. Summed from `--durations=0` on
# 9a332a6 (a busy machine): test_debian 751 s, test_arch 195 s (about 100 s
# more since, with the cluster, SMB and kept copy per arch),
# test_cluster_hosts 182 s; the tiny modules 1,119 s, test_unprivileged 125 s,
# test_install 81 s; the unit tests (105 s) go to whichever is free. On
# ce0660c (a quiet machine), with test_unprivileged in the tiny group, the
# Debian group summed to 908 s and the tiny group to 1,104 s.
# Each group's modules still run in file order on one worker (the tests of a
# module share its project and put back what they change). The Debian
# build's one emulated CPU then overlaps the tiny guest's tests instead of
# following them.
# test_foreign_root (a native second stage in a chroot, no QEMU, 79-122 s)
# joins the Debian group, the shorter of the two.
SLOW_ALONE = {"test_debian.py", "test_debian_arch.py", "test_arch.py", "test_cluster_hosts.py",
              "test_unprivileged.py", "test_foreign_root.py"}


@pytest.hookimpl(tryfirst=True)    # before xdist reads the groups
def pytest_collection_modifyitems(config, items):
    if not config.getoption("--debian-arch"):
        # The foreign Debian guests only when asked for (CI's suite would
        # pass its 20 minutes): --debian-arch ARCH.
        gone = [i for i in items if i.get_closest_marker("debian_arch")]
        if gone:
            config.hook.pytest_deselected(items=gone)
            items[:] = [i for i in items if i not in gone]
    arches = config.getoption("--tiny-arches")
    if arches != "all":
        # test_arch's projects of the architectures not asked for (CI runs
        # arm64 and riscv64; the others cost 40-80 s each under TCG).
        wanted = set(arches.split(","))
        gone = [i for i in items if i.nodeid.split("::")[0].endswith("test_arch.py")
                and getattr(i, "callspec", None) is not None
                and i.callspec.params.get("project", None) not in (None, *wanted)]
        if gone:
            config.hook.pytest_deselected(items=gone)
            items[:] = [i for i in items if i not in gone]
    for item in items:
        parts = item.nodeid.split("::", 1)[0].split("/")
        if "integration" not in parts:
            continue
        group = "debian" if parts[-1] in SLOW_ALONE else "tiny"
        item.add_marker(pytest.mark.xdist_group(group))


# --- reports a test leaves for the person running pytest ---------------------------
# print() in a fixture's teardown never reaches the terminal under pytest-xdist
# (pytest.ini's -n 2): the worker's output is swallowed. A test's
# user_properties travel with its report to the controlling process, which
# prints them here, at the end, under the default options and with -n 0 alike.
REPORT = "revive-report"


def leave_report(item, text: str) -> None:
    """Have ``text`` printed in pytest's terminal summary."""
    item.user_properties.append((REPORT, text))


def pytest_terminal_summary(terminalreporter):
    shown = []
    for reports in terminalreporter.stats.values():
        for report in reports:
            for name, text in getattr(report, "user_properties", ()):
                if name == REPORT and text not in shown:
                    shown.append(text)
    for text in shown:
        terminalreporter.write_sep("=", "revive report")
        terminalreporter.write_line(text)


# The edition each version's ISO is rendered with (the example names
# Windows 11 Pro; an ISO of another version has other names).
WINDOWS_EDITIONS = {
    "vista": "Windows Vista BUSINESS", "2008": "Windows Server 2008 SERVERSTANDARD",
    "7": "Windows 7 PROFESSIONAL", "2008r2": "Windows Server 2008 R2 SERVERSTANDARD",
    "8": "Windows 8 Pro", "8.1": "Windows 8.1 Pro",
    "2012": "Windows Server 2012 SERVERSTANDARD",
    "2012r2": "Windows Server 2012 R2 SERVERSTANDARD", "10": "Windows 10 Pro",
    "2016": "Windows Server 2016 SERVERSTANDARD", "2019": "Windows Server 2019 SERVERSTANDARD",
    "2022": "Windows Server 2022 Standard (Desktop Experience)",
    "2025": "Windows Server 2025 Standard (Desktop Experience)", "11": "Windows 11 Pro"}
