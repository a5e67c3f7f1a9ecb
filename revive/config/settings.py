"""The one table of settings: every config.toml key is one ``Setting`` row.

A row gives the key as users write it (``"vm.memory"``, ``"shares.NAME.guest"``,
``"guest.suite"``), how its value is parsed and checked, its default, one
line of documentation and the stages that read it. From the rows come the
validation of config.toml (``read``), the keys each stage's input record
holds (``revive.inputs``), the configuration reference and both "what
reruns" tables in the docs and ``revive init``'s commented file
(``revive.config.reference``). A setting added in one row is parsed,
checked, hashed by the stages that read it and documented at once.

``CORE`` holds the keys of every config; a guest kind's ``[guest]`` keys
are the rows of its ``GuestKind.keys``; ``table()`` is both. Defaults and
minimums that differ by kind come from ``GuestKind.defaults(settings)`` and
``GuestKind.minimums(settings)``, keyed by the same names.
"""

import re
from dataclasses import dataclass
from typing import Any, Callable

from ..core.errors import UserError
from ..guests import KINDS


class Invalid(ValueError):
    """What is wrong with a value, in words; ``read`` adds where it is."""


class Required:
    """The default of a key that must be set."""

    def __repr__(self) -> str:
        return "required"


REQUIRED = Required()


@dataclass(frozen=True)
class Parser:
    """Checks a value's TOML type, then ``convert``s it (raising ``Invalid``)."""
    what: str                          # "a whole number": the messages say it
    types: tuple
    convert: Callable = lambda value: value

    def __call__(self, value, seen=None):
        if not isinstance(value, self.types) or (isinstance(value, bool)
                                                 and bool not in self.types):
            raise Invalid(f"{value!r} must be {self.what}")
        return self.convert(value)


@dataclass(frozen=True)
class Setting:
    key: str                # as users write it: section.name
    parse: Callable         # (value as written, values read so far) -> parsed value
    doc: str                # one line, for the reference and revive init
    default: Any = None     # as written in config.toml; None: unset; REQUIRED;
                            # or a function of the values read so far
    stages: Any = ()        # the stages that read it; {kind or "*": stages} where kinds differ
    limits: tuple = ()      # the stages that read it without hashing it: it changes
                            # how long a stage may take, not what it makes
    field: str = ""         # the attribute the parsed value is kept in (default: the name)
    check: "Callable | None" = None   # (parsed, kind class) -> problem or None

    @property
    def section(self) -> str:
        return self.key.rsplit(".", 1)[0]

    @property
    def name(self) -> str:
        return self.key.rsplit(".", 1)[1]

    @property
    def attr(self) -> str:
        return self.field or self.name

    def stages_for(self, kind: str) -> "tuple[str, ...]":
        if isinstance(self.stages, dict):
            return tuple(self.stages.get(kind, self.stages.get("*", ())))
        return tuple(self.stages)


def shown(text: str):
    """Names, for the docs, a default computed from the values before it."""
    def mark(default):
        default.shown = text
        return default
    return mark


# --- parsers ----------------------------------------------------------------

def _text(value: str) -> str:
    if not value.strip():
        raise Invalid("must not be empty")
    return value


STRING = Parser("a string", (str,), _text)
BOOLEAN = Parser("true or false", (bool,))
TABLE = Parser("a table", (dict,))


def choice(*options: str) -> Parser:
    def convert(value):
        if value not in options:
            raise Invalid(f"{value!r} must be one of: {', '.join(options)}")
        return value
    return Parser("a string", (str,), convert)


def match(pattern: "re.Pattern", shape: str, says: str = "is not valid:") -> Parser:
    def convert(value):
        if not pattern.match(value):
            raise Invalid(f"{value!r} {says} {shape}")
        return value
    return Parser("a string", (str,), convert)


