"""Cygwin for a guest without network: the offline package closure.

The guest installs Cygwin from the payload CD with
``setup-x86_64.exe --quiet-mode --local-install --local-package-dir X:\\cygwin``.
In that mode setup reads ``<dir>/x86_64/setup.ini`` and takes every archive
from ``<dir>/<install path>``, so the payload holds setup.ini, the setup
program and exactly the archives it will ask for: the requested packages,
every package in category Base (setup always installs those), and the
dependencies of both, at the current version.

Making the mirror folder (``cygwin_mirror`` in config.toml), either way:

- On any Windows machine with internet, run setup-x86_64.exe, choose
  "Download Without Installing", pick a local folder and the packages you
  want (Base is selected already). Setup saves setup.ini and the archives in a
  subfolder named after the mirror URL; point cygwin_mirror at the outer
  folder, and copy setup-x86_64.exe next to it (the folder root).
- Or rsync the needed paths from a Cygwin mirror, e.g.
  ``rsync -a rsync://<mirror>/cygwin/x86_64/setup.ini <dir>/x86_64/`` and the
  ``x86_64/release/...`` / ``noarch/release/...`` archives the error
  messages name, plus https://cygwin.com/setup-x86_64.exe at ``<dir>``.

Windows XP / Server 2003 need the last Cygwin that ran there (2.5.2, 2016)
from the "Cygwin Time Machine" archive, with its setup-x86.exe and arch x86.
Every archive is checked against the size and SHA-512 in setup.ini before it
goes on the payload; a missing or damaged one is refused, naming it.
"""

import hashlib
import lzma
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterable, Optional

from revive.core.errors import UserError

_FIELDS = ("version", "install", "requires", "depends2", "provides", "category")


@dataclass(frozen=True)
class Archive:
    path: str          # relative to the mirror root, e.g. x86_64/release/...
    size: int
    digest: str        # hex; SHA-512 (128 digits) or, in old files, MD5 (32)


@dataclass(frozen=True)
class Package:
    name: str
    version: str = ""
    categories: tuple = ()
    depends: tuple = ()
    provides: tuple = ()
    install: Optional[Archive] = None


@dataclass
class SetupIni:
    headers: dict = field(default_factory=dict)
    packages: dict = field(default_factory=dict)   # name -> Package


# --- parsing --------------------------------------------------------------------

def _logical_lines(text: str) -> Iterable[str]:
    """Lines with quoted multi-line values (ldesc, message) joined: a value
    continues while its double quotes are unbalanced (the format has no
    escape for them)."""
    pending = None
    for line in text.splitlines():
        if pending is not None:
            pending += "\n" + line
            if pending.count('"') % 2 == 0:
                yield pending
                pending = None
            continue
        if line.startswith("#"):
            continue
        if line.count('"') % 2:
            pending = line
        else:
            yield line
    if pending is not None:
        yield pending


def _names(value: str, sep: Optional[str]) -> tuple:
    """``a, b (>= 1.0)`` or ``a b`` -> ("a", "b"): version relations dropped."""
    parts = value.split(sep) if sep else value.split()
    return tuple(p.split("(")[0].strip() for p in parts if p.strip())


def _archive(value: str, name: str) -> Archive:
    try:
        path, size, digest = value.split()
        archive = Archive(path, int(size), digest.lower())
    except ValueError:
        raise UserError(f"setup.ini: package {name}: bad install line "
                        f"{value!r}; use an unmodified setup.ini") from None
    parts = PurePosixPath(archive.path).parts
    if archive.path.startswith("/") or ".." in parts:
        raise UserError(f"setup.ini: package {name}: install path {archive.path} "
                        "leaves the mirror; use an unmodified setup.ini")
    return archive


def _package(name: str, fields: dict) -> Package:
    depends = _names(fields.get("depends2", ""), ",") + \
        _names(fields.get("requires", ""), None)
    install = fields.get("install")
    return Package(
        name=name, version=fields.get("version", ""),
        categories=tuple(fields.get("category", "").split()),
        depends=tuple(dict.fromkeys(depends)),
        provides=_names(fields.get("provides", ""), ","),
        install=_archive(install, name) if install else None)


def parse_setup_ini(text: str) -> SetupIni:
    """Parse setup.ini: headers, then ``@ name`` stanzas whose fields before
    any ``[prev]``/``[test]`` line describe the current version."""
    ini = SetupIni()
    name, fields, current = None, {}, True

    def finish():
        if name is not None:
            ini.packages[name] = _package(name, fields)

    for line in _logical_lines(text):
        stripped = line.strip()
        header = re.match(r"(?:@\s*|Package:\s*)(\S+)$", stripped)
        if header:
            finish()
            name, fields, current = header.group(1), {}, True
        elif re.fullmatch(r"\[(prev|test|curr)\]", stripped):
            current = stripped == "[curr]"
        elif ":" in line and not line[0].isspace():
            key, value = (part.strip() for part in line.split(":", 1))
            if name is None:
                ini.headers[key] = value
            elif current and key in _FIELDS:
                fields[key] = value
    finish()
    return ini


# --- closure --------------------------------------------------------------------

