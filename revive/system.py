"""The system packages revive calls: which are missing, said in one line
with the apt-get command that installs them.

The list is ``system-packages.txt`` beside this module, which setup.sh
installs from as well, so there is one list.
"""

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from .core.errors import UserError

LIST = Path(__file__).with_name("system-packages.txt")
# smbd and mkfs.fat live in sbin, which a user's PATH often lacks.
SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")


@dataclass(frozen=True)
class Package:
    name: str
    file: str               # a command, or an absolute path; "-": none to check
    needed_by: str


def packages(path: Path = LIST) -> "list[Package]":
    found = []
    for line in path.read_text().splitlines():
        fields = line.split("#", 1)[0].split()
        if fields:
            name, file, needed_by = fields
            found.append(Package(name, file, needed_by))
    return found


def present(file: str) -> bool:
    if file == "-":
        return True
    if file.startswith("/"):
        return Path(file).exists()
    path = os.pathsep.join([os.environ.get("PATH", os.defpath), *SBIN])
    return shutil.which(file, path=path) is not None


def missing(needed_by: "set[str]", path: Path = LIST) -> "list[str]":
    return [p.name for p in packages(path) if p.needed_by in needed_by and not present(p.file)]


def require(needed_by: "set[str]", path: Path = LIST) -> None:
    """Raise one line naming what is missing and how to install it."""
    absent = missing(needed_by, path)
    if absent:
        sudo = "" if os.geteuid() == 0 else "sudo "
        noun = "package" if len(absent) == 1 else "packages"
        raise UserError(f"missing system {noun} {' '.join(absent)}: install with "
                        f"'{sudo}apt-get install {' '.join(absent)}' (or run setup.sh "
                        "in revive's source)")