def integer(low: int, high: int) -> Parser:
    def convert(value):
        if not low <= value <= high:
            raise Invalid(f"{value} must be between {low} and {high}")
        return value
    return Parser("a whole number", (int,), convert)


def string_list(value: list) -> list:
    if not all(isinstance(v, str) and v for v in value):
        raise Invalid("must be a list of non-empty strings")
    return value


STRINGS = Parser("a list of strings", (list,), string_list)
_SIZE = re.compile(r"^(\d+)\s*([KMGT]?)i?B?$", re.I)
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h)?$")
SIZE_SHAPE = "a size like \"512M\" or \"2G\""
DURATION_SHAPE = "a duration like \"30s\", \"10m\" or \"1h\""


def size_mb(value) -> int:
    m = _SIZE.match(str(value).strip())
    if not m:
        raise Invalid(f"{value!r} must be {SIZE_SHAPE}")
    scale = {"": 1 / (1 << 20), "K": 1 / 1024, "M": 1, "G": 1024, "T": 1 << 20}
    return int(int(m.group(1)) * scale[m.group(2).upper()])


def seconds(value) -> float:
    m = _DURATION.match(str(value).strip())
    if not m or float(m.group(1)) <= 0:
        raise Invalid(f"{value!r} must be {DURATION_SHAPE}")
    return float(m.group(1)) * {"s": 1, None: 1, "m": 60, "h": 3600}[m.group(2)]


SIZE = Parser(SIZE_SHAPE, (str, int), size_mb)
DURATION = Parser(DURATION_SHAPE, (str, int, float), seconds)


# --- reading a table of config.toml -------------------------------------------

def error(file: str, section: str, key: "str | None", problem: str) -> UserError:
    place = f"[{section}]" if section else ""
    if key is not None:
        place = f"{place} {key}".strip()
    return UserError(f"{file}: {place}: {problem}")


def read(rows, data: dict, file: str, section: str, kind=None, settings=None,
         allowed: "tuple[str, ...]" = (), start: "dict | None" = None) -> dict:
    """The values of ``rows`` (one section's) from ``data``, the TOML table as
    written, by name: parsed and checked, defaults applied (the kind's where
    it has one), each problem one line naming the key. Keys in ``allowed``
    are let through unread (another part reads them); ``start`` is what the
    parsers may see besides the values before theirs (e.g. the root)."""
    known = [r.name for r in rows] + list(allowed)
    for name in data:
        if name not in known:
            raise error(file, section, name, f"unknown key; expected one of {', '.join(known)}")
    defaults = kind.defaults(settings) if kind else {}
    minimums = kind.minimums(settings) if kind else {}
    values = dict(start or {})
    for row in rows:
        try:
            value = data.get(row.name)
            if value is None:
                value = defaults.get(row.key, row.default)
                if callable(value):
                    value = value(values)
            if value is REQUIRED:
                what = getattr(row.parse, "what", None)
                raise Invalid("missing" + (f"; it must be {what}" if what else ""))
            values[row.name] = parsed = None if value is None else row.parse(value, values)
            if parsed is None:
                continue                 # unset, and no default
            problem = row.check(parsed, kind) if row.check else None
            if problem:
                raise Invalid(problem)
            least = minimums.get(row.key)
            if least is not None and parsed < row.parse(least, values):
                raise Invalid(f"{value!r} is too small for a {kind.name} guest; at least {least}")
        except Invalid as why:
            raise error(file, section, row.name, str(why)) from None
    return {r.name: values[r.name] for r in rows}


# --- the core rows ------------------------------------------------------------

ACCELS = ("auto", "kvm", "tcg")
SAVE_METHODS = ("auto", "file", "zstd")
CHANNELS = ("agent", "ssh")
SHARE_MODES = ("ro", "rw")
TRANSPORTS = ("9p", "smb")
_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,30}$")
_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
_SHA256 = match(re.compile(r"^[0-9a-f]{64}$"), "the tarball's sha256, 64 lower-case hex "
                "digits (sha256sum FILE)")
