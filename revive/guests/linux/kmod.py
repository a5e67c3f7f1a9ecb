"""Pick kernel modules out of an unpacked Debian kernel package.

The package ships ``.ko`` files but no ``modules.dep``: Debian's postinst runs
depmod. We read each module's ``.modinfo`` ELF section (``depends=``,
``softdep=``, ``alias=``) ourselves, take the closure of the modules a guest
needs, and write a ``modules.dep`` / ``modules.alias`` for just those, so
busybox ``modprobe`` (and the kernel's own requests through /sbin/modprobe,
e.g. ``crypto-crc32c`` when ext4 mounts) resolve them in the guest.
"""

import gzip
import lzma
from dataclasses import dataclass, field
from pathlib import Path

from . import elf

# Modules here are CPU- or device-specific implementations of an algorithm
# (AES-NI, VIA padlock…), which refuse to load on TCG's CPU model.
_HARDWARE_SPECIFIC = ("kernel/arch/", "kernel/drivers/crypto/")


@dataclass
class Module:
    name: str                      # underscores, as the kernel spells it
    path: str                      # relative to lib/modules/RELEASE
    depends: "list[str]" = field(default_factory=list)
    softdeps: "list[str]" = field(default_factory=list)
    aliases: "list[str]" = field(default_factory=list)


# Bookworm's 6.1 kernel ships plain .ko files; later Debian kernels compress
# them. Guests always get plain .ko files (busybox modprobe loads those
# whatever options it was built with).
_DECOMPRESS = {".ko.xz": lzma.decompress, ".ko.gz": gzip.decompress}


def read_module(path: Path) -> bytes:
    """A module file's ELF bytes, decompressed if need be."""
    for suffix, decompress in _DECOMPRESS.items():
        if path.name.endswith(suffix):
            return decompress(path.read_bytes())
    if not path.name.endswith(".ko"):
        raise ValueError(f"{path}: unsupported module compression")
    return path.read_bytes()


def guest_path(path: str) -> str:
    """Where a module goes in the guest: always an uncompressed .ko."""
    for suffix in _DECOMPRESS:
        if path.endswith(suffix):
            return path[: -len(suffix)] + ".ko"
    return path


def module_name(text: str) -> str:
    """``crc32c-intel.ko`` and ``crc32c_intel`` are the same module."""
    base = text.rsplit("/", 1)[-1]
    for suffix in (".ko.xz", ".ko.zst", ".ko.gz", ".ko"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    return base.replace("-", "_")


class ModuleIndex:
    """Every loadable module of one kernel release, by name and by alias."""

    def __init__(self, modules_dir: Path):
        self.modules_dir = Path(modules_dir)
        self.builtin = self._read_builtin()
        self.by_name: "dict[str, Module]" = {}
        self.by_alias: "dict[str, list[Module]]" = {}
        for ko in sorted(self.modules_dir.glob("kernel/**/*.ko*")):
            self._add(ko)

    def _read_builtin(self) -> "set[str]":
        """Names and aliases of what is built into the kernel image."""
        builtin = set()
        listing = self.modules_dir / "modules.builtin"
        if listing.exists():
            builtin |= {module_name(line) for line in listing.read_text().split()}
        details = self.modules_dir / "modules.builtin.modinfo"
        if details.exists():
            # "name.key=value" records, NUL-separated.
            for record in details.read_bytes().split(b"\0"):
                key, _, value = record.decode(errors="replace").partition("=")
                if key.endswith(".alias"):
                    builtin.add(value)
        return builtin

    def _add(self, ko: Path) -> None:
        info = elf.modinfo_of(read_module(ko))
        module = Module(
            name=module_name(ko.name),
            path=ko.relative_to(self.modules_dir).as_posix(),
            depends=[module_name(d) for v in info.get("depends", [])
                     for d in v.split(",") if d],
            softdeps=[w for v in info.get("softdep", []) for w in v.split()
                      if w not in ("pre:", "post:")],
            aliases=info.get("alias", []))
        self.by_name[module.name] = module
        for alias in module.aliases:
            self.by_alias.setdefault(alias, []).append(module)

    def resolve(self, wanted: str) -> "Module | None":
        """The module to load for a name or alias; None when it is built in
        or only provided by hardware-specific drivers (CPU-optimised or
        accelerator crypto may refuse to load on TCG's CPU model, so only
        generic implementations are picked)."""
        name = module_name(wanted)
        if name in self.by_name:
            return self.by_name[name]
        if wanted in self.builtin:
            return None
        generic = [m for m in self.by_alias.get(wanted, [])
                   if not m.path.startswith(_HARDWARE_SPECIFIC)]
        return generic[0] if generic else None

    def closure(self, wanted: "list[str]") -> "list[Module]":
        """``wanted`` and everything they need, dependencies first.

        A name that is built in is skipped; an unknown one is an error.
        Soft dependencies are followed when they resolve to a generic module
        (cifs names its crypto algorithms this way)."""
        order: "list[Module]" = []
        seen: "set[str]" = set()

        def visit(module: Module) -> None:
            if module.name in seen:
                return
            seen.add(module.name)
            for dep in self.requirements(module):
                visit(dep)
            order.append(module)

        for name in wanted:
            module = self.resolve(name)
            if module is not None:
                visit(module)
            elif module_name(name) not in self.builtin:
                raise KeyError(f"kernel module {name!r} is neither built in "
                               "nor shipped by the kernel package")
        return order

    def requirements(self, module: Module) -> "list[Module]":
        """Hard dependencies, then soft ones that resolve to a module."""
        needed = [self.by_name[d] for d in module.depends]
        for soft in module.softdeps:
            dep = self.resolve(soft)
            if dep is not None and dep.name != module.name and dep not in needed:
                needed.append(dep)
        return needed


def install(index: ModuleIndex, wanted: "list[str]", release: str,
            root: Path) -> "list[str]":
    """Copy the closure of ``wanted`` into ``root``/lib/modules/``release``
    with a matching modules.dep, modules.alias and modules.builtin; return
    the names of the modules that must be loaded, in load order."""
    modules = index.closure(wanted)
    target = Path(root, "lib/modules", release)
    for module in modules:
        dest = target / guest_path(module.path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(read_module(index.modules_dir / module.path))
    (target / "modules.dep").write_text(modules_dep(index, modules))
    (target / "modules.alias").write_text(modules_alias(modules))
    builtin = index.modules_dir / "modules.builtin"
    (target / "modules.builtin").write_bytes(builtin.read_bytes() if builtin.exists() else b"")
    return [m.name for m in modules]


def modules_dep(index: ModuleIndex, modules: "list[Module]") -> str:
    """depmod's format: ``path: deps…`` with the deepest dependency last,
    because modprobe loads the list from the end."""
    lines = []
    for module in sorted(modules, key=lambda m: m.path):
        load_order = [m for m in index.closure([module.name]) if m is not module]
        deps = " ".join(guest_path(m.path) for m in reversed(load_order))
        lines.append(f"{guest_path(module.path)}: {deps}".rstrip() + "\n")
    return "".join(lines)


def modules_alias(modules: "list[Module]") -> str:
    lines = {f"alias {alias} {m.name}\n" for m in modules for alias in m.aliases}
    return "".join(sorted(lines))
