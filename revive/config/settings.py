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

from ..core.rows import (  # noqa: F401 (the table's machinery, used with the rows)
    Invalid, Required, REQUIRED, Parser, Setting, shown,
    STRING, BOOLEAN, TABLE, choice, match, integer,
    string_list, STRINGS, SIZE_SHAPE, DURATION_SHAPE, size_mb, seconds,
    SIZE, DURATION, error, read)
from ..guests import KINDS, kind_class


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
    Setting("timeouts.install", DURATION, "the whole unattended install (a Debian guest of "
            "another architecture than amd64: 60m by default, its packages are configured "
            "under TCG at install)", "20m",
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
            "folder; on Linux guests a ro folder of 200 entries or more comes as an ext2 "
            "image of it, made when it changed) or smb (QEMU's smb= served by the host's "
            "smbd; a ro SMB share is a copy made for each build)", "9p", stages=SNAPSHOT,
            check=_offered_transport),
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
    Setting("builds.NAME.max_output_size", SIZE, "what the outputs may take on the host's "
            "disk (holes of sparse files not counted: they are copied as holes); over it the "
            "build fails naming the largest", "4G", stages=BUILD),
    Setting("builds.NAME.keep_free", SIZE, "free space the outputs must leave on the "
            "filesystem of artifacts/builds/, checked before anything is copied", "256M",
            stages=BUILD),
    Setting("builds.NAME.keep_failed", BOOLEAN, "keep the copy of a failed build for "
            "`revive shell --kept` (REVIVE_KEEP_FAILED=1: every build of one run)", False),
    Setting("cluster.scheduler", match(_SCHEDULER, "an address like \"tls://HOST:8786\"", "must be"),
            "a Dask scheduler's address; builds run on its workers (docs/cluster.md); "
            "REVIVE_SCHEDULER overrides it", REQUIRED),
    Setting("cluster.store", match(_STORE, "a URL every host can read, like "
                                   "\"file:///srv/revive-store\", \"sftp://host/srv/"
                                   "revive-store\" or \"s3://bucket/revive\"", "must be"),
            "an fsspec URL every worker reads and this host writes", REQUIRED),
    Setting("cluster.certs", STRING, "the folder with the cluster's ca.pem and client.pem "
            "(`revive cluster certs DIR`, relative to config.toml); required for tls://"),
    Setting("cluster.insecure", BOOLEAN, "true allows a plain tcp:// scheduler (anyone who "
            "reaches it runs code on the workers; warned every run)", False),
    Setting("cluster.wait_for_worker", DURATION, "how long a build waits for a live worker "
            "that can take it before failing", "5m"),
)


def section(rows, name: str) -> "tuple[Setting, ...]":
    """The rows of one section (``"vm"``, ``"shares.NAME"``)."""
    return tuple(r for r in rows if r.section == name)


def table(kinds=None) -> "tuple[Setting, ...]":
    """Every row: the core keys, then each guest kind's ``[guest]`` keys."""
    kinds = kinds if kinds is not None else [kind_class(k) for k in KINDS]
    return CORE + tuple(r for kind in kinds for r in kind.keys)


def by_key() -> "dict[str, Setting]":
    return {r.key: r for r in CORE}