_FETCH_URL = re.compile(r"^(https?|file)://[^\s\"']+$")
_SCHEDULER = re.compile(r"^(tcp|tls|ws|wss|inproc)://[^\s/]+$")
_STORE = re.compile(r"^[a-z][a-z0-9+.-]*://\S+$")
MAX_MEMORY_MB = 1 << 20     # 1T: beyond any host this runs on


def host_memory_mb() -> "int | None":
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None


def _fits_host(memory_mb: int, kind) -> "str | None":
    """Refused now rather than by QEMU at the snapshot."""
    host = host_memory_mb()
    if memory_mb > MAX_MEMORY_MB or (host and memory_mb > host):
        return (f"{memory_mb} MB is more than this host's RAM ({host} MB); "
                "choose less, e.g. \"512M\"")
    return None


def _offered_channel(channel: str, kind) -> "str | None":
    if channel not in kind.channels:
        return (f"\"{channel}\" is not available for a {kind.name} guest "
                f"({kind.channel_note}); use channel = \"{kind.channels[0]}\"")
    return None


def _offered_transport(transport: str, kind) -> "str | None":
    if transport not in kind.transports:
        return (f"a {kind.name} guest reaches shares over {' or '.join(kind.transports)} "
                f"only; set transport = \"{kind.transports[0]}\"")
    return None


SNAPSHOT = ("snapshot",)
# Windows' installing machine is the one the VM gets later (its memory and
# CPUs shape the install); its answer file comes from [guest] alone.
MACHINE = {"*": SNAPSHOT, "windows": ("install", "snapshot")}
BUILD = ("build:NAME",)

