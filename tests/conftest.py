"""Options for the Windows acceptance run (tests/integration/
test_windows_acceptance.py): without --windows-iso it is skipped."""


def pytest_addoption(parser):
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