def _resolver(ini: SetupIni):
    provided = {}
    for pkg in ini.packages.values():
        for virtual in pkg.provides:
            provided.setdefault(virtual, pkg.name)

    def resolve(dep: str, needed_by: str) -> str:
        if dep in ini.packages:
            return dep
        if dep in provided:
            return provided[dep]
        raise UserError(f"setup.ini: package {needed_by} needs {dep}, which "
                        "setup.ini does not list; use a complete, unmodified "
                        "setup.ini from one mirror")
    return resolve


def closure(ini: SetupIni, requested: Iterable[str]) -> "list[Package]":
    """The requested packages, all of category Base, and everything they
    depend on, sorted by name."""
    resolve = _resolver(ini)
    for name in requested:
        if name not in ini.packages:
            raise UserError(f"config.toml: [guest] packages: {name} is not in "
                            "the mirror's setup.ini; check the name on "
                            "cygwin.com/packages")
    base = [p.name for p in ini.packages.values() if "Base" in p.categories]
    todo, seen = list(requested) + base, set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(resolve(dep, name) for dep in ini.packages[name].depends)
    return [ini.packages[n] for n in sorted(seen)]


# --- the mirror and the payload -------------------------------------------------

def _read_setup_ini(folder: Path) -> Optional[str]:
    if (folder / "setup.ini").is_file():
        return (folder / "setup.ini").read_text(encoding="utf-8")
    if (folder / "setup.xz").is_file():
        return lzma.decompress((folder / "setup.xz").read_bytes()).decode("utf-8")
    return None


def find_mirror_root(mirror: Path, arch: str = "x86_64") -> "tuple[Path, str]":
    """The folder the install paths are relative to, and its setup.ini text.

    Accepts a mirror root (``<root>/<arch>/setup.ini``), a folder made by
    "Download Without Installing" (``<dir>/<escaped-url>/<arch>/setup.ini``)
    and a flat copy with setup.ini at the root.
    """
    if not mirror.is_dir():
        raise UserError(f"config.toml: [guest] cygwin_mirror: {mirror} is not a "
                        "folder; make it as revive/guests/windows/cygwin.py says")
    for root in [mirror] + sorted(p for p in mirror.iterdir() if p.is_dir()):
        for folder in (root / arch, root):
            text = _read_setup_ini(folder)
            if text is not None:
                return root, text
    raise UserError(f"config.toml: [guest] cygwin_mirror: no {arch}/setup.ini "
                    f"in {mirror}; download Cygwin packages into it (see "
                    "revive/guests/windows/cygwin.py)")


def _copy_checked(pkg: Package, root: Path, dest: Path) -> None:
    """Copy one archive, hashing as it goes; refuse a wrong size or hash."""
    archive = pkg.install
    src, target = root / archive.path, dest / archive.path
    todo = (f"download it again (setup-x86_64.exe 'Download Without "
            f"Installing', or rsync {archive.path} from a mirror)")
    if not src.is_file():
        raise UserError(f"cygwin_mirror: package {pkg.name} {pkg.version}: "
                        f"{src} is missing; {todo}")
    if src.stat().st_size != archive.size:
        raise UserError(f"cygwin_mirror: package {pkg.name}: {src} has "
                        f"{src.stat().st_size} bytes, setup.ini says "
                        f"{archive.size}; {todo}")
    digest = hashlib.new("md5" if len(archive.digest) == 32 else "sha512")
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(src, "rb") as fin, open(target, "wb") as fout:
        while chunk := fin.read(1 << 20):
            digest.update(chunk)
            fout.write(chunk)
    if digest.hexdigest() != archive.digest:
        target.unlink()
        raise UserError(f"cygwin_mirror: package {pkg.name}: {src} does not "
                        f"match its {digest.name} in setup.ini; {todo}")


def setup_program(arch: str) -> str:
    return f"setup-{arch}.exe"


def copy_payload(mirror: Path, dest: Path, requested: Iterable[str],
                 arch: str = "x86_64") -> "list[Package]":
    """Fill ``dest`` (the payload's cygwin folder) for an offline install:
    ``setup-<arch>.exe``, ``<arch>/setup.ini`` and the checked archives of the
    closure. Returns the packages copied."""
    root, text = find_mirror_root(mirror, arch)
    program = next((p / setup_program(arch) for p in (mirror, root)
                    if (p / setup_program(arch)).is_file()), None)
    if program is None:
        raise UserError(f"config.toml: [guest] cygwin_mirror: no "
                        f"{setup_program(arch)} in {mirror}; download it from "
                        f"https://cygwin.com/{setup_program(arch)} into that folder")
    packages = closure(parse_setup_ini(text), requested)
    missing = [p for p in packages if p.install is None]
    if missing:
        raise UserError(f"cygwin_mirror: package {missing[0].name} has no "
                        "current version in setup.ini; use a setup.ini from "
                        "a current mirror")
    for pkg in packages:
        _copy_checked(pkg, root, dest)
    (dest / arch).mkdir(parents=True, exist_ok=True)
    (dest / arch / "setup.ini").write_text(text, encoding="utf-8")
    shutil.copyfile(program, dest / setup_program(arch))
    return packages