CORE = (
    Setting("guest.kind", choice(*KINDS), "the guest: tiny (busybox + dropbear Linux), debian "
            "(docs/debian.md) or windows (docs/windows.md)", "tiny",
            stages=("payload", "iso", "floppy", "install", "snapshot")),
    Setting("answers.hostname", match(_HOSTNAME, "letters, digits and '-', up to 63"),
            "the guest's host name (Windows: [guest] computer_name)", "revive",
            stages={"*": ("floppy",), "windows": ()}),
    Setting("answers.user", match(_USER, "a lower-case login name such as 'root' or "
                                  "'builder'"),
            "the user builds run as (created at install; SSH as root mounts the shares)",
            "root", stages={"*": ("floppy", "snapshot"), "windows": ()}),
    Setting("answers.disk_size", SIZE, "the guest's disk", "2G", stages=("install",),
            field="disk_size_mb"),
    Setting("vm.memory", SIZE, "guest RAM; at most the host's RAM", "512M", stages=MACHINE,
            field="memory_mb", check=_fits_host),
    Setting("vm.cpus", integer(1, 64), "guest CPUs", 1, stages=MACHINE),
    Setting("vm.accel", choice(*ACCELS), "auto (probe KVM, fall back to TCG), kvm or tcg",
            "auto", stages=SNAPSHOT, limits=("install",)),
    Setting("vm.save", choice(*SAVE_METHODS), "how the snapshot's memory is saved: auto, "
            "file (RAM pages shared by parallel builds) or zstd (compressed)", "auto",
            stages=SNAPSHOT),
    Setting("vm.channel", choice(*CHANNELS), "how builds talk to the guest: agent (QEMU's "
            "guest agent on virtio-serial) or ssh", "agent", stages=SNAPSHOT,
            check=_offered_channel),
    Setting("timeouts.install", DURATION, "the whole unattended install", "20m",
            limits=("install",)),
    Setting("timeouts.boot", DURATION, "boot → SSH, and saving, at the snapshot stage", "5m",
            limits=SNAPSHOT),
    Setting("timeouts.revive", DURATION, "revive → SSH at each build", "2m", limits=BUILD),
    Setting("shares.NAME.guest", STRING, "where the share is mounted in the guest; no two "
            "shares on one mount point or one inside another", REQUIRED, stages=SNAPSHOT),
    Setting("shares.NAME.mode", choice(*SHARE_MODES), "ro for inputs; exactly one share is "
            "rw: the exchange folder, fresh and empty for every build, outputs are "
            "collected from it", "ro", stages=SNAPSHOT),
    Setting("shares.NAME.host", STRING, "the default host folder of a ro share (relative "
            "to config.toml); read by the builds that use the default", stages=BUILD),
    Setting("shares.NAME.transport", choice(*TRANSPORTS), "9p (virtio-9p, the live host "
            "folder) or smb (QEMU's smb= served by the host's smbd; a ro SMB share is a "
            "copy made for each build)", "9p", stages=SNAPSHOT, check=_offered_transport),
    Setting("sources.NAME.debian", match(_PACKAGE, "a Debian source package name such as "
                                         "\"hello\""),
            "a Debian source package, fetched by apt-get source from the [guest] suite and "
            "mirror (Debian's for other kinds); its .dsc's sha256 is kept in revive.lock",
            stages=("sources:NAME",)),
    Setting("sources.NAME.url", match(_FETCH_URL, "an http(s):// or file:// URL of a "
                                      "tarball"),
            "a tarball (http(s):// or file://), unpacked safely", stages=("sources:NAME",)),
    Setting("sources.NAME.sha256", _SHA256, "the tarball's sha256 (with url)",
            stages=("sources:NAME",)),
    Setting("sources.NAME.path", STRING, "a local folder (relative to config.toml), copied",
            stages=("sources:NAME",)),
    Setting("builds.NAME.command", STRING, "run in the guest by the login shell", REQUIRED,
            stages=BUILD),
    Setting("builds.NAME.shares", TABLE, "{ share = \"folder\" }: the host folders behind "
            "this build's ro shares (default: the shares' host); \"sources:NAME\" names a "
            "[sources.NAME]", {}, stages=BUILD),
    Setting("builds.NAME.outputs", STRINGS, "files or folders in the exchange folder "
            "copied to artifacts/builds/NAME/outputs/ (docs/guarantees.md)", [],
            stages=BUILD),
    Setting("builds.NAME.timeout", DURATION, "the command's deadline; past it the copy is "
            "killed and the build fails", "30m", stages=BUILD),
    Setting("builds.NAME.env", TABLE, "environment variables for the command; names are "
            "shell identifiers", {}, stages=BUILD),
    Setting("builds.NAME.keep_failed", BOOLEAN, "keep the copy of a failed build for "
            "`revive shell --kept` (REVIVE_KEEP_FAILED=1: every build of one run)", False),
    Setting("cluster.scheduler", match(_SCHEDULER, "an address like \"tcp://HOST:8786\"", "must be"),
            "a Dask scheduler's address; builds run on its workers (docs/cluster.md); "
            "REVIVE_SCHEDULER overrides it", REQUIRED),
    Setting("cluster.store", match(_STORE, "a URL every host can read, like "
                                   "\"file:///srv/revive-store\", \"sftp://host/srv/"
                                   "revive-store\" or \"s3://bucket/revive\"", "must be"),
            "an fsspec URL every worker reads and this host writes", REQUIRED),
)


def section(rows, name: str) -> "tuple[Setting, ...]":
    """The rows of one section (``"vm"``, ``"shares.NAME"``)."""
    return tuple(r for r in rows if r.section == name)


def table(kinds=None) -> "tuple[Setting, ...]":
    """Every row: the core keys, then each guest kind's ``[guest]`` keys."""
    from .. import guests
    kinds = kinds if kinds is not None else [guests.kind_class(k) for k in guests.KINDS]
    return CORE + tuple(r for kind in kinds for r in kind.keys)


def by_key() -> "dict[str, Setting]":
    return {r.key: r for r in CORE}
